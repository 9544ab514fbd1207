"""Link budget of the ground-to-satellite uplink (EMS-FL eqs. 16–21).

All powers in dBm or dBW as named, gains in dBi, losses in dB (positive = loss),
frequencies in Hz, distances in m.

The received SNR of a burst at emulated time t is

.. math::
    \\mathrm{SNR}(t) = P_t + G_t + G_r - L_{fs}(d(t), f_c) - L_{atm}(\\theta(t))
        - L_{rain}(\\theta(t)) - X_\\sigma(t) - N + 10\\log_{10}|h(t)|^2 \\;[dB],

with free-space loss :math:`L_{fs} = 20\\log_{10}(4\\pi d f_c / c)`, atmospheric loss
:math:`L_{atm} = A_z / \\sin\\theta`, log-normal shadowing :math:`X_\\sigma \\sim
\\mathcal N(0, \\sigma^2)` [dB], thermal noise :math:`N = 10\\log_{10}(k T_0 B) + NF`
(or :math:`k T_{sys} B` when a system noise temperature is given) and Rician small-scale
fading :math:`h` with :math:`E|h|^2 = 1`. The Shannon rate is
:math:`C = B\\log_2(1 + \\mathrm{SNR})` [bit/s].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from channel.constants import BOLTZMANN_DBW_PER_K_HZ, SPEED_OF_LIGHT_M_S, T0_K

__all__ = [
    "LinkBudgetError",
    "LinkParams",
    "atmospheric_loss_db",
    "doppler_hz",
    "free_space_path_loss_db",
    "noise_power_dbm",
    "rain_loss_db",
    "shannon_capacity_bps",
    "snr_db",
    "wavelength_m",
]


class LinkBudgetError(ValueError):
    """Invalid link-budget parameter."""


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0.0):
        raise LinkBudgetError(f"{name} must be a positive finite number, got {value}")
    return v


@dataclass(frozen=True)
class LinkParams:
    """Parameters of one uplink (ground cluster → satellite). Defaults: the paper's example.

    Attributes
    ----------
    carrier_hz : carrier frequency f_c [Hz] (default 2 GHz, S-band)
    bandwidth_hz : sub-channel bandwidth B [Hz] (paper: 5 MHz)
    tx_power_dbm : ground transmit power P_t [dBm] (paper: 23 dBm)
    tx_antenna_gain_dbi : ground antenna gain G_t [dBi]
    rx_antenna_gain_dbi : satellite antenna gain G_r [dBi] (paper: 40 dBi)
    noise_figure_db : satellite receiver noise figure NF [dB]
    noise_temp_k : system noise temperature T_sys [K]; 0 → use T0·NF
    atmospheric_zenith_db : zenith atmospheric attenuation A_z [dB]
    rain_zenith_db : zenith rain attenuation during a rain phase [dB]
    rain_probability : fraction of passes in a rain phase [0..1]
    shadowing_sigma_db : log-normal shadowing standard deviation σ [dB]
    shadowing_corr_s : shadowing decorrelation time [s] (exponential autocorrelation)
    rician_k_db : Rician K-factor [dB] of the small-scale fading
    min_elevation_deg : elevation gate θ_min [deg]
    implementation_loss_db : modem implementation loss subtracted from the SNR [dB]
    """

    carrier_hz: float = 2.0e9
    bandwidth_hz: float = 5.0e6
    tx_power_dbm: float = 23.0
    tx_antenna_gain_dbi: float = 0.0
    rx_antenna_gain_dbi: float = 40.0
    noise_figure_db: float = 5.0
    noise_temp_k: float = 0.0
    atmospheric_zenith_db: float = 0.5
    rain_zenith_db: float = 0.0
    rain_probability: float = 0.0
    shadowing_sigma_db: float = 2.0
    shadowing_corr_s: float = 10.0
    rician_k_db: float = 10.0
    min_elevation_deg: float = 10.0
    implementation_loss_db: float = 0.0

    def __post_init__(self) -> None:
        _positive("carrier_hz", self.carrier_hz)
        _positive("bandwidth_hz", self.bandwidth_hz)
        _positive("shadowing_corr_s", self.shadowing_corr_s)
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v):
                raise LinkBudgetError(f"{f.name} must be finite, got {v}")
        for name in (
            "noise_figure_db",
            "noise_temp_k",
            "atmospheric_zenith_db",
            "rain_zenith_db",
            "shadowing_sigma_db",
            "implementation_loss_db",
        ):
            if getattr(self, name) < 0.0:
                raise LinkBudgetError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.rain_probability <= 1.0:
            raise LinkBudgetError(f"rain_probability must be in 0..1, got {self.rain_probability}")
        if not 0.0 <= self.min_elevation_deg < 90.0:
            raise LinkBudgetError(
                f"min_elevation_deg must be in [0, 90), got {self.min_elevation_deg}"
            )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def with_updates(self, **changes: Any) -> LinkParams:
        """A copy with ``changes`` applied (validated); unknown names raise."""
        names = {f.name for f in fields(self)}
        for key in changes:
            if key not in names:
                raise LinkBudgetError(f"unknown link parameter {key!r}")
        return replace(self, **{k: float(v) for k, v in changes.items()})


def wavelength_m(carrier_hz: float) -> float:
    """λ = c / f_c [m]."""
    return SPEED_OF_LIGHT_M_S / _positive("carrier_hz", carrier_hz)


def free_space_path_loss_db(range_m: np.ndarray | float, carrier_hz: float) -> np.ndarray:
    """Free-space path loss :math:`L_{fs} = 20\\log_{10}(4\\pi d f_c / c)` [dB] (eq. 16)."""
    d = np.asarray(range_m, dtype=float)
    if np.any(d <= 0):
        raise LinkBudgetError("slant range must be positive")
    return 20.0 * np.log10(4.0 * np.pi * d / wavelength_m(carrier_hz))


def atmospheric_loss_db(elevation_deg: np.ndarray | float, zenith_db: float) -> np.ndarray:
    """Atmospheric attenuation :math:`A_z / \\sin\\theta` [dB] (flat-Earth cosecant law).

    The elevation is floored at 5° where the cosecant law stops holding.
    """
    el = np.maximum(np.asarray(elevation_deg, dtype=float), 5.0)
    return zenith_db / np.sin(np.radians(el))


def rain_loss_db(elevation_deg: np.ndarray | float, rain_zenith_db: float) -> np.ndarray:
    """Rain attenuation in a rain phase, :math:`A_{rain} / \\sin\\theta` [dB]."""
    return atmospheric_loss_db(elevation_deg, rain_zenith_db)


def noise_power_dbm(
    bandwidth_hz: float, noise_figure_db: float = 0.0, noise_temp_k: float = 0.0
) -> float:
    """Thermal noise power in the bandwidth [dBm].

    .. math:: N = 10\\log_{10}(k T B) + 30, \\quad T = T_{sys} \\text{ if given, else }
              T_0 F \\;(F = 10^{NF/10},\\ T_0 = 290\\,K).

    At T0 this is the familiar −174 dBm/Hz + 10·log10(B) + NF.
    """
    b = _positive("bandwidth_hz", bandwidth_hz)
    if noise_temp_k > 0:
        t = noise_temp_k
    else:
        t = T0_K * 10.0 ** (noise_figure_db / 10.0)
    return BOLTZMANN_DBW_PER_K_HZ + 10.0 * math.log10(t * b) + 30.0


def snr_db(
    tx_power_dbm: float,
    path_loss_db: np.ndarray | float,
    bandwidth_hz: float,
    tx_antenna_gain_dbi: float = 0.0,
    rx_antenna_gain_dbi: float = 0.0,
    noise_figure_db: float = 0.0,
    noise_temp_k: float = 0.0,
) -> np.ndarray:
    """Mean SNR [dB] for a total path loss (large-scale fading) [dB].

    .. math:: \\mathrm{SNR} = P_t + G_t + G_r - L - N(B, NF)
    """
    n = noise_power_dbm(bandwidth_hz, noise_figure_db, noise_temp_k)
    return tx_power_dbm + tx_antenna_gain_dbi + rx_antenna_gain_dbi - np.asarray(path_loss_db) - n


def shannon_capacity_bps(bandwidth_hz: float, snr_db_value: np.ndarray | float) -> np.ndarray:
    """Shannon capacity :math:`C = B\\log_2(1 + 10^{\\mathrm{SNR}/10})` [bit/s] (eq. 21)."""
    b = _positive("bandwidth_hz", bandwidth_hz)
    return b * np.log2(1.0 + 10.0 ** (np.asarray(snr_db_value, dtype=float) / 10.0))


def doppler_hz(range_rate_mps: np.ndarray | float, carrier_hz: float) -> np.ndarray:
    """Doppler shift :math:`f_d = -\\dot d / \\lambda` [Hz].

    Sign: positive while the satellite approaches (range decreasing). The paper writes
    :math:`f_d = v_r/\\lambda` with :math:`v_r` the radial velocity *towards* the receiver,
    which is the same quantity.
    """
    return -np.asarray(range_rate_mps, dtype=float) / wavelength_m(carrier_hz)

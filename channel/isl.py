"""Inter-satellite links: when they are available, and what they carry.

Availability (:class:`IslRules`) — an ISL between satellites at r_a and r_b is usable while

* the line of sight clears the Earth plus an atmosphere margin: the segment's closest
  point to the Earth's centre is at least :math:`R_E + h_{graze}` (spherical Earth,
  :math:`R_E` = 6378.137 km; default :math:`h_{graze}` = 80 km, Hypatia's rule),

  .. math::
      d_\\perp = \\left| r_a + s^*(r_b - r_a) \\right|, \\quad
      s^* = \\mathrm{clip}\\left(-\\frac{r_a\\cdot(r_b - r_a)}{|r_b - r_a|^2}, 0, 1\\right);

* the range :math:`|r_b - r_a|` is under the terminal's maximum;
* both terminals can track: the line of sight's angular rate in each satellite's orbital
  (LVLH) frame is under the slew limit,

  .. math::
      \\dot{\\hat u}_{LVLH} = \\frac{v_{rel} - (v_{rel}\\cdot\\hat u)\\hat u}{d}
          - \\omega_a \\times \\hat u, \\qquad \\omega_a = \\frac{r_a \\times v_a}{|r_a|^2}

  (the LVLH frame's rate for a Keplerian orbit; the J2 precession of the plane adds
  ~0.1 % to it, neglected).

Capacity (:class:`RfTerminal`, :class:`OpticalTerminal`) — free space, no atmosphere:
RF :math:`C = B\\log_2(1 + \\mathrm{SNR})` with
:math:`\\mathrm{SNR} = P_t + G_t + G_r - L_{fs} - L_{point} - 10\\log_{10}(k T_{sys} B)`;
optical :math:`C = \\min(R_{line}, P_{rx} / (n_{ppb} h c/\\lambda))` with
:math:`G = (\\pi D/\\lambda)^2` per aperture. Doppler :math:`f_d = -\\dot d/\\lambda`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from channel.constants import EARTH_RADIUS_M, SPEED_OF_LIGHT_M_S
from channel.geometry import LinkState
from channel.link_budget import LinkParams, free_space_path_loss_db, noise_power_dbm
from channel.orbit import CircularOrbit, Orbit

__all__ = [
    "IslGeometry",
    "IslRules",
    "OpticalTerminal",
    "RfTerminal",
    "isl_link_params",
    "isl_metrics",
    "los_clearance_m",
    "slew_rate_rad_s",
]

PLANCK_J_S = 6.62607015e-34


@dataclass(frozen=True)
class IslRules:
    """When an ISL is usable (see the module docstring).

    Attributes
    ----------
    grazing_altitude_m : lowest altitude the line of sight may pass [m] (80 km)
    max_range_m : terminal's maximum range [m] (5000 km)
    max_slew_deg_s : terminal's largest tracking rate [deg/s] (1.0)
    intra_plane : links to the fore and aft neighbours in the plane
    inter_plane : links to the nearest satellites of the adjacent planes
    """

    grazing_altitude_m: float = 80e3
    max_range_m: float = 5000e3
    max_slew_deg_s: float = 1.0
    intra_plane: bool = True
    inter_plane: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grazing_altitude_m) and 0 <= self.grazing_altitude_m <= 1e6):
            raise ValueError(
                f"grazing altitude must be in 0..1000 km, got {self.grazing_altitude_m / 1e3:g}"
            )
        if not (math.isfinite(self.max_range_m) and self.max_range_m > 0):
            raise ValueError(f"maximum ISL range must be > 0, got {self.max_range_m}")
        if not (math.isfinite(self.max_slew_deg_s) and self.max_slew_deg_s > 0):
            raise ValueError(f"maximum slew rate must be > 0 deg/s, got {self.max_slew_deg_s}")


def los_clearance_m(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Altitude of the line of sight's lowest point above the sphere R_E [m], (...,).

    ``ra``, ``rb``: ECI positions [m], (..., 3).
    """
    d = rb - ra
    dd = np.maximum(np.einsum("...i,...i->...", d, d), 1e-9)
    s = np.clip(-np.einsum("...i,...i->...", ra, d) / dd, 0.0, 1.0)
    p = ra + s[..., None] * d
    return np.linalg.norm(p, axis=-1) - EARTH_RADIUS_M


def slew_rate_rad_s(ra: np.ndarray, va: np.ndarray, rb: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """Angular rate [rad/s] of the line of sight in the LVLH frame, the larger of both ends."""
    d = rb - ra
    rng = np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-3)
    u = d / rng
    vrel = vb - va
    udot = (vrel - np.einsum("...i,...i->...", vrel, u)[..., None] * u) / rng
    out = np.zeros(d.shape[:-1])
    for r, v in ((ra, va), (rb, vb)):
        w = np.cross(r, v) / np.einsum("...i,...i->...", r, r)[..., None]
        out = np.maximum(out, np.linalg.norm(udot - np.cross(w, u), axis=-1))
    return out


def isl_metrics(
    ra: np.ndarray, va: np.ndarray, rb: np.ndarray, vb: np.ndarray, rules: IslRules
) -> dict[str, np.ndarray]:
    """Range [m], range rate [m/s], clearance [m], slew [deg/s] and ``usable`` (bool)."""
    d = rb - ra
    rng = np.linalg.norm(d, axis=-1)
    rate = np.einsum("...i,...i->...", d, vb - va) / np.maximum(rng, 1e-3)
    clear = los_clearance_m(ra, rb)
    slew = np.degrees(slew_rate_rad_s(ra, va, rb, vb))
    usable = (
        (clear >= rules.grazing_altitude_m)
        & (rng <= rules.max_range_m)
        & (slew <= rules.max_slew_deg_s)
    )
    return {
        "range_m": rng,
        "range_rate_mps": rate,
        "clearance_m": clear,
        "slew_deg_s": slew,
        "usable": usable,
    }


@dataclass(frozen=True)
class RfTerminal:
    """An RF ISL terminal pair (defaults: Ka-band inter-satellite service, 23 GHz).

    Attributes
    ----------
    carrier_hz : f_c [Hz] (22.55–23.55 GHz ISS allocation, ITU-R S.1591)
    bandwidth_hz : B [Hz]
    tx_power_dbm : P_t [dBm]
    tx_gain_dbi, rx_gain_dbi : G_t, G_r [dBi] (35 dBi ≈ 0.3 m dish at 23 GHz)
    noise_temp_k : T_sys [K]
    pointing_loss_db : L_point [dB]
    """

    carrier_hz: float = 23.0e9
    bandwidth_hz: float = 100e6
    tx_power_dbm: float = 33.0
    tx_gain_dbi: float = 35.0
    rx_gain_dbi: float = 35.0
    noise_temp_k: float = 500.0
    pointing_loss_db: float = 0.5
    kind: str = field(default="rf", init=False)

    def __post_init__(self) -> None:
        for k in ("carrier_hz", "bandwidth_hz", "noise_temp_k"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"ISL {k} must be > 0, got {v}")

    def snr_db(self, range_m: np.ndarray) -> np.ndarray:
        """:math:`P_t + G_t + G_r - L_{fs} - L_{point} - N` [dB]."""
        n = noise_power_dbm(self.bandwidth_hz, 0.0, self.noise_temp_k)
        return (
            self.tx_power_dbm
            + self.tx_gain_dbi
            + self.rx_gain_dbi
            - free_space_path_loss_db(np.maximum(range_m, 1.0), self.carrier_hz)
            - self.pointing_loss_db
            - n
        )

    def rate_bps(self, range_m: np.ndarray) -> np.ndarray:
        """Shannon capacity :math:`B\\log_2(1+\\mathrm{SNR})` [bit/s]."""
        return self.bandwidth_hz * np.log2(1.0 + 10.0 ** (self.snr_db(range_m) / 10.0))

    def doppler_hz(self, range_rate_mps: np.ndarray) -> np.ndarray:
        return -np.asarray(range_rate_mps) * self.carrier_hz / SPEED_OF_LIGHT_M_S


@dataclass(frozen=True)
class OpticalTerminal:
    """An optical ISL terminal pair (defaults: a 10 Gbit/s 1550 nm terminal, 80 mm aperture).

    Attributes
    ----------
    wavelength_m : λ [m]
    tx_power_dbm : P_t [dBm]
    aperture_m : D of both telescopes [m]; gain :math:`(\\pi D/\\lambda)^2`
    pointing_loss_db : L_point [dB]
    photons_per_bit : receiver sensitivity n_ppb
    line_rate_bps : the terminal's data rate R_line [bit/s]
    """

    wavelength_m: float = 1550e-9
    tx_power_dbm: float = 30.0
    aperture_m: float = 0.08
    pointing_loss_db: float = 3.0
    photons_per_bit: float = 100.0
    line_rate_bps: float = 10e9
    kind: str = field(default="optical", init=False)

    def __post_init__(self) -> None:
        for k in ("wavelength_m", "aperture_m", "photons_per_bit", "line_rate_bps"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"optical ISL {k} must be > 0, got {v}")

    @property
    def carrier_hz(self) -> float:
        return SPEED_OF_LIGHT_M_S / self.wavelength_m

    @property
    def gain_dbi(self) -> float:
        """:math:`20\\log_{10}(\\pi D / \\lambda)` [dBi]."""
        return 20.0 * math.log10(math.pi * self.aperture_m / self.wavelength_m)

    def rx_power_dbm(self, range_m: np.ndarray) -> np.ndarray:
        """:math:`P_t + 2G - L_{fs} - L_{point}` [dBm]."""
        return (
            self.tx_power_dbm
            + 2 * self.gain_dbi
            - free_space_path_loss_db(np.maximum(range_m, 1.0), self.carrier_hz)
            - self.pointing_loss_db
        )

    def rate_bps(self, range_m: np.ndarray) -> np.ndarray:
        """:math:`\\min(R_{line}, P_{rx}\\lambda/(n_{ppb} h c))` [bit/s]."""
        p_w = 10.0 ** ((self.rx_power_dbm(range_m) - 30.0) / 10.0)
        e_ph = PLANCK_J_S * self.carrier_hz
        return np.minimum(self.line_rate_bps, p_w / (self.photons_per_bit * e_ph))

    def doppler_hz(self, range_rate_mps: np.ndarray) -> np.ndarray:
        return -np.asarray(range_rate_mps) / self.wavelength_m


def isl_link_params(**changes: float) -> LinkParams:
    """:class:`channel.LinkParams` of an RF ISL for the emulator: 23 GHz, 5 MHz, 33 dBm,
    35 + 35 dBi, T_sys = 500 K, no atmosphere, rain or shadowing, gate at 0°."""
    base = LinkParams(
        carrier_hz=23.0e9,
        bandwidth_hz=5.0e6,
        tx_power_dbm=33.0,
        tx_antenna_gain_dbi=35.0,
        rx_antenna_gain_dbi=35.0,
        noise_figure_db=0.0,
        noise_temp_k=500.0,
        atmospheric_zenith_db=0.0,
        rain_zenith_db=0.0,
        rain_probability=0.0,
        shadowing_sigma_db=0.0,
        rician_k_db=30.0,
        min_elevation_deg=0.0,
        implementation_loss_db=0.0,
    )
    return base.with_updates(**changes) if changes else base


class IslGeometry:
    """One inter-satellite link as the emulator sees it (the :class:`channel.LinkGeometry`
    interface): satellite ``orbit`` (the sender) to satellite ``peer``.

    The gate is :class:`IslRules` (Earth blockage, range, slew), exact per sample through
    :meth:`inside`; the SNR is the free-space budget of ``params`` (no atmosphere, no
    shadowing): :math:`P_t + G_t + G_r - L_{fs}(d) - N - L_{impl}`. ``elevation_deg`` is the
    line of sight's angle above the sender's local horizontal (negative: below it).

    Parameters
    ----------
    orbit, peer : the two satellites' orbits (same epoch)
    params : RF budget (:func:`isl_link_params` by default)
    rules : availability rules
    """

    def __init__(
        self,
        orbit: Orbit,
        peer: Orbit,
        params: LinkParams | None = None,
        rules: IslRules | None = None,
        seed: int = 0,
    ) -> None:
        if orbit.epoch != peer.epoch:
            raise ValueError("the two satellites' orbits must share one epoch")
        self.orbit = orbit
        self.peer = peer
        self.site = None
        self.params = params if params is not None else isl_link_params()
        self.rules = rules or IslRules()
        self.seed = int(seed)
        self.noise_dbm = noise_power_dbm(
            self.params.bandwidth_hz, self.params.noise_figure_db, self.params.noise_temp_k
        )
        self._windows: list[tuple[float, float]] = []
        self._searched_to = 0.0
        self._chunk_s = 6 * 3600.0

    def _metrics(self, t: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        ra, va = self.orbit.eci(t)
        rb, vb = self.peer.eci(t)
        return isl_metrics(ra, va, rb, vb, self.rules), ra, rb

    def inside(self, t_s: np.ndarray | float) -> np.ndarray:
        """The gate: the link is usable at emulated times ``t_s`` (bool array)."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        return self._metrics(t)[0]["usable"].reshape(np.shape(t_s))

    def windows(self, t_start_s: float, t_end_s: float) -> list[tuple[float, float]]:
        """Availability windows overlapping [t_start, t_end], clipped to it [emulated s]."""
        self._search(t_end_s)
        return [
            (max(a, t_start_s), min(b, t_end_s))
            for a, b in self._windows
            if b > t_start_s and a < t_end_s
        ]

    def same_window(self, a_s: float, b_s: float) -> bool:
        """True if a ≤ b lie in one availability window."""
        self._search(b_s)
        return any(a <= a_s and b_s < b for a, b in self._windows)

    def _search(self, t_end_s: float) -> None:
        """Extend the window list to ``t_end_s`` (10 s grid, bisection to 76 µs, each edge on
        its usable side: :mod:`channel.edges`)."""
        from channel.edges import bisect_edges, intervals

        def refine(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, st: np.ndarray) -> Any:
            return bisect_edges(self.inside, lo, hi, st)

        while self._searched_to < t_end_s:
            t0 = self._searched_to
            t = np.arange(t0, t0 + self._chunk_s + 10.0, 10.0)
            for _, a, b, _trunc in intervals(self.inside(t)[None], t, refine):
                if a == t0 and self._windows and self._windows[-1][1] == t0:
                    a = self._windows.pop()[0]  # open across the chunk boundary: one window
                self._windows.append((a, b))
            self._searched_to = float(t[-1])

    def state(self, t_s: np.ndarray | float, shadowing: bool = True) -> LinkState:
        """Link state at emulated times (see :meth:`channel.LinkGeometry.state`)."""
        scalar = np.ndim(t_s) == 0
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        h = 0.5
        m, ra, rb = self._metrics(np.concatenate([t, t - h, t + h]))
        n = t.size
        rng, rate = m["range_m"][:n], m["range_rate_mps"][:n]
        lam = SPEED_OF_LIGHT_M_S / self.params.carrier_hz
        fd = -rate / lam
        fd_rate = -(m["range_rate_mps"][2 * n :] - m["range_rate_mps"][n : 2 * n]) / (2 * h * lam)
        d = (rb - ra)[:n]
        up = ra[:n] / np.linalg.norm(ra[:n], axis=-1, keepdims=True)
        el = np.degrees(np.arcsin(np.clip(np.einsum("ij,ij->i", d, up) / rng, -1.0, 1.0)))
        snr = self._snr(rng)
        loss = free_space_path_loss_db(rng, self.params.carrier_hz)
        out = LinkState(
            t,
            el,
            np.zeros_like(t),
            rng,
            rate,
            fd,
            fd_rate,
            loss,
            snr,
            m["usable"][:n],
            rng / SPEED_OF_LIGHT_M_S,
            np.zeros(n, dtype=bool),
        )
        if scalar:
            out = LinkState(*(np.asarray(getattr(out, f)[0]) for f in out.__dataclass_fields__))
        return out

    def _snr(self, rng: np.ndarray) -> np.ndarray:
        p = self.params
        return (
            p.tx_power_dbm
            + p.tx_antenna_gain_dbi
            + p.rx_antenna_gain_dbi
            - free_space_path_loss_db(rng, p.carrier_hz)
            - self.noise_dbm
            - p.implementation_loss_db
        )

    def predicted_snr_db(self, t_s: np.ndarray | float) -> np.ndarray:
        """The free-space budget from the orbits (what ACM predicts) [dB]: the same as the
        realised SNR, since an ISL has no shadowing or rain."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        m, _, _ = self._metrics(t)
        return self._snr(m["range_m"]).reshape(np.shape(t_s))

    def min_prop_delay_s(self) -> float:
        """A lower bound of the one-way delay [s]: 0 (two satellites can pass arbitrarily
        close), so the emulator's lookahead is only the preamble."""
        return 0.0

    def max_doppler_hz(self) -> float:
        """Upper bound of |f_d| [Hz]: (|v_a| + |v_b|)/λ (head-on)."""
        v = 0.0
        for o in (self.orbit, self.peer):
            v += o.mean_motion_rad_s * o.semi_major_axis_m if isinstance(o, CircularOrbit) else 8e3
        return v * self.params.carrier_hz / SPEED_OF_LIGHT_M_S

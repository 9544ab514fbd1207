"""One uplink's state at emulated time t: geometry + link budget + seeded processes.

:class:`LinkGeometry` is the single source of truth the emulator, the payload transfer and
the timeline ask "what is this link like at t?".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from channel.constants import SPEED_OF_LIGHT_M_S
from channel.link_budget import (
    LinkParams,
    atmospheric_loss_db,
    doppler_hz,
    free_space_path_loss_db,
    noise_power_dbm,
    rain_loss_db,
)
from channel.orbit import CircularOrbit, GroundSite, Orbit, look_angles
from channel.shadowing import RainPhase, ShadowingProcess

__all__ = ["LinkGeometry", "LinkState", "default_link_geometry"]


@dataclass(frozen=True)
class LinkState:
    """Link state at emulated times (arrays, or 0-d arrays for a scalar time).

    Attributes
    ----------
    t_s : emulated time [s]
    elevation_deg, azimuth_deg : [deg]
    slant_range_m : [m]; range_rate_mps : [m/s] (positive receding)
    doppler_hz : carrier Doppler f_d = −ḋ/λ [Hz]; doppler_rate_hz_per_s : df_d/dt [Hz/s]
    path_loss_db : total large-scale loss L_fs + L_atm + L_rain + X_σ [dB]
    snr_db : large-scale mean SNR (no small-scale fading) [dB]
    visible : elevation ≥ θ_min (the elevation gate)
    prop_delay_s : one-way propagation delay d/c [s]
    raining : rain phase active
    """

    t_s: np.ndarray
    elevation_deg: np.ndarray
    azimuth_deg: np.ndarray
    slant_range_m: np.ndarray
    range_rate_mps: np.ndarray
    doppler_hz: np.ndarray
    doppler_rate_hz_per_s: np.ndarray
    path_loss_db: np.ndarray
    snr_db: np.ndarray
    visible: np.ndarray
    prop_delay_s: np.ndarray
    raining: np.ndarray


class LinkGeometry:
    """Geometry and budget of the uplink from ``site`` to the satellite on ``orbit``.

    Parameters
    ----------
    orbit : satellite propagator (emulated t = 0 at ``orbit.epoch``)
    site : the ground cluster
    params : link budget parameters
    seed : seed of the shadowing and rain realisations of this link
    """

    def __init__(self, orbit: Orbit, site: GroundSite, params: LinkParams, seed: int = 0) -> None:
        self.orbit = orbit
        self.site = site
        self.params = params
        self.seed = int(seed)
        self.shadowing = ShadowingProcess(
            params.shadowing_sigma_db, params.shadowing_corr_s, seed=self.seed * 2 + 1
        )
        self.rain = RainPhase(params.rain_probability, seed=self.seed * 2 + 2)
        self.noise_dbm = noise_power_dbm(
            params.bandwidth_hz, params.noise_figure_db, params.noise_temp_k
        )

    def state(self, t_s: np.ndarray | float, shadowing: bool = True) -> LinkState:
        """Link state at emulated times ``t_s`` [s] (vectorised).

        .. math::
            L(t) = L_{fs}(d) + \\frac{A_z + A_{rain} 1_{rain}}{\\sin\\theta} + X_\\sigma(t),
            \\quad \\mathrm{SNR}(t) = P_t + G_t + G_r - L(t) - N - L_{impl}
        """
        scalar = np.ndim(t_s) == 0
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        p = self.params
        h = 0.5
        la = look_angles(self.orbit, self.site, np.concatenate([t, t - h, t + h]))
        n = t.size
        el, az, rng, rate = (
            la.elevation_deg[:n],
            la.azimuth_deg[:n],
            la.slant_range_m[:n],
            la.range_rate_mps[:n],
        )
        fd = doppler_hz(rate, p.carrier_hz)
        fd_rate = (
            doppler_hz(la.range_rate_mps[2 * n :], p.carrier_hz)
            - doppler_hz(la.range_rate_mps[n : 2 * n], p.carrier_hz)
        ) / (2 * h)
        raining = self.rain.raining(t)
        loss = (
            free_space_path_loss_db(rng, p.carrier_hz)
            + atmospheric_loss_db(el, p.atmospheric_zenith_db)
            + np.where(raining, rain_loss_db(el, p.rain_zenith_db), 0.0)
        )
        if shadowing:
            loss = loss + self.shadowing.db(t)
        snr = (
            p.tx_power_dbm
            + p.tx_antenna_gain_dbi
            + p.rx_antenna_gain_dbi
            - loss
            - self.noise_dbm
            - p.implementation_loss_db
        )
        out = LinkState(
            t,
            el,
            az,
            rng,
            rate,
            fd,
            fd_rate,
            loss,
            snr,
            el >= p.min_elevation_deg,
            rng / SPEED_OF_LIGHT_M_S,
            raining,
        )
        if scalar:
            out = LinkState(*(np.asarray(getattr(out, f)[0]) for f in out.__dataclass_fields__))
        return out

    def max_doppler_hz(self) -> float:
        """Upper bound of |f_d| for this orbit: v_orbit / λ [Hz] (for filter sizing)."""
        if isinstance(self.orbit, CircularOrbit):
            v = self.orbit.mean_motion_rad_s * self.orbit.semi_major_axis_m
        else:
            v = 8000.0
        return v * self.params.carrier_hz / SPEED_OF_LIGHT_M_S


def default_link_geometry(seed: int = 0) -> LinkGeometry:
    """600 km, 53° circular orbit over a mid-latitude site (Munich) with default params."""
    return LinkGeometry(
        CircularOrbit(), GroundSite(48.1, 11.6, 500.0, "munich"), LinkParams(), seed=seed
    )

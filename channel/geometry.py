"""One uplink's state at emulated time t: geometry + link budget + seeded processes.

:class:`LinkGeometry` is the single source of truth the emulator, the payload transfer and
the timeline ask "what is this link like at t?".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from channel.constants import EARTH_RADIUS_M, SPEED_OF_LIGHT_M_S
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

__all__ = ["LinkGeometry", "LinkState", "ScheduledLinkGeometry", "default_link_geometry"]


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


def _budget(
    link: LinkGeometry | ScheduledLinkGeometry,
    t: np.ndarray,
    el: np.ndarray,
    rng: np.ndarray,
    raining: np.ndarray,
    shadowing: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Large-scale loss [dB] and mean SNR [dB] of a link at times ``t``.

    .. math::
        L = L_{fs}(d) + \\frac{A_z + A_{rain} 1_{rain}}{\\sin\\theta} + X_\\sigma(t), \\quad
        \\mathrm{SNR} = P_t + G_t + G_r - L - N - L_{impl}
    """
    p = link.params
    loss = (
        free_space_path_loss_db(rng, p.carrier_hz)
        + atmospheric_loss_db(el, p.atmospheric_zenith_db)
        + np.where(raining, rain_loss_db(el, p.rain_zenith_db), 0.0)
    )
    if shadowing:
        loss = loss + link.shadowing.db(t)
    snr = (
        p.tx_power_dbm
        + p.tx_antenna_gain_dbi
        + p.rx_antenna_gain_dbi
        - loss
        - link.noise_dbm
        - p.implementation_loss_db
    )
    return loss, snr


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
        loss, snr = _budget(self, t, el, rng, raining, shadowing)
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

    def predicted_snr_db(self, t_s: np.ndarray | float) -> np.ndarray:
        """The SNR the ground terminal can predict [dB]: clear-sky link budget from the orbit
        (free-space loss at the predicted range, atmosphere), without the shadowing, rain or
        fading realisations. What adaptive coding and modulation uses.
        """
        t = np.asarray(t_s, dtype=float)
        la = look_angles(self.orbit, self.site, np.atleast_1d(t))
        no_rain = np.zeros(la.elevation_deg.shape, dtype=bool)
        _, snr = _budget(self, np.atleast_1d(t), la.elevation_deg, la.slant_range_m, no_rain, False)
        return snr.reshape(t.shape)

    def min_prop_delay_s(self) -> float:
        """A lower bound of the one-way propagation delay [s] (the lowest orbit altitude / c);
        the emulator's conservative lookahead."""
        if isinstance(self.orbit, CircularOrbit):
            alt = self.orbit.semi_major_axis_m - EARTH_RADIUS_M
        else:
            alt = 150e3  # below any orbit that survives a pass
        return max(0.0, (alt - abs(self.site.alt_m) - 1e3) / SPEED_OF_LIGHT_M_S)

    def windows(self, t_start_s: float, t_end_s: float) -> list[tuple[float, float]]:
        """Contact windows (AOS, LOS) above the gate in [t_start, t_end] [emulated s]."""
        from channel.windows import contact_windows

        ws = contact_windows(
            self.orbit, self.site, t_start_s, t_end_s, self.params.min_elevation_deg
        )
        return [(w.aos_s, w.los_s) for w in ws]

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


class ScheduledLinkGeometry:
    """A link whose visibility follows a given schedule (the paper's idealised slots).

    Inside a window the satellite is at a fixed elevation θ (default 45°) — constant slant range
    :math:`d = \\sqrt{(R_E+h)^2 - R_E^2\\cos^2\\theta} - R_E\\sin\\theta`, no Doppler — and
    outside it is below the horizon, so the elevation gate closes the link. The large-scale SNR
    still carries this link's seeded shadowing. Same interface as :class:`LinkGeometry`.

    Parameters
    ----------
    windows : sorted, disjoint (aos_s, los_s) slots [emulated s]
    params : link budget parameters
    elevation_deg : elevation during a slot [deg], above ``params.min_elevation_deg``
    altitude_m : orbit altitude for the slant range [m]
    seed : shadowing/rain realisation seed
    """

    def __init__(
        self,
        windows: list[tuple[float, float]],
        params: LinkParams,
        elevation_deg: float = 45.0,
        altitude_m: float = 600e3,
        seed: int = 0,
    ) -> None:
        ws = sorted((float(a), float(b)) for a, b in windows)
        for (_, b0), (a1, _) in itertools.pairwise(ws):
            if b0 > a1:
                raise ValueError("schedule windows overlap")
        if any(b <= a for a, b in ws):
            raise ValueError("schedule windows must have los > aos")
        if not params.min_elevation_deg <= elevation_deg <= 90.0:
            raise ValueError("scheduled elevation must be between the gate and 90 deg")
        self.schedule = ws
        self.params = params
        self.elevation_deg = float(elevation_deg)
        self.altitude_m = float(altitude_m)
        self.seed = int(seed)
        self.orbit = None
        self.site = None
        self.shadowing = ShadowingProcess(
            params.shadowing_sigma_db, params.shadowing_corr_s, seed=self.seed * 2 + 1
        )
        self.rain = RainPhase(params.rain_probability, seed=self.seed * 2 + 2)
        self.noise_dbm = noise_power_dbm(
            params.bandwidth_hz, params.noise_figure_db, params.noise_temp_k
        )
        r, th = EARTH_RADIUS_M, np.radians(self.elevation_deg)
        self.slant_range_m = float(
            np.sqrt((r + self.altitude_m) ** 2 - (r * np.cos(th)) ** 2) - r * np.sin(th)
        )
        self._starts = np.array([a for a, _ in ws])
        self._ends = np.array([b for _, b in ws])

    def inside(self, t_s: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t_s, dtype=float)
        i = np.searchsorted(self._starts, t, side="right") - 1
        ok = i >= 0
        return ok & (t < np.where(ok, self._ends[np.clip(i, 0, None)], -np.inf))

    def same_window(self, a_s: float, b_s: float) -> bool:
        """True if emulated times a ≤ b lie in one and the same slot."""
        i = int(np.searchsorted(self._starts, a_s, side="right")) - 1
        return i >= 0 and a_s >= self._starts[i] and b_s < self._ends[i]

    def windows(self, t_start_s: float, t_end_s: float) -> list[tuple[float, float]]:
        """Slots overlapping [t_start, t_end], clipped to it."""
        return [
            (max(a, t_start_s), min(b, t_end_s))
            for a, b in self.schedule
            if b > t_start_s and a < t_end_s
        ]

    def state(self, t_s: np.ndarray | float, shadowing: bool = True) -> LinkState:
        """Link state at emulated times (see :meth:`LinkGeometry.state`)."""
        scalar = np.ndim(t_s) == 0
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        vis = self.inside(t)
        el = np.where(vis, self.elevation_deg, -10.0)
        rng = np.full_like(t, self.slant_range_m)
        zero = np.zeros_like(t)
        raining = self.rain.raining(t)
        loss, snr = _budget(self, t, el, rng, raining, shadowing)
        out = LinkState(
            t,
            el,
            zero,
            rng,
            zero,
            zero,
            zero.copy(),
            loss,
            snr,
            vis,
            rng / SPEED_OF_LIGHT_M_S,
            raining,
        )
        if scalar:
            out = LinkState(*(np.asarray(getattr(out, f)[0]) for f in out.__dataclass_fields__))
        return out

    def predicted_snr_db(self, t_s: np.ndarray | float) -> np.ndarray:
        """Clear-sky SNR at the slot's fixed elevation [dB] (no shadowing or rain draws)."""
        t = np.atleast_1d(np.asarray(t_s, dtype=float))
        el = np.full_like(t, self.elevation_deg)
        rng = np.full_like(t, self.slant_range_m)
        _, snr = _budget(self, t, el, rng, np.zeros(t.shape, dtype=bool), False)
        return snr.reshape(np.shape(t_s))

    def min_prop_delay_s(self) -> float:
        """The (constant) one-way propagation delay [s]."""
        return self.slant_range_m / SPEED_OF_LIGHT_M_S

    def max_doppler_hz(self) -> float:
        return 0.0

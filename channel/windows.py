"""Contact windows above the elevation gate, the gaps between them, and what a pass carries.

A window opens at AOS (elevation rises through θ_min) and closes at LOS. Crossings are
found on a coarse grid and refined by bisection to better than 1 ms of emulated time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from channel.geometry import LinkGeometry
from channel.link_budget import shannon_capacity_bps
from channel.orbit import GroundSite, Orbit, look_angles
from channel.rician import k_linear

__all__ = [
    "ContactWindow",
    "WindowError",
    "contact_windows",
    "ergodic_capacity_bps",
    "gaps",
    "mean_capacity_bps",
    "time_to_deliver_s",
    "window_capacity_bytes",
]


class WindowError(ValueError):
    """Invalid window search request."""


@dataclass(frozen=True)
class ContactWindow:
    """One pass above the elevation gate, in emulated seconds since the epoch.

    ``aos_s``/``los_s`` are clipped to the search interval when a pass straddles its ends
    (``truncated`` is then True).
    """

    aos_s: float
    los_s: float
    tca_s: float  # time of closest approach (maximum elevation)
    max_elevation_deg: float
    truncated: bool = False

    @property
    def duration_s(self) -> float:
        return self.los_s - self.aos_s

    def to_dict(self, epoch: datetime) -> dict[str, object]:
        """JSON-friendly form with ISO-8601 UTC times."""

        def iso(t: float) -> str:
            return (epoch + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")

        return {
            "aos": iso(self.aos_s),
            "los": iso(self.los_s),
            "tca": iso(self.tca_s),
            "aos_s": self.aos_s,
            "los_s": self.los_s,
            "duration_s": self.duration_s,
            "max_elevation_deg": self.max_elevation_deg,
            "truncated": self.truncated,
        }


def contact_windows(
    orbit: Orbit,
    site: GroundSite,
    t_start_s: float,
    t_end_s: float,
    min_elevation_deg: float,
    step_s: float = 10.0,
) -> list[ContactWindow]:
    """All windows with elevation ≥ θ_min in [t_start, t_end] (emulated seconds).

    ``step_s`` must be shorter than the shortest pass of interest (10 s is safe for LEO:
    a pass that grazes θ_min for less than a step can be missed; it carries ~nothing).
    """
    if not 0.0 <= min_elevation_deg < 90.0:
        raise WindowError(f"minimum elevation must be in [0, 90) deg, got {min_elevation_deg}")
    if not t_end_s > t_start_s:
        raise WindowError("the search interval must have t_end > t_start")
    if not 0.0 < step_s <= 60.0:
        raise WindowError(f"step must be in (0, 60] s, got {step_s}")
    t = np.arange(t_start_s, t_end_s + step_s, step_s)
    t[-1] = min(t[-1], t_end_s)
    el = look_angles(orbit, site, t).elevation_deg - min_elevation_deg

    def f(x: float) -> float:
        return float(look_angles(orbit, site, x).elevation_deg[0] - min_elevation_deg)

    above = el >= 0
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    windows: list[ContactWindow] = []
    starts = [] if not above[0] else [(t[0], True)]
    for i in edges:
        x = brentq(f, t[i], t[i + 1], xtol=1e-4)
        starts.append((x, False) if not above[i] else (x, None))
    # Pair rising (False/True flag) and falling (None) crossings.
    aos: tuple[float, bool] | None = None
    for x, flag in starts:
        if flag is None:
            if aos is not None:
                windows.append(_make(orbit, site, aos[0], x, aos[1]))
                aos = None
        else:
            aos = (x, flag)
    if aos is not None:
        windows.append(_make(orbit, site, aos[0], t_end_s, True))
    return windows


def _make(orbit: Orbit, site: GroundSite, a: float, b: float, truncated: bool) -> ContactWindow:
    res = minimize_scalar(
        lambda x: -float(look_angles(orbit, site, x).elevation_deg[0]),
        bounds=(a, b),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return ContactWindow(float(a), float(b), float(res.x), float(-res.fun), truncated)


def gaps(windows: list[ContactWindow]) -> list[tuple[float, float]]:
    """Idle intervals (LOS_i, AOS_{i+1}) between consecutive windows [s]."""
    ws = sorted(windows, key=lambda w: w.aos_s)
    return [(a.los_s, b.aos_s) for a, b in itertools.pairwise(ws) if b.aos_s > a.los_s]


_N_QUANTILES = 512


def ergodic_capacity_bps(
    bandwidth_hz: float, snr_db: np.ndarray | float, k_db: float
) -> np.ndarray:
    """Ergodic capacity under Rician fading, :math:`B\\,E_h[\\log_2(1+\\bar\\gamma|h|^2)]`.

    With E|h|² = 1, :math:`2(K+1)|h|^2 \\sim \\chi'^2_2(2K)` (non-central χ², 2 degrees
    of freedom). The expectation is the mean over 512 quantile midpoints of that law,
    accurate to < 0.1 % for any K (K = −inf dB is Rayleigh).
    """
    from scipy import stats

    k = k_linear(k_db)
    q = (np.arange(_N_QUANTILES) + 0.5) / _N_QUANTILES
    if k > 0:
        x = stats.ncx2.ppf(q, 2, 2.0 * k) / (2.0 * (k + 1.0))
    else:
        x = stats.chi2.ppf(q, 2) / 2.0
    g = 10.0 ** (np.asarray(snr_db, dtype=float)[..., None] / 10.0)
    return bandwidth_hz * np.mean(np.log2(1.0 + g * x), axis=-1)


def window_capacity_bytes(
    link: LinkGeometry, window: ContactWindow, step_s: float = 1.0, fading: bool = True
) -> float:
    """Bytes deliverable in a window: :math:`\\frac18\\int_{AOS}^{LOS} C(t)\\,dt`.

    C(t) is the ergodic Rician capacity at the large-scale SNR of t (``fading=True``) or the
    AWGN Shannon capacity. Integrated over the pass (trapezoid rule, ``step_s``), never
    peak × duration.
    """
    n = max(2, int(np.ceil(window.duration_s / step_s)) + 1)
    t = np.linspace(window.aos_s, window.los_s, n)
    snr = link.state(t).snr_db
    p = link.params
    if fading:
        c = ergodic_capacity_bps(p.bandwidth_hz, snr, p.rician_k_db)
    else:
        c = shannon_capacity_bps(p.bandwidth_hz, snr)
    return float(np.sum(0.5 * (c[1:] + c[:-1]) * np.diff(t)) / 8.0)


def time_to_deliver_s(
    link: LinkGeometry,
    t_start_s: float,
    nbytes: int,
    horizon_s: float = 7 * 86400.0,
    fading: bool = True,
    step_s: float = 0.25,
) -> float | None:
    """Emulated time to carry ``nbytes`` at the link's capacity, starting at ``t_start_s``.

    The smallest T with :math:`\\frac18\\int_{t_0}^{t_0+T} C(t)\\,\\mathbb 1[\\theta(t) \\ge
    \\theta_{min}]\\,dt \\ge` ``nbytes``, C the ergodic Rician (``fading``) or AWGN Shannon
    capacity of the large-scale SNR (with this link's shadowing realisation). Outages count
    as elapsed time. None if the horizon is not enough. This is the "predicted upload time"
    a paper would compute; the emulator measures the real one.
    """
    if nbytes <= 0:
        return 0.0
    need = nbytes * 8.0
    p = link.params
    for aos, los in link.windows(t_start_s, t_start_s + horizon_s):
        a = max(aos, t_start_s)
        if los <= a:
            continue
        n = max(2, int(np.ceil((los - a) / step_s)) + 1)
        t = np.linspace(a, los, n)
        snr = link.state(np.minimum(t, los - 1e-6)).snr_db  # [AOS, LOS): closed at LOS
        c = (
            ergodic_capacity_bps(p.bandwidth_hz, snr, p.rician_k_db)
            if fading
            else shannon_capacity_bps(p.bandwidth_hz, snr)
        )
        bits = np.concatenate([[0.0], np.cumsum(0.5 * (c[1:] + c[:-1]) * np.diff(t))])
        if bits[-1] >= need:
            k = int(np.searchsorted(bits, need))
            frac = (need - bits[k - 1]) / max(bits[k] - bits[k - 1], 1e-12)
            return float(t[k - 1] + frac * (t[k] - t[k - 1]) - t_start_s)
        need -= bits[-1]
    return None


def mean_capacity_bps(
    link: LinkGeometry,
    t0_s: float,
    t1_s: float,
    bandwidth_hz: float | None = None,
    step_s: float = 0.05,
) -> float:
    """Shannon capacity of the link averaged over [t0, t1] [bit/s].

    .. math::
        \\bar C = \\frac{1}{t_1 - t_0}\\int_{t_0}^{t_1} W \\log_2\\!\\big(1 +
        \\mathrm{SNR}(t)\\,B/W\\big)\\,\\mathbb 1[\\theta(t) \\ge \\theta_{min}]\\,dt

    with SNR(t) the large-scale SNR in the link budget's bandwidth B (with this link's
    shadowing realisation; the small-scale fading is not in it) and W = ``bandwidth_hz``
    (default B: the whole sub-channel). With W < B — e.g. the occupied band
    :math:`R_s(1+\\alpha)` of a modem — the same signal power meets the noise of W only.
    Outages count as elapsed time with zero capacity. This is the reference an upload's
    goodput is compared with: the same interval and bandwidth.
    """
    if not t1_s > t0_s:
        return float("nan")
    b = link.params.bandwidth_hz
    w = b if bandwidth_hz is None else float(bandwidth_hz)
    n = max(2, int(np.ceil((t1_s - t0_s) / step_s)) + 1)
    t = np.linspace(t0_s, t1_s, n)
    st = link.state(t)
    snr = 10.0 ** (np.asarray(st.snr_db, dtype=float) / 10.0) * (b / w)
    c = w * np.log2(1.0 + snr) * np.asarray(st.visible, dtype=float)
    return float(np.trapz(c, t) / (t1_s - t0_s))

"""The link state on an emulated-time grid: evaluated in blocks, interpolated per frame.

The link state — SNR, elevation, Doppler and its rate, propagation delay — changes on a scale
of seconds, while the emulator needs it several hundred times per second of link. Evaluating
the orbit and the budget once per frame costs ≈ 0.3 ms (more than several stages' work), so
the emulator evaluates :meth:`channel.LinkGeometry.state` on a fixed grid of step Δ (default
20 ms) in blocks of 256 points at a time and interpolates linearly.

The grid is aligned to multiples of Δ from t = 0, so a value depends only on the time asked
for, never on the order of the questions (the one-clock rule). The interpolation error is
negligible against the models themselves: over Δ = 20 ms the Doppler rate changes the
Doppler by well under 0.01 Hz beyond linear, the range by micrometres beyond linear, and the
shadowing process is itself linear between points 1 s apart.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LinkStateGrid", "StatePoint"]

_FIELDS = (
    "elevation_deg",
    "snr_db",
    "doppler_hz",
    "doppler_rate_hz_per_s",
    "prop_delay_s",
    "predicted_snr_db",
)


@dataclass(frozen=True)
class StatePoint:
    """The link state at one emulated time (interpolated)."""

    t_s: float
    elevation_deg: float
    snr_db: float
    doppler_hz: float
    doppler_rate_hz_per_s: float
    prop_delay_s: float
    predicted_snr_db: float


class LinkStateGrid:
    """Grid-interpolated link state of one geometry (see the module docstring).

    Parameters
    ----------
    geometry : :class:`channel.LinkGeometry`, :class:`channel.ScheduledLinkGeometry` or
        :class:`flowgraphs.static_link.StaticLink`
    step_s : grid step Δ [s]
    block : grid points evaluated at once
    """

    def __init__(self, geometry: Any, step_s: float = 0.02, block: int = 256) -> None:
        if not (step_s > 0 and math.isfinite(step_s)) or block < 2:
            raise ValueError("grid step must be > 0 and the block >= 2 points")
        self.geometry = geometry
        self.step_s = float(step_s)
        self.block = int(block)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _block(self, b: int) -> np.ndarray:
        arr = self._cache.get(b)
        if arr is not None:
            self._cache.move_to_end(b)
            return arr
        t = (b * self.block + np.arange(self.block + 1)) * self.step_s
        st = self.geometry.state(t)
        pred = getattr(self.geometry, "predicted_snr_db", None)
        p = np.asarray(pred(t), dtype=float) if callable(pred) else np.asarray(st.snr_db)
        arr = np.vstack(
            [
                np.asarray(st.elevation_deg, dtype=float),
                np.asarray(st.snr_db, dtype=float),
                np.asarray(st.doppler_hz, dtype=float),
                np.asarray(st.doppler_rate_hz_per_s, dtype=float),
                np.asarray(st.prop_delay_s, dtype=float),
                p,
            ]
        )
        self._cache[b] = arr
        if len(self._cache) > 8:
            self._cache.popitem(last=False)
        return arr

    def at(self, t_s: float) -> StatePoint:
        """The state at emulated time ``t_s`` ≥ 0 [s], linearly interpolated on the grid."""
        if not (math.isfinite(t_s) and t_s >= 0):
            raise ValueError(f"link state time must be finite and >= 0, got {t_s}")
        pos = t_s / self.step_s
        i = int(math.floor(pos))
        f = pos - i
        b, j = divmod(i, self.block)
        arr = self._block(b)
        v = arr[:, j] * (1.0 - f) + arr[:, j + 1] * f
        return StatePoint(float(t_s), *(float(x) for x in v))

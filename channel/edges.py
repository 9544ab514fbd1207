"""Boolean availability sampled on a grid → intervals, each edge refined by bisection.

Shared by the contact plan (many pairs at once) and the emulator's ISL gate (one pair): an
edge between grid points t_k and t_{k+1} is bisected ``iterations`` times (17: a 10 s step to
76 µs), and each edge time is returned on its *usable* (True) side, so the first and last
instants of an interval obey the rules that close it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BISECT_ITERATIONS", "bisect_edges", "intervals"]

BISECT_ITERATIONS = 17  # 10 s / 2^17 ≈ 76 µs


def bisect_edges(
    pred: Any,
    lo: np.ndarray,
    hi: np.ndarray,
    lo_state: np.ndarray,
    iterations: int = BISECT_ITERATIONS,
) -> np.ndarray:
    """Vectorised bisection of boolean edges: ``pred(times)`` → states; returns each edge time
    on its True side."""
    lo, hi = np.asarray(lo, dtype=float).copy(), np.asarray(hi, dtype=float).copy()
    lo_state = np.asarray(lo_state, dtype=bool)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        same = np.asarray(pred(mid), dtype=bool) == lo_state
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    return np.where(lo_state, lo, hi)


def intervals(mask: np.ndarray, t: np.ndarray, refine: Any) -> list[tuple[int, float, float, bool]]:
    """Rows of a boolean (R, M) grid at times ``t`` (M,) → [(row, start, end, truncated)],
    edges refined by ``refine(rows, lo, hi, lo_state)``; ``truncated`` marks an interval open
    at either end of the grid (it then starts at t[0] or ends at t[-1])."""
    rows, ks = np.nonzero(np.diff(mask.astype(np.int8), axis=1))
    cuts = refine(rows, t[ks], t[ks + 1], mask[rows, ks]) if rows.size else np.empty(0, dtype=float)
    out: list[tuple[int, float, float, bool]] = []
    by_row: dict[int, list[float]] = {}
    for r, c in zip(rows.tolist(), cuts.tolist(), strict=True):
        by_row.setdefault(r, []).append(c)
    for r in np.flatnonzero(mask.any(axis=1)).tolist():
        evs = sorted(by_row.get(r, []))
        on = bool(mask[r, 0])
        start: float | None = float(t[0]) if on else None
        trunc = on
        for c in evs:
            if start is None:
                start = c
            else:
                out.append((r, start, c, trunc))
                start, trunc = None, False
        if start is not None:
            out.append((r, start, float(t[-1]), True))
    return out

"""Seeded large-scale random processes in emulated time: shadowing and rain phases.

Both are functions of emulated time and a seed only: querying them in any order, from any
process, gives the same realisation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

__all__ = ["RainPhase", "ShadowingProcess"]

_BLOCK = 4096  # grid points per counter-based block
_CACHE_BLOCKS = 16  # blocks kept per process


class ShadowingProcess:
    """Log-normal shadowing :math:`X_\\sigma(t)` [dB] with exponential autocorrelation.

    Gudmundson's model: a stationary Gauss–Markov (AR(1)) process on a grid of step
    Δ = τ/10,

    .. math:: X_{k+1} = \\rho X_k + \\sigma\\sqrt{1-\\rho^2}\\, w_k, \\quad
              \\rho = e^{-\\Delta/\\tau}, \\; w_k \\sim \\mathcal N(0,1), \\quad
              E[X_k X_{k+n}] = \\sigma^2 \\rho^{|n|} = \\sigma^2 e^{-|n|\\Delta/\\tau},

    linearly interpolated between grid points. Times before 0 mirror to |t|.

    Counter-based, so any time is O(1) to evaluate: the grid is cut into blocks of
    :math:`B = 4096` points; the anchors :math:`A_b = X_{bB}` are drawn
    :math:`\\mathcal N(0, \\sigma^2)` from ``default_rng([seed, b])`` and the points in between
    are the exact AR(1) bridge from :math:`A_b` to :math:`A_{b+1}` (the forward recursion
    above from :math:`A_b`, driven by that generator, then corrected by
    :math:`(A_{b+1} - \\tilde X_{B})\\,\\rho^{B-j}(1-\\rho^{2j})/(1-\\rho^{2B})`). This is the
    AR(1) law except that consecutive anchors are independent instead of correlated by
    :math:`\\rho^{B} = e^{-409.6}` — below double precision.

    Parameters
    ----------
    sigma_db : σ [dB]; 0 disables shadowing
    corr_s : decorrelation time τ [s]
    seed : realisation seed
    """

    def __init__(self, sigma_db: float, corr_s: float, seed: int) -> None:
        if sigma_db < 0 or not math.isfinite(sigma_db):
            raise ValueError(f"shadowing sigma must be >= 0 dB, got {sigma_db}")
        if corr_s <= 0 or not math.isfinite(corr_s):
            raise ValueError(f"shadowing correlation time must be > 0 s, got {corr_s}")
        self.sigma_db = float(sigma_db)
        self.corr_s = float(corr_s)
        self.seed = int(seed)
        self.step_s = self.corr_s / 10.0
        self._rho = math.exp(-self.step_s / self.corr_s)
        j = np.arange(_BLOCK + 1, dtype=float)
        rho_b = self._rho**_BLOCK
        # Cov(X_j, X_B | X_0) / Var(X_B | X_0) of the AR(1): the bridge's correction weights
        self._bridge = self._rho ** (_BLOCK - j) * (1.0 - self._rho ** (2 * j)) / (1.0 - rho_b**2)
        self._cache: dict[int, np.ndarray] = {}

    def _anchor(self, b: int) -> float:
        return self.sigma_db * float(np.random.default_rng([self.seed, b]).standard_normal())

    def _block(self, b: int) -> np.ndarray:
        """Grid points X_{bB} … X_{(b+1)B} (B + 1 values) of block ``b``."""
        blk = self._cache.get(b)
        if blk is not None:
            return blk
        rng = np.random.default_rng([self.seed, b])
        a0 = self.sigma_db * float(rng.standard_normal())  # == self._anchor(b)
        w = rng.standard_normal(_BLOCK)
        drive = np.empty(_BLOCK + 1)
        drive[0] = a0
        drive[1:] = self.sigma_db * math.sqrt(1.0 - self._rho**2) * w
        free = lfilter([1.0], [1.0, -self._rho], drive)  # X̃_j = ρ X̃_{j-1} + σ√(1-ρ²) w
        blk = free + (self._anchor(b + 1) - free[-1]) * self._bridge
        blk[-1] = self._anchor(b + 1)  # exact, not rounded
        if len(self._cache) >= _CACHE_BLOCKS:
            self._cache.pop(next(iter(self._cache)))
        self._cache[b] = blk
        return blk

    def db(self, t_s: np.ndarray | float) -> np.ndarray:
        """Shadowing loss X(t) [dB] at emulated times (positive = extra loss).

        Raises ValueError for a non-finite time.
        """
        t = np.abs(np.asarray(t_s, dtype=float))
        if not np.all(np.isfinite(t)):
            raise ValueError("shadowing time must be finite")
        if self.sigma_db == 0.0:
            return np.zeros_like(t)
        pos = t / self.step_s
        blk_idx = np.floor(pos / _BLOCK)
        j = np.clip(pos - blk_idx * _BLOCK, 0.0, float(_BLOCK))
        j0 = np.minimum(np.floor(j), _BLOCK - 1).astype(np.int64)
        frac = j - j0
        out = np.empty(t.shape)
        for b in np.unique(blk_idx):
            sel = blk_idx == b
            blk = self._block(int(b))
            out[sel] = blk[j0[sel]] * (1.0 - frac[sel]) + blk[j0[sel] + 1] * frac[sel]
        return out


class RainPhase:
    """Rain on/off phases: emulated time is cut into cells of ``cell_s``; each cell is
    rainy with probability p, drawn from a counter-based generator keyed by (seed, cell).

    Rain attenuation applies as :math:`A_{rain}/\\sin\\theta` while rainy.
    """

    def __init__(self, probability: float, seed: int, cell_s: float = 1800.0) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"rain probability must be in 0..1, got {probability}")
        self.probability = float(probability)
        self.seed = int(seed)
        self.cell_s = float(cell_s)

    def raining(self, t_s: np.ndarray | float) -> np.ndarray:
        """Boolean array: is it raining at emulated time t?"""
        t = np.asarray(t_s, dtype=float)
        if self.probability == 0.0:
            return np.zeros(t.shape, dtype=bool)
        if self.probability == 1.0:
            return np.ones(t.shape, dtype=bool)
        cells = np.floor(t / self.cell_s).astype(np.int64)
        uniq, inv = np.unique(cells, return_inverse=True)
        draws = np.array(
            [np.random.default_rng([self.seed, 7919, int(c) & 0x7FFFFFFF]).random() for c in uniq]
        )
        return (draws < self.probability)[inv].reshape(t.shape)

"""Seeded large-scale random processes in emulated time: shadowing and rain phases.

Both are functions of emulated time and a seed only: querying them in any order, from any
process, gives the same realisation.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RainPhase", "ShadowingProcess"]

_BLOCK = 4096


class ShadowingProcess:
    """Log-normal shadowing :math:`X_\\sigma(t)` [dB] with exponential autocorrelation.

    Gudmundson's model: a Gauss–Markov (AR(1)) process sampled every Δ = τ/10,

    .. math:: X_{k+1} = \\rho X_k + \\sigma\\sqrt{1-\\rho^2}\\, w_k, \\quad
              \\rho = e^{-\\Delta/\\tau}, \\; w_k \\sim \\mathcal N(0,1),

    linearly interpolated between grid points, stationary from t = 0
    (:math:`X_0 \\sim \\mathcal N(0, \\sigma^2)`). Times before 0 mirror to |t|.

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
        self._blocks: list[np.ndarray] = []

    def _grid(self, upto: int) -> np.ndarray:
        while len(self._blocks) * _BLOCK <= upto:
            b = len(self._blocks)
            w = np.random.default_rng([self.seed, b]).standard_normal(_BLOCK)
            x = np.empty(_BLOCK)
            prev = self._blocks[-1][-1] if self._blocks else None
            scale = self.sigma_db * math.sqrt(1.0 - self._rho**2)
            for i in range(_BLOCK):
                if prev is None:
                    prev = self.sigma_db * w[i]
                else:
                    prev = self._rho * prev + scale * w[i]
                x[i] = prev
            self._blocks.append(x)
        return np.concatenate(self._blocks)

    def db(self, t_s: np.ndarray | float) -> np.ndarray:
        """Shadowing loss X(t) [dB] at emulated times (positive = extra loss)."""
        t = np.abs(np.asarray(t_s, dtype=float))
        if self.sigma_db == 0.0:
            return np.zeros_like(t)
        pos = t / self.step_s
        grid = self._grid(int(np.max(pos, initial=0.0)) + 2)
        i = np.floor(pos).astype(np.int64)
        frac = pos - i
        return grid[i] * (1.0 - frac) + grid[i + 1] * frac


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

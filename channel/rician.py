"""Rician small-scale fading: a seeded, continuous-time process and its theory.

The fading gain is evaluated at *emulated* times, so a realisation depends only on the
seed and on when bursts are sent, never on how many samples a machine has processed.

Model (sum of sinusoids, Pop & Beaulieu / Xiao–Zheng–Beaulieu with random arrival
angles), normalised to :math:`E|h|^2 = 1`:

.. math::
    h(t) = \\sqrt{\\tfrac{K}{K+1}}\\, e^{j(2\\pi f_D \\cos\\theta_0 t + \\phi_0)}
         + \\sqrt{\\tfrac{1}{K+1}}\\, \\frac{1}{\\sqrt N}\\sum_{n=1}^{N}
           e^{j(2\\pi f_D \\cos\\alpha_n t + \\phi_n)},

:math:`\\alpha_n = (2\\pi n - \\pi + \\vartheta_n)/N`, :math:`\\vartheta_n, \\phi_n \\sim
U[-\\pi, \\pi)`. The envelope :math:`|h|` is Rice distributed with
:math:`\\nu = \\sqrt{K/(K+1)}`, :math:`\\sigma^2 = 1/(2(K+1))`; the diffuse part has the
Clarke/Jakes Doppler spectrum bounded by ±f_D.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = [
    "RicianFading",
    "k_linear",
    "rice_distribution",
    "rician_samples",
]


def k_linear(k_db: float) -> float:
    """K-factor from dB; ``-inf`` dB gives 0 (Rayleigh)."""
    if math.isinf(k_db) and k_db < 0:
        return 0.0
    if not math.isfinite(k_db):
        raise ValueError(f"Rician K must be finite or -inf dB, got {k_db}")
    return 10.0 ** (k_db / 10.0)


def rice_distribution(k_db: float) -> stats.rv_continuous:
    """Frozen ``scipy.stats.rice`` of the envelope |h| with E|h|² = 1.

    ``rice(b, scale=σ)`` with :math:`\\sigma = 1/\\sqrt{2(K+1)}`, :math:`b = \\nu/\\sigma =
    \\sqrt{2K}`.
    """
    k = k_linear(k_db)
    sigma = 1.0 / math.sqrt(2.0 * (k + 1.0))
    return stats.rice(math.sqrt(2.0 * k), scale=sigma)


def rician_samples(k_db: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` independent complex Rician gains (block fading), E|h|² = 1, random LOS phase."""
    k = k_linear(k_db)
    los = math.sqrt(k / (k + 1.0)) * np.exp(1j * rng.uniform(-np.pi, np.pi, n))
    diffuse = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * math.sqrt(
        1.0 / (2.0 * (k + 1.0))
    )
    return los + diffuse


class RicianFading:
    """Deterministic continuous-time Rician fading process.

    Parameters
    ----------
    k_db : Rician K-factor [dB] (``-inf`` for Rayleigh)
    max_doppler_hz : maximum Doppler spread f_D of the diffuse paths [Hz]
    seed : seed of this realisation
    n_sinusoids : N, number of diffuse sinusoids (≥ 8; 64 gives single-realisation
        envelope statistics within KS tolerance of the Rice law)
    los_doppler_ratio : cos θ₀, the LOS component's Doppler as a fraction of f_D (0 = the
        LOS Doppler is handled separately, as for a satellite whose bulk Doppler is applied
        as a frequency offset)
    """

    def __init__(
        self,
        k_db: float,
        max_doppler_hz: float,
        seed: int,
        n_sinusoids: int = 64,
        los_doppler_ratio: float = 0.0,
    ) -> None:
        if not (math.isfinite(max_doppler_hz) and max_doppler_hz >= 0.0):
            raise ValueError(f"max Doppler spread must be >= 0 Hz, got {max_doppler_hz}")
        if n_sinusoids < 8:
            raise ValueError("n_sinusoids must be >= 8")
        self.k_db = k_db
        self.k = k_linear(k_db)
        self.max_doppler_hz = float(max_doppler_hz)
        self.seed = int(seed)
        self.n_sinusoids = int(n_sinusoids)
        rng = np.random.default_rng(self.seed)
        n = np.arange(1, n_sinusoids + 1)
        alpha = (2.0 * np.pi * n - np.pi + rng.uniform(-np.pi, np.pi, n_sinusoids)) / n_sinusoids
        self._freq_hz = self.max_doppler_hz * np.cos(alpha)
        self._phase = rng.uniform(-np.pi, np.pi, n_sinusoids)
        self._los_freq_hz = self.max_doppler_hz * los_doppler_ratio
        self._los_phase = rng.uniform(-np.pi, np.pi)
        self._a_los = math.sqrt(self.k / (self.k + 1.0))
        self._a_diff = math.sqrt(1.0 / ((self.k + 1.0) * n_sinusoids))

    def gains(self, t_s: np.ndarray | float) -> np.ndarray:
        """Complex gain h(t) at emulated times ``t_s`` [s]; returns complex128 of t's shape.

        Cost is O(N·len(t)); evaluate at a decimated grid and interpolate for long bursts
        (:meth:`gains_interp`).
        """
        t = np.asarray(t_s, dtype=float)
        flat = t.reshape(-1)
        out = np.empty(flat.shape, dtype=np.complex128)
        chunk = 65536
        for i in range(0, flat.size, chunk):
            tt = flat[i : i + chunk]
            arg = 2.0 * np.pi * np.outer(tt, self._freq_hz) + self._phase
            out[i : i + chunk] = self._a_diff * np.exp(1j * arg).sum(axis=1)
        out += self._a_los * np.exp(1j * (2.0 * np.pi * self._los_freq_hz * flat + self._los_phase))
        return out.reshape(t.shape)

    def gains_interp(
        self, t0_s: float, n: int, fs_hz: float, points_per_cycle: int = 32
    ) -> np.ndarray:
        """h(t) at ``t0 + k/fs`` for k < n, computed on a grid of ``points_per_cycle`` per
        Doppler cycle and linearly interpolated (error < 0.5 % for 32 points/cycle)."""
        if n <= 0:
            return np.zeros(0, dtype=np.complex128)
        dur = n / fs_hz
        fmax = max(self.max_doppler_hz, abs(self._los_freq_hz), 1e-3)
        n_grid = int(min(n, max(2, math.ceil(dur * fmax * points_per_cycle) + 2)))
        if n_grid >= n:
            return self.gains(t0_s + np.arange(n) / fs_hz)
        tg = t0_s + np.linspace(0.0, dur, n_grid)
        hg = self.gains(tg)
        t = t0_s + np.arange(n) / fs_hz
        return np.interp(t, tg, hg.real) + 1j * np.interp(t, tg, hg.imag)

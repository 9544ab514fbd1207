"""The Rician fading stage against scipy.stats.rice and Clarke's Doppler spectrum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal, stats

import channel
from flowgraphs.impairments import RicianFadingStage

from .conftest import run_stage

pytestmark = pytest.mark.integration

ALPHA = 0.01  # KS significance level


def _envelopes(k_db: float, seed: int, n_bursts: int = 1500) -> np.ndarray:
    # Bursts at random emulated times across 2e4 s: one envelope sample per burst
    rng = np.random.default_rng(seed)
    stage = RicianFadingStage(channel.RicianFading(k_db, 200.0, seed=seed), 1.0e6)
    times = rng.uniform(0.0, 2.0e4, n_bursts)
    items = [({"_t0": float(t), "tx_start": float(t)}, np.ones(8, np.complex64)) for t in times]
    out = run_stage(stage, items)
    assert len(out) == n_bursts
    return np.array([abs(d[0]) for _, d in out])


@pytest.mark.parametrize("k_db", [0.0, 6.0, 12.0])
def test_envelope_matches_scipy_rice(k_db):
    env = _envelopes(k_db, seed=21)
    assert stats.kstest(env, channel.rice_distribution(k_db).cdf).pvalue > ALPHA
    assert np.mean(env**2) == pytest.approx(1.0, abs=0.06)


def test_ks_has_power_against_the_wrong_k():
    env = _envelopes(0.0, seed=22)
    assert stats.kstest(env, channel.rice_distribution(10.0).cdf).pvalue < ALPHA


def test_doppler_spectrum_spread_matches_max_doppler():
    # One long burst (100 s at 4 kHz) through the stage; diffuse part = h − mean(h)
    f_d, fs = 100.0, 4000.0
    stage = RicianFadingStage(channel.RicianFading(3.0, f_d, seed=5), fs)
    out = run_stage(stage, [({"_t0": 50.0, "tx_start": 50.0}, np.ones(400_000, np.complex64))])
    h = out[0][1].astype(np.complex128)
    f, s = signal.welch(h - h.mean(), fs=fs, nperseg=8192, return_onesided=False)
    # Clarke: all power within ±f_D, RMS Doppler spread f_D/√2 (tolerance 5 %)
    assert np.sum(s[np.abs(f) <= 1.05 * f_d]) / np.sum(s) > 0.999
    rms = np.sqrt(np.sum(f**2 * s) / np.sum(s))
    assert rms == pytest.approx(f_d / np.sqrt(2.0), rel=0.05)

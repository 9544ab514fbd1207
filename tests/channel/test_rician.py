"""Rician fading statistics against scipy.stats.rice and Clarke's spectrum."""

import numpy as np
import pytest
from scipy import stats

from channel import RicianFading, rice_distribution, rician_samples

ALPHA = 1e-3  # KS rejection level; seeds fixed so the outcome is reproducible


@pytest.mark.parametrize("k_db", [-np.inf, 0.0, 6.0, 12.0])
def test_block_samples_match_scipy_rice(k_db, rng):
    env = np.abs(rician_samples(k_db, 20_000, rng))
    assert stats.kstest(env, rice_distribution(k_db).cdf).pvalue > ALPHA
    assert np.mean(env**2) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("k_db", [0.0, 10.0])
def test_continuous_process_envelope_matches_rice_over_time(k_db):
    # One realisation sampled at times far apart relative to the coherence time 1/f_D.
    fading = RicianFading(k_db, max_doppler_hz=200.0, seed=7)
    t = np.random.default_rng(1).uniform(0.0, 2e4, 4000)
    env = np.abs(fading.gains(t))
    assert stats.kstest(env, rice_distribution(k_db).cdf).pvalue > ALPHA
    # Across realisations at one instant as well.
    env0 = np.array([abs(RicianFading(k_db, 200.0, seed=s).gains(0.0)) for s in range(1500)])
    assert stats.kstest(env0, rice_distribution(k_db).cdf).pvalue > ALPHA


def test_wrong_k_is_detected():
    # The test has power: K = 0 samples are rejected against K = 10 dB.
    fading = RicianFading(0.0, max_doppler_hz=200.0, seed=7)
    env = np.abs(fading.gains(np.random.default_rng(1).uniform(0.0, 2e4, 4000)))
    assert stats.kstest(env, rice_distribution(10.0).cdf).pvalue < ALPHA


def test_doppler_spectrum_is_bounded_by_max_doppler():
    fd, fs = 100.0, 2000.0
    fading = RicianFading(-np.inf, fd, seed=3)
    h = fading.gains(np.arange(2**16) / fs)
    spec = np.abs(np.fft.fftshift(np.fft.fft(h * np.hanning(h.size)))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(h.size, 1 / fs))
    inside = np.sum(spec[np.abs(f) <= fd * 1.02])
    assert inside / np.sum(spec) > 0.995
    # Clarke: RMS Doppler spread = f_D/√2.
    rms = np.sqrt(np.sum(spec * f**2) / np.sum(spec))
    assert rms == pytest.approx(fd / np.sqrt(2), rel=0.1)


def test_realisation_depends_on_seed_and_time_only():
    a = RicianFading(5.0, 50.0, seed=11)
    b = RicianFading(5.0, 50.0, seed=11)
    t = np.linspace(0, 10, 1000)
    np.testing.assert_array_equal(a.gains(t), b.gains(t))
    np.testing.assert_array_equal(a.gains(t[500:]), b.gains(t)[500:])
    assert not np.allclose(RicianFading(5.0, 50.0, seed=12).gains(t), a.gains(t))


def test_interpolated_gains_are_close():
    f = RicianFading(3.0, 500.0, seed=2)
    exact = f.gains(1.0 + np.arange(50_000) / 1e6)
    approx = f.gains_interp(1.0, 50_000, 1e6)
    assert np.max(np.abs(exact - approx)) < 0.01

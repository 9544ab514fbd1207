"""Doppler: the stage applies the expected frequency, and the receiver measures it."""

from __future__ import annotations

import numpy as np
import pytest

from flowgraphs.impairments import DopplerStage
from flowgraphs.link_channel import LinkChannel
from flowgraphs.measure import run_bursts
from flowgraphs.static_link import StaticLink

from .conftest import run_stage

pytestmark = pytest.mark.integration


def test_stage_applies_offset_and_rate():
    # Prepare: a tone-free carrier (all ones), f_d = 37.5 kHz, rate −600 Hz/s, 0.2 s burst
    fs, f0, rate = 1.0e6, 37.5e3, -600.0
    meta = {"_t0": 100.0, "tx_start": 100.0, "doppler_hz": f0, "doppler_rate_hz_per_s": rate}
    # Execute
    out = run_stage(DopplerStage(fs, "none"), [(meta, np.ones(200_000, np.complex64))])
    y = out[0][1].astype(np.complex128)
    # Assert: instantaneous frequency = f0 + rate·τ (within 2 Hz, averaged over 10 ms)
    inst = np.angle(y[1:] * np.conj(y[:-1])) * fs / (2 * np.pi)
    for i in (0, 100_000, 189_999):
        tau = (i + 5000) / fs
        assert np.mean(inst[i : i + 10_000]) == pytest.approx(f0 + rate * tau, abs=2.0)


@pytest.mark.parametrize(
    ("precomp", "residual", "expected"),
    [("none", 0.0, 41_234.0), ("residual", 750.0, 750.0), ("full", 0.0, 0.0)],
)
def test_receiver_measures_the_applied_doppler(precomp, residual, expected):
    # Prepare: a static link with a 41.234 kHz Doppler, high SNR
    geo = StaticLink(snr_db=25.0, doppler_hz=41_234.0)
    link = LinkChannel(
        "d",
        geo,
        None,
        1.0e6,
        250.0e3,
        "qpsk",
        noise_bandwidth_hz=250.0e3,
        seed=3,
        doppler_precomp=precomp,
        residual_hz=residual,
    )
    # Execute
    res = run_bursts(link, [bytes(range(200))] * 5, [0.0] * 5)
    # Assert: every frame delivered, the receiver's estimate within 30 Hz of what was applied
    assert len(res.delivered) == 5
    for meta, _ in res.delivered:
        assert meta["doppler_hz"] == pytest.approx(41_234.0)
        assert meta["freq_est_hz"] == pytest.approx(expected, abs=30.0)


@pytest.mark.parametrize(("snr_db", "expected"), [(8.0, "bpsk"), (30.0, "16qam")])
def test_adaptive_modulation_is_chosen_per_burst_and_decoded(snr_db, expected):
    geo = StaticLink(snr_db=snr_db, doppler_hz=5_000.0)
    link = LinkChannel(
        "m", geo, None, 1.0e6, 250.0e3, "adaptive", noise_bandwidth_hz=250.0e3, seed=6
    )
    res = run_bursts(link, [bytes(range(40))] * 3, [0.0] * 3)
    assert {m["modulation"] for m, _ in res.delivered} == {expected}
    assert {m["rx_modulation"] for m, _ in res.delivered} == {expected}

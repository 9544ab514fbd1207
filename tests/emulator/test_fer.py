"""Frame error rate through the emulator vs theory; corrupted frames never pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from channel import theory
from flowgraphs import frame, modem
from flowgraphs.burst_demodulator import BurstDemodulator
from flowgraphs.crc_check import CrcCheck
from flowgraphs.link_channel import LinkChannel
from flowgraphs.measure import per_curve, run_bursts
from flowgraphs.static_link import StaticLink

from .conftest import run_stage

pytestmark = pytest.mark.integration


def test_fer_falls_with_snr_and_is_near_theory():
    # Prepare/Execute: QPSK, 128 B payloads, 150 frames per point, 3 kHz Doppler to remove
    snr = [9.0, 11.0, 13.0]
    res = per_curve("qpsk", snr, frames=150, payload_bytes=128, seed=5)
    fer = [p["fer"] for p in res["points"]]
    # Assert: monotone, and within the band theory(Es/N0 + 0.5 dB) … theory(Es/N0 − 1 dB)
    # widened by 3 binomial standard deviations (implementation loss ≤ 1 dB)
    assert fer[0] > fer[1] > fer[2]
    n_bits = res["frame_bits"]
    for p in res["points"]:
        lo = float(theory.fer_awgn("qpsk", p["esn0_db"] + 0.5, n_bits))
        hi = float(theory.fer_awgn("qpsk", p["esn0_db"] - 1.0, n_bits))
        sd = 3 * math.sqrt(max(hi * (1 - hi), 1 / p["frames"]) / p["frames"])
        assert lo - sd <= p["fer"] <= hi + sd, p


def test_rician_fer_is_near_block_fading_theory():
    res = per_curve("qpsk", [16.0], frames=150, payload_bytes=128, rician_k_db=6.0, seed=9)
    p = res["points"][0]
    n_bits = res["frame_bits"]
    lo = float(theory.fer_rician("qpsk", 16.5, n_bits, 6.0))
    hi = float(theory.fer_rician("qpsk", 15.0, n_bits, 6.0))
    sd = 3 * math.sqrt(max(hi * (1 - hi), 1 / p["frames"]) / p["frames"])
    assert lo - sd <= p["fer"] <= hi + sd, p


def test_no_corrupted_frame_is_delivered_at_low_snr():
    # At Es/N0 = 7 dB nearly every QPSK frame has bit errors: none may come out wrong
    geo = StaticLink(snr_db=7.0, doppler_hz=1000.0)
    link = LinkChannel("c", geo, None, 1.0e6, 250.0e3, "qpsk", noise_bandwidth_hz=250.0e3, seed=8)
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(64) for _ in range(150)]
    res = run_bursts(link, payloads, [0.0] * 150)
    for meta, data in res.delivered:
        assert data == payloads[meta["seq"]]
    lost = sum(v for k, v in res.summary.items() if k.startswith("lost_"))
    assert lost + res.summary["crc_fail"] + len(res.delivered) == 150
    assert res.summary["crc_fail"] > 0  # the CRC check did real work


def test_demodulated_corrupt_body_is_dropped_by_the_crc_stage():
    # Prepare: a clean burst whose data symbols were flipped after modulation
    sps = 4
    body = frame.append_crc32(bytes(range(100)))
    sym = modem.frame_symbols(body, "bpsk")
    lay = frame.frame_layout("bpsk", len(body))
    sym[lay.data_idx[40:48]] *= -1
    from scipy import signal

    x = signal.upfirdn(modem.rrc_taps(sps), sym, up=sps).astype(np.complex64)
    x = np.concatenate([np.zeros(100, np.complex64), x, np.zeros(100, np.complex64)])
    # Execute: the demodulator decodes it, the CRC stage must drop it
    demod = run_stage(BurstDemodulator(1e6, 250e3), [({"seq": 1}, x)])
    assert len(demod) == 1 and demod[0][1] != body
    check = CrcCheck()
    assert run_stage(check, [(demod[0][0], demod[0][1])], timeout_s=1.0) == []
    assert check.counters["crc_fail"] == 1

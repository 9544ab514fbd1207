"""The coded modem without GNU Radio's scheduler: frame, header, DSP, GSE, randomness, ACM,
and loopbacks of the transmitter into the blind receiver."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import signal, stats

from flowgraphs import dsp, frame, gse, modcod, modem
from flowgraphs.randomness import burst_key, complex_normal, standard_normal, start_sample

CFG = modem.ModemConfig(5e6, 5e6 / 1.05, 0.05, 1440, 5.0)


def test_header_roundtrip_and_errors():
    h = frame.Header(17, 7290, 29)
    x = frame.encode_header(h).real
    assert frame.decode_header(x) == h
    # ML decoding corrects many sign errors: 20 of 128 in one block still decode
    y = x.copy()
    y[:20] *= -1
    assert frame.decode_header(y) == h
    # a wrong CRC-8 is refused
    bad = bytearray(h.to_bytes())
    bad[3] ^= 1
    rows = [(1.0 - 2.0 * (b >> 7)) * frame.HADAMARD_128[b & 0x7F] for b in bad]
    assert frame.decode_header(np.concatenate(rows) * frame.HEADER_PN) is None
    with pytest.raises(ValueError):
        frame.Header(64, 10, 0).to_bytes()
    with pytest.raises(ValueError):
        frame.Header(1, 0, 0).to_bytes()


def test_header_survives_minus_three_db():
    rng = np.random.default_rng(3)
    h = frame.Header(1, 2025, 5)
    x = frame.encode_header(h).real
    sigma = math.sqrt(1 / (2 * 10 ** (-3 / 10)))  # Es/N0 = -3 dB, real part
    ok = sum(frame.decode_header(x + sigma * rng.standard_normal(x.size)) == h for _ in range(200))
    assert ok >= 199


def test_layout_counts_every_symbol_once_and_pilot_rule():
    lay = frame.frame_layout(10000, 1440)
    idx = np.concatenate(
        [np.arange(frame.PREAMBLE_LEN + frame.HEADER_SYMBOLS), lay.data_idx, lay.pilot_idx.ravel()]
    )
    assert np.array_equal(np.sort(idx), np.arange(lay.n_symbols))
    assert lay.n_pilot_blocks == math.ceil(10000 / 1440)
    assert frame.pilot_spacing_for(4.76e6, 5.0) == 1440
    assert frame.pilot_spacing_for(10e3, 5.0) == 180  # R_s / (10 f_D) = 200 -> 180
    assert frame.pilot_spacing_for(50e3, 100.0) == 90  # never below 90


@pytest.mark.parametrize(
    ("ratio", "alpha"), [(Fraction(21, 20), 0.05), (Fraction(6, 5), 0.2), (Fraction(2), 0.35)]
)
def test_pulse_shaping_and_matched_filter(ratio, alpha):
    rng = np.random.default_rng(1)
    a = ((2 * rng.integers(0, 2, 4000) - 1) + 1j * (2 * rng.integers(0, 2, 4000) - 1)) / np.sqrt(2)
    a = a.astype(np.complex64)
    for delay in (0.0, 0.37):
        s, n0 = dsp.tx_shape(a, ratio, alpha, delay)
        z = dsp.rx_matched(s, ratio, alpha, n0, a.size)
        evm = np.mean(np.abs(z[40:-40] - a[40:-40]) ** 2)
        assert 10 * np.log10(evm) < -30  # ISI of the truncated pulse only
        pw = np.mean(np.abs(s[int(n0) : int(n0 + 3000 * float(ratio))]) ** 2)
        assert pw == pytest.approx(1.0, abs=0.02)  # unit power per sample
    w = (rng.standard_normal(40000) + 1j * rng.standard_normal(40000)).astype(np.complex64)
    z = dsp.rx_matched(w, ratio, alpha, 200.0, int(30000 / float(ratio)))
    assert np.var(z) == pytest.approx(2.0 / float(ratio), rel=0.05)  # σ²/ρ


def test_resampler_matches_scipy_upfirdn():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(3000) + 1j * rng.standard_normal(3000)).astype(np.complex64)
    h = rng.standard_normal(101).astype(np.float32)
    for up, down in ((21, 20), (20, 21), (2, 1), (1, 2), (5, 4)):
        ref = signal.upfirdn(h, x, up=up, down=down)
        got = dsp.resample(x, h, up, down, ref.size)
        np.testing.assert_allclose(got, ref, atol=2e-4)


def test_rotations_match_numpy():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(5000) + 1j * rng.standard_normal(5000)).astype(np.complex64)
    n = np.arange(x.size, dtype=np.float64)
    np.testing.assert_allclose(
        dsp.rotate(x, 1.3e-3, 0.2), x * np.exp(2j * np.pi * (0.2 + 1.3e-3 * n)), atol=1e-4
    )
    c0, f0, r = 0.3, 2e-4, 3e-9
    ref = x * np.exp(2j * np.pi * (c0 + f0 * n + 0.5 * r * n * n))
    np.testing.assert_allclose(dsp.chirp(x, c0, f0, r), ref, atol=1e-4)
    g = np.exp(1j * np.linspace(0, 2, 6)) * np.linspace(1, 2, 6)
    gi = np.interp(n, np.arange(6) * 1000.0, g.real) + 1j * np.interp(
        n, np.arange(6) * 1000.0, g.imag
    )
    np.testing.assert_allclose(dsp.apply_gain(x, g, 1000.0), x * gi, atol=1e-4)


def test_rational_ratio_refuses_an_irrational_rate():
    assert dsp.rational_ratio(5e6, 5e6 / 1.05) == Fraction(21, 20)
    with pytest.raises(ValueError, match="ratio"):
        dsp.rational_ratio(5e6, 4.1e6 + 1.0)


def test_counter_based_noise_is_gaussian_and_keyed_by_position():
    x = standard_normal(burst_key(1, "c1", 1000, 1), 400_000)
    assert stats.kstest(x, "norm").pvalue > 1e-3
    assert x.var() == pytest.approx(1.0, abs=0.01)
    # the tail is right: P(|x| > 4) = 6.3e-5
    assert abs((np.abs(x) > 4).mean() - 2 * stats.norm.sf(4)) < 3 * math.sqrt(6.3e-5 / 4e5)
    # the same position gives the same draws; another position or link others
    assert np.array_equal(x[:100], standard_normal(burst_key(1, "c1", 1000, 1), 100))
    other = standard_normal(burst_key(1, "c1", 1001, 1), 100_000)
    assert abs(np.corrcoef(x[:100_000], other)[0, 1]) < 0.02
    assert not np.array_equal(x[:100], standard_normal(burst_key(1, "c2", 1000, 1), 100))
    w = complex_normal(burst_key(2, "c1", 5, 1), 100_000)
    assert np.mean(np.abs(w) ** 2) == pytest.approx(1.0, abs=0.02)
    assert start_sample(1.0, 5e6) == 5_000_000
    with pytest.raises(ValueError):
        start_sample(-1.0, 5e6)


def test_gse_pack_fragment_and_reassemble():
    pdus = [(i, bytes([i]) * n, 0) for i, n in enumerate((3000, 10, 5000, 1))]
    frames = []
    state = list(pdus)
    while state:
        packets, pieces = gse.pack(state, 2021)
        assert len(packets) <= 2021
        frames.append(packets)
        sent: dict[int, int] = {}
        for p in pieces:
            sent[p.pdu_id] = sent.get(p.pdu_id, 0) + len(p.data)
        state = [(i, b, o + sent.get(i, 0)) for i, b, o in state if o + sent.get(i, 0) < len(b)]
    r = gse.Reassembler()
    out = []
    for c, f in enumerate(frames):
        out += r.push(c, gse.unpack(f))
    assert out == [(i, b) for i, b, _ in pdus]
    # a lost frame in the middle of a fragmented PDU drops it, nothing else
    r = gse.Reassembler()
    got = []
    for c, f in enumerate(frames):
        if c == 1:
            continue
        got += r.push(c, gse.unpack(f))
    assert (0, pdus[0][1]) not in got and r.counters["dropped_partial"] + r.counters["orphan"] >= 1
    assert gse.unpack(b"\x80\x10\x00\x01ab") is None  # a length beyond the field


def test_acm_picks_what_the_table_prescribes():
    table = {m.name: m.reference_esn0_db for m in modcod.MODCODS}
    for esn0, margin in ((-10.0, 1.0), (2.0, 1.0), (5.19, 0.0), (7.0, 1.0), (30.0, 3.0)):
        got = modcod.select(esn0, margin, table=table)
        ok = [m for m in modcod.MODCODS if table[m.name] <= esn0 - margin]
        want = max(ok, key=lambda m: m.bits_per_data_symbol) if ok else modcod.MODCODS[0]
        assert got is want
    assert modcod.select(5.19, 0.0, table=table).name == "qpsk-5/6"
    assert modcod.select(-10.0, table=table).name == "qpsk-1/4"
    with pytest.raises(ValueError, match="unknown MODCOD"):
        modcod.by_name("qpsk-7/8")


def test_shipped_table_is_complete_and_within_one_db_of_the_reference():
    thr = modcod.measured_thresholds()
    assert set(thr) == {m.name for m in modcod.MODCODS}
    for m in modcod.MODCODS:
        assert abs(thr[m.name] - m.reference_esn0_db) <= 1.0, m.name


def _loopback(mc, esn0_db, rng, foff_hz=300.0):
    tx, rx = modem.Transmitter(CFG), modem.Receiver(CFG)
    payload = rng.bytes(mc.capacity_bytes - 12)
    df = frame.append_crc32(gse.pack([(1, payload, 0)], mc.capacity_bytes - 4)[0])
    fr = tx.build(mc, df, 7)
    w, _ = tx.waveform(fr.symbols, rng.random())
    lead = int(rng.integers(1, 64) * CFG.sps)
    x = np.zeros(lead + w.size + 40, np.complex64)
    x[lead : lead + w.size] = w * np.exp(2j * np.pi * rng.random())
    x = dsp.rotate(x, foff_hz / CFG.sample_rate_hz)
    if esn0_db is not None:
        sigma = math.sqrt(CFG.sps / 10 ** (esn0_db / 10))
        x = x + sigma * complex_normal(burst_key(1, "t", int(rng.integers(1 << 30)), 1), x.size)
    res = rx.receive(x)
    assert res.reason == "ok"
    assert res.header == frame.Header(mc.id, len(df), 7)
    got, _, _ = modem.decode_data_field(mc, res.header.df_len, res.llr)
    return got == df, res


@pytest.mark.integration
@pytest.mark.parametrize("name", ["qpsk-1/4", "8psk-3/5", "16apsk-3/4", "32apsk-9/10"])
def test_loopback_unknown_offset_timing_and_phase(name):
    rng = np.random.default_rng(5)
    ok, res = _loopback(modcod.by_name(name), None, rng, foff_hz=2000.0)
    assert ok
    assert res.freq_offset_hz == pytest.approx(2000.0, abs=5.0)
    ok, res = _loopback(modcod.by_name(name), modcod.by_name(name).reference_esn0_db + 1.5, rng)
    assert ok and res.esn0_est_db == pytest.approx(
        modcod.by_name(name).reference_esn0_db + 1.5, abs=0.7
    )


def test_noise_only_input_is_not_a_frame():
    rx = modem.Receiver(CFG)
    w = complex_normal(burst_key(1, "n", 3, 1), 50_000)
    assert rx.receive(w).reason == "no_sync"
    assert rx.receive(np.zeros(100, np.complex64)).reason == "no_sync"


def test_modem_config_refuses_impossible_rates():
    with pytest.raises(ValueError, match="occupied"):
        modem.ModemConfig(4e6, 4e6, 0.2)
    with pytest.raises(ValueError):
        modem.ModemConfig(5e6, 5e6 / 1.05, 0.05, llr_method="fast")

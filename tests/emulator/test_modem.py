"""Modem and frame format (pure NumPy; no GNU Radio): fast unit tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowgraphs import frame, modem


@pytest.mark.parametrize("mod", modem.MODULATIONS)
def test_constellations_are_gray_and_unit_energy(mod):
    pts = modem.constellation(mod)
    assert np.mean(np.abs(pts) ** 2) == pytest.approx(1.0, rel=1e-6)
    d = np.abs(pts[:, None] - pts[None, :])
    np.fill_diagonal(d, np.inf)
    dmin = d.min()
    for i in range(pts.size):
        for j in np.flatnonzero(np.isclose(d[i], dmin, rtol=1e-4)):
            assert bin(i ^ int(j)).count("1") == 1, "nearest neighbours differ in one bit"


def test_rrc_is_nyquist_after_matched_filter():
    sps = 4
    h = modem.rrc_taps(sps, 0.35, span=16)
    g = np.convolve(h, h)
    mid = g.size // 2
    assert g[mid] == pytest.approx(1.0, rel=1e-4)
    isi = g[mid + sps :: sps][:6]
    assert np.max(np.abs(isi)) < 0.01


def test_header_roundtrip_and_crc8_rejects_flips():
    bits = frame.pack_header("16qam", 1234)
    assert frame.unpack_header(bits) == ("16qam", 1234)
    for i in range(frame.HEADER_BITS):
        b = bits.copy()
        b[i] ^= 1
        assert frame.unpack_header(b) is None


def test_layout_counts_every_symbol_once():
    lay = frame.frame_layout("qpsk", 1000)
    idx = np.concatenate([lay.data_idx, lay.pilot_idx.ravel()])
    assert np.unique(idx).size == idx.size
    assert idx.min() == lay.payload_start and idx.max() == lay.n_symbols - 1
    assert lay.n_data == 4000 and idx.size == lay.n_symbols - lay.payload_start


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=200),
    pos=st.integers(min_value=0),
    burst=st.integers(min_value=1, max_value=2**32 - 1),
)
def test_crc32_detects_every_burst_error_up_to_32_bits(payload, pos, burst):
    body = bytearray(frame.append_crc32(payload))
    bits = frame.bytes_to_bits(bytes(body))
    start = pos % bits.size
    err = frame.bytes_to_bits(burst.to_bytes(4, "big"))
    n = min(32, bits.size - start)
    if not err[:n].any():
        return
    bits[start : start + n] ^= err[:n]
    assert not frame.check_crc32(frame.bits_to_bytes(bits))


@pytest.mark.parametrize("mod", modem.MODULATIONS)
def test_noiseless_loopback_with_unknown_offset_timing_and_phase(mod):
    # Prepare: a burst with a 31.7 kHz carrier offset, 0.37-sample delay, random phase
    rng = np.random.default_rng(7)
    sps, fs = 4, 1.0e6
    h = modem.rrc_taps(sps)
    body = frame.append_crc32(rng.bytes(700))
    x = modem.modulate(body, mod, sps, h)
    x = np.concatenate([np.zeros(137, np.complex64), x, np.zeros(300, np.complex64)])
    f = np.fft.fftfreq(x.size)
    x = np.fft.ifft(np.fft.fft(x) * np.exp(-2j * np.pi * f * 0.37))
    n = np.arange(x.size)
    x = (x * np.exp(2j * np.pi * 31.7e3 * n / fs + 1.1j)).astype(np.complex64)
    # Execute
    res = modem.Receiver(sps, fs, h).demodulate(x)
    # Assert
    assert res.reason == "ok" and res.body == body and res.modulation == mod
    assert res.freq_offset_hz == pytest.approx(31.7e3, abs=20.0)


def test_noise_only_input_is_not_a_frame():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(20000) + 1j * rng.standard_normal(20000)).astype(np.complex64)
    res = modem.Receiver(4, 1e6, modem.rrc_taps(4)).demodulate(x)
    assert res.body is None

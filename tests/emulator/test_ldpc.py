"""DVB-S2/S2X LDPC codec: tables against gr-dtv and the standard's degree profile, the encoder
bit-exact against gr-dtv, the decoder against an independent reference and published
thresholds.

Channel model of the decoding tests: QPSK with Gray mapping at :math:`E_s = 1` is two
independent BPSK channels, one per axis, each bit sent as :math:`x = (1 - 2c)/\\sqrt{2}` and
received as :math:`y = x + w`, :math:`w \\sim \\mathcal{N}(0, N_0/2)`. The LLR of a bit is

.. math::

    \\lambda = \\ln\\frac{p(y \\mid c=0)}{p(y \\mid c=1)}
             = \\frac{(y + 1/\\sqrt{2})^2 - (y - 1/\\sqrt{2})^2}{2 \\cdot N_0/2}
             = \\frac{2\\sqrt{2}\\, y}{N_0}, \\qquad N_0 = 10^{-E_s/N_0\\,[dB]/10}.

Thresholds: EN 302 307-1 Table 13, QPSK normal frames, ideal :math:`E_s/N_0` for
quasi-error-free (PER 1e-7 after LDPC + BCH): 1/4: −2.35 dB, 1/2: 1.00 dB, 3/4: 4.03 dB,
9/10: 6.42 dB.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from flowgraphs.fec import dvbs2_tables
from flowgraphs.fec.dvbs2_tables import RATES, LdpcTableError, RateSpec, gr_dtv_encode
from flowgraphs.fec.ldpc import LLR_KNOWN_ZERO, LdpcCode

REPO = Path(__file__).resolve().parents[2]
ALL_RATES = list(RATES)

# Degree distribution of the DVB-S2 normal-frame codes as EN 302 307-1 annex B defines them:
# each row of a rate's address table is one group of 360 information columns and lists one
# address per edge, e.g. rate 1/2 has 36 rows of 8 addresses and 54 rows of 3 (12960 columns
# of degree 8, 19440 of degree 3). d_c is the check degree of every check but the first
# (which lacks p_{-1}): 2 + (j n_j + 3 n_3) / (N - K). Parity columns: degree 2, the last 1.
DEGREES = {  # rate: (j, columns of degree j, columns of degree 3, d_c)
    "1/4": (12, 5400, 10800, 4),
    "1/3": (12, 7200, 14400, 5),
    "2/5": (12, 8640, 17280, 6),
    "1/2": (8, 12960, 19440, 7),
    "3/5": (12, 12960, 25920, 11),
    "2/3": (13, 4320, 38880, 10),
    "3/4": (12, 5400, 43200, 14),
    "4/5": (11, 6480, 45360, 18),
    "5/6": (13, 5400, 48600, 22),
    "8/9": (4, 7200, 50400, 27),
    "9/10": (4, 6480, 51840, 30),
}
S2_RATES = list(DEGREES)


def qpsk_llr(code_bits: np.ndarray, esn0_db: float, rng: np.random.Generator) -> np.ndarray:
    """Gray QPSK over AWGN at Es = 1 → per-bit LLR 2√2·y/N0 (see module docstring)."""
    n0 = 10.0 ** (-esn0_db / 10.0)
    x = (1.0 - 2.0 * code_bits.astype(np.float64)) / math.sqrt(2.0)
    y = x + rng.standard_normal(code_bits.shape) * math.sqrt(n0 / 2.0)
    return (2.0 * math.sqrt(2.0) * y / n0).astype(np.float32)


def frame_errors(code: LdpcCode, esn0_db: float, frames: int, seed: int) -> int:
    """Frames whose decoded information bits are wrong or whose checks fail."""
    rng = np.random.default_rng(seed)
    bad = 0
    for _ in range(frames):
        u = rng.integers(0, 2, code.k, dtype=np.uint8)
        res = code.decode(qpsk_llr(code.encode(u), esn0_db, rng))
        bad += int((not res.codeword_ok) or not np.array_equal(res.info_bits, u))
    return bad


# ------------------------------------------------------------------ unit (no GNU Radio)


def test_unknown_rate_is_refused_with_the_list():
    with pytest.raises(ValueError, match=r"unknown DVB-S2 LDPC rate '7/8'.*1/2"):
        dvbs2_tables.load_table("7/8")


def test_missing_gr_dtv_names_the_rate(monkeypatch, tmp_path):
    # Prepare: an empty cache and no importable GNU Radio
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gnuradio", None)
    dvbs2_tables.load_table.cache_clear()
    try:
        # Execute / Assert
        with pytest.raises(LdpcTableError, match=r"rate 3/4: .*gr-dtv is not importable"):
            dvbs2_tables.load_table("3/4")
    finally:
        dvbs2_tables.load_table.cache_clear()


# ------------------------------------------------------------------ tables (gr-dtv)


@pytest.mark.integration
@pytest.mark.parametrize("rate", S2_RATES)
def test_degree_profile_matches_dvbs2(rate):
    # Prepare
    j, n_j, n_3, d_c = DEGREES[rate]
    code = LdpcCode.dvbs2(rate)
    h = code.parity_check_matrix()
    k, m = code.k, h.shape[0]
    # Execute
    col = np.asarray(h.sum(axis=0)).ravel()
    row = np.asarray(h.sum(axis=1)).ravel()
    # Assert: every column and every row
    assert n_j + n_3 == k and d_c == 2 + (j * n_j + 3 * n_3) // m
    assert np.array_equal(np.sort(col[:k])[::-1], np.r_[np.full(n_j, j), np.full(n_3, 3)])
    assert np.all(col[k:-1] == 2) and col[-1] == 1
    assert row[0] == d_c - 1 and np.all(row[1:] == d_c)
    assert m == 64800 - k and h.data.max() == 1  # no double edges


@pytest.mark.integration
@pytest.mark.parametrize("rate", [r for r in ALL_RATES if RATES[r].punct_count == 0])
def test_gr_dtv_codewords_satisfy_every_check(rate):
    # Prepare: two random words encoded by gr-dtv
    code = LdpcCode.dvbs2(rate)
    u = np.random.default_rng(7).integers(0, 2, (2, code.k), dtype=np.uint8)
    cw = gr_dtv_encode(rate, u)
    # Execute
    syndrome = (code.parity_check_matrix() @ cw.T.astype(np.int64)) % 2
    # Assert
    assert not syndrome.any()
    assert cw.shape == (2, 64800)


@pytest.mark.integration
def test_tables_are_cached_and_derivation_races_are_safe(tmp_path, monkeypatch):
    # Prepare: two processes derive the same table into one empty cache at once
    script = (
        "from flowgraphs.fec.dvbs2_tables import load_table; "
        "t = load_table('2/3'); print(t.xs.size, int(t.xs.sum()))"
    )
    env = {"TESTBED_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    # Execute: this process loads the cached file
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path))
    dvbs2_tables.load_table.cache_clear()
    try:
        t0 = time.perf_counter()
        table = dvbs2_tables.load_table("2/3")
        load_s = time.perf_counter() - t0
    finally:
        dvbs2_tables.load_table.cache_clear()
    # Assert: both derivations succeeded and agree, one complete file, loaded in milliseconds
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] == f"{table.xs.size} {int(table.xs.sum())}\n".encode()
    files = [p.name for p in (tmp_path / "ldpc").iterdir()]
    assert len(files) == 1 and files[0].startswith("dvbs2-normal-2_3-gr"), files
    assert load_s < 0.1, load_s


@pytest.mark.integration
def test_gr_dtv_refusing_a_rate_names_it(monkeypatch):
    monkeypatch.setitem(RATES, "1/2", RateSpec("1/2", "C_NO_SUCH_RATE", 32400))
    with pytest.raises(LdpcTableError, match=r"rate 1/2: gr-dtv refuses dtv.C_NO_SUCH_RATE"):
        gr_dtv_encode("1/2", np.zeros((1, 32400), dtype=np.uint8))


# ------------------------------------------------------------------ encoder


@pytest.mark.integration
@pytest.mark.parametrize("rate", ALL_RATES)
def test_encode_is_bit_exact_with_gr_dtv(rate):
    # Prepare
    code = LdpcCode.dvbs2(rate)
    u = np.random.default_rng(abs(hash(rate)) % 2**32).integers(0, 2, (3, code.k), np.uint8)
    # Execute
    ours, theirs = code.encode(u), gr_dtv_encode(rate, u)
    # Assert: batch and single word
    assert ours.shape == (3, code.n) and ours.dtype == np.uint8
    assert np.array_equal(ours, theirs)
    assert np.array_equal(code.encode(u[1]), theirs[1])


@pytest.mark.integration
def test_supported_rates_and_lengths():
    assert len(ALL_RATES) == 35
    code = LdpcCode.dvbs2("2/9")
    assert (code.n, code.k, code.q) == (61560, 14400, 140)  # VL-SNR: 3240 parity punctured
    assert LdpcCode.dvbs2("1/2") is LdpcCode.dvbs2("1/2")
    assert (LdpcCode.dvbs2("1/2").n, LdpcCode.dvbs2("1/2").k) == (64800, 32400)
    with pytest.raises(ValueError, match="0/1"):
        LdpcCode.dvbs2("1/2").encode(np.full(32400, 2, dtype=np.uint8))


# ------------------------------------------------------------------ decoder


def reference_layered_min_sum(
    code: LdpcCode, llr: np.ndarray, iterations: int, offset: float
) -> np.ndarray:
    """Independent float64 implementation from H alone (no quasi-cyclic layout): layers are
    the check sets {r + q s}, all 360 checks of a layer read the same posteriors, and the
    posteriors change by the sum of their message increments (np.add.at)."""
    h = code.parity_check_matrix().tocsr()
    lam = llr.astype(np.float64).copy()
    r_msg = np.zeros(h.nnz)
    layers = []
    for r in range(code.q):
        rows = r + code.q * np.arange(360)
        deg = h.indptr[rows + 1] - h.indptr[rows]
        edges = np.concatenate([np.arange(h.indptr[j], h.indptr[j + 1]) for j in rows])
        layers.append((edges, np.repeat(np.arange(360), deg), np.r_[0, np.cumsum(deg)[:-1]]))
    for _ in range(iterations):
        for edges, row, start in layers:
            cols = h.indices[edges]
            q = lam[cols] - r_msg[edges]
            a = np.abs(q)
            m1 = np.minimum.reduceat(a, start)
            is_min = a == m1[row]
            m2 = np.minimum.reduceat(np.where(is_min, np.inf, a), start)
            parity = np.add.reduceat((q < 0).astype(np.int64), start) % 2
            sign = (1 - 2 * parity[row]) * np.where(q < 0, -1.0, 1.0)
            mag = np.maximum(np.where(is_min, m2[row], m1[row]) - offset, 0.0)
            new = sign * mag
            np.add.at(lam, cols, new - r_msg[edges])
            r_msg[edges] = new
    return lam


@pytest.mark.integration
@pytest.mark.parametrize("rate", ["1/2", "3/5"])  # both have weight-2 circulants
def test_decoder_matches_independent_reference(rate):
    # Prepare: one noisy frame near threshold, so that messages are far from saturated
    code = LdpcCode.dvbs2(rate)
    rng = np.random.default_rng(3)
    llr = qpsk_llr(code.encode(rng.integers(0, 2, code.k, dtype=np.uint8)), 1.2, rng)
    # Execute: 3 iterations each
    ours = code.posteriors(llr, 3)
    ref = reference_layered_min_sum(code, llr, 3, code.min_sum_offset)
    # Assert: float32 fastmath kernel vs float64 reference
    assert np.allclose(ours, ref, rtol=1e-4, atol=1e-3), np.max(np.abs(ours - ref))


@pytest.mark.integration
@pytest.mark.parametrize("rate", ["1/4", "1/2", "3/5", "9/10", "2/9", "154/180"])
def test_noiseless_codeword_decodes_in_one_iteration(rate):
    code = LdpcCode.dvbs2(rate)
    u = np.random.default_rng(1).integers(0, 2, code.k, dtype=np.uint8)
    llr = (1.0 - 2.0 * code.encode(u)) * 8.0
    res = code.decode(llr)
    assert res.codeword_ok and res.iterations == 1
    assert res.info_bits.dtype == np.uint8 and np.array_equal(res.info_bits, u)


@pytest.mark.integration
def test_awgn_well_above_threshold_all_frames_decode():
    # QPSK rate 1/2 at Eb/N0 = 2 dB: Es/N0 = Eb/N0 + 10 log10(2 · 1/2) = 2 dB
    assert frame_errors(LdpcCode.dvbs2("1/2"), 2.0, frames=20, seed=11) == 0


@pytest.mark.integration
def test_far_below_threshold_fails_and_says_so():
    # Prepare: QPSK rate 1/2 at Es/N0 = -3 dB, 4 dB below threshold
    code = LdpcCode.dvbs2("1/2")
    rng = np.random.default_rng(5)
    u = rng.integers(0, 2, code.k, dtype=np.uint8)
    # Execute
    res = code.decode(qpsk_llr(code.encode(u), -3.0, rng), max_iter=20)
    # Assert
    assert not res.codeword_ok and res.iterations == 20
    assert np.count_nonzero(res.info_bits != u) > 0.01 * code.k


@pytest.mark.integration
def test_shortening_decodes_where_the_full_code_fails():
    # Prepare: rate 1/2, the last half of the information bits known zero and not sent
    code = LdpcCode.dvbs2("1/2")
    rng = np.random.default_rng(9)
    known = np.zeros(code.n, dtype=bool)
    known[code.k // 2 : code.k] = True
    esn0_db, frames = 0.0, 5  # 1 dB below the threshold of the full code
    ok_full = ok_short = 0
    for _ in range(frames):
        u = rng.integers(0, 2, code.k, dtype=np.uint8)
        ok_full += code.decode(qpsk_llr(code.encode(u), esn0_db, rng)).codeword_ok
        u[code.k // 2 :] = 0
        llr = np.full(code.n, LLR_KNOWN_ZERO, dtype=np.float32)
        llr[~known] = qpsk_llr(code.encode(u)[~known], esn0_db, rng)  # only these are sent
        res = code.decode(llr)
        ok_short += res.codeword_ok and np.array_equal(res.info_bits, u)
    # Assert
    assert ok_full == 0
    assert ok_short == frames


@pytest.mark.integration
def test_waterfall_sits_at_the_published_qpsk_1_2_threshold():
    # DVB-S2 Table 13: QPSK 1/2 normal frames are quasi-error-free (with BCH) at Es/N0 =
    # 1.0 dB. The LDPC alone must reach FER <= 0.1 there; 1 dB lower it must fail.
    code = LdpcCode.dvbs2("1/2")
    at_threshold = frame_errors(code, 1.0, frames=100, seed=21)
    below = frame_errors(code, 0.0, frames=20, seed=22)
    assert at_threshold <= 10, at_threshold
    assert below >= 18, below


@pytest.mark.integration
def test_decode_releases_the_gil():
    # Prepare: a long decode (pure noise never converges) in a worker thread
    code = LdpcCode.dvbs2("1/2")
    llr = np.random.default_rng(0).standard_normal(code.n).astype(np.float32)
    code.decode(llr, max_iter=1)  # compiled / loaded before timing
    inside = threading.Event()
    done = threading.Event()

    def work():
        inside.set()
        code.decode(llr, max_iter=300)
        done.set()

    # Execute: count Python loop turns while the worker is inside the kernel
    t = threading.Thread(target=work)
    t.start()
    inside.wait()
    turns = 0
    while not done.is_set():
        turns += 1
    t.join()
    # Assert: with the GIL held this loop could not run at all during the decode
    assert turns > 10_000, turns

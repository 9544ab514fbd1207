"""Measurements through the emulator: throughput (``bench``) and FER vs Es/N0 (``per``).

Both push PDUs through a real :class:`~flowgraphs.link_channel.LinkChannel` in a running top
block (every stage, their message queues and threads), injected and collected in process so
that only the emulator is measured. ``bench`` also times a stock GNU Radio C++ chain of
similar function in the same run, as the reference.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from gnuradio import gr

from channel import contact_windows
from flowgraphs import gse, modcod
from flowgraphs.burst_scheduler import AcmPolicy
from flowgraphs.config import LinkConfig
from flowgraphs.frame import CRC_LEN
from flowgraphs.link_channel import LinkChannel
from flowgraphs.msg_io import PduCollector, PduInjector
from flowgraphs.static_link import StaticLink

__all__ = [
    "BenchResult",
    "RunResult",
    "bench_link",
    "frame_payload_bytes",
    "per_modcod",
    "reference_chain",
    "run_pdus",
    "threshold_db",
]

DECODER = "layered offset min-sum LDPC (numba, nogil), DVB-S2 normal frames"


@dataclass
class RunResult:
    """Outcome of :func:`run_pdus`."""

    delivered: list[tuple[dict[str, Any], bytes]]
    status: list[dict[str, Any]]
    wall_s: float
    cpu_s: float
    samples: int
    summary: dict[str, int]


def frame_payload_bytes(mc: modcod.Modcod) -> int:
    """A PDU payload that fills one full frame of ``mc`` exactly (GSE header and the PDU's
    CRC-32 included)."""
    return mc.capacity_bytes - CRC_LEN - gse.PACKET_HEADER - CRC_LEN


def run_pdus(
    link: LinkChannel,
    payloads: list[bytes],
    tx_times: list[float],
    timeout_s: float = 300.0,
) -> RunResult:
    """Send ``payloads`` at emulated ``tx_times`` through ``link``, then a promise beyond the
    last; wait until every PDU has been delivered or lost; return what came out."""
    tb = gr.top_block("satfl_measure")
    inj, out, st = PduInjector(), PduCollector(), PduCollector()
    tb.msg_connect(inj, "out", link, "in")
    tb.msg_connect(link, "out", out, "in")
    tb.msg_connect(link, "status", st, "in")
    tb.start()
    n = len(payloads)
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        for i, (p, t) in enumerate(zip(payloads, tx_times, strict=True)):
            inj.send({"tx_time": float(t), "seq": i, "src": "bench"}, p)
        inj.send({"_ctl": "advance", "t": float(max(tx_times, default=0.0)) + 1e6}, b"\x00")
        deadline = time.monotonic() + timeout_s
        while link.finished() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {link.finished()} of {n} PDUs left in {timeout_s} s")
            time.sleep(0.002)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        # the safe-time markers share the port: wait for the PDUs themselves
        delivered = link.crc_check.counters.get("out", 0)
        if not out.wait_for(delivered, 30.0, data_only=True):
            raise TimeoutError(f"{delivered} PDUs passed the CRC but not all reached the output")
    finally:
        tb.stop()
        tb.wait()
    data = out.data_items()
    return RunResult(data, [m for m, _ in st.items], wall, cpu, link.awgn.samples, link.summary())


@dataclass
class BenchResult:
    """Throughput of one link (see :func:`bench_link`)."""

    link: str
    modcod: str
    sample_rate_hz: float
    symbol_rate_hz: float
    decoder: str
    frames: int
    samples: int
    wall_s: float
    cpu_s: float
    msps: float
    msps_per_core: float
    realtime_ratio: float
    realtime_ratio_per_core: float
    delivered: int
    pdus: int
    ldpc_iterations_mean: float
    per_block_ns: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _highest_pass_time(lc: LinkConfig) -> float:
    w = contact_windows(lc.orbit, lc.site, 0.0, 2 * 86400.0, lc.params.min_elevation_deg)
    if not w:
        raise ValueError(f"link {lc.id}: no contact window in two days")
    return max(w, key=lambda c: c.max_elevation_deg).tca_s


def bench_link(lc: LinkConfig, frames: int = 40, seed: int = 0) -> BenchResult:
    """Samples per second through the full chain of link ``lc``: ``frames`` full frames back
    to back at the highest pass of its geometry (ACM chooses as in a run)."""
    rng = np.random.default_rng(seed)
    t0 = 0.0 if lc.schedule is not None else _highest_pass_time(lc)
    link = lc.channel(realtime=False)
    mc, _ = link.scheduler._choose(t0)
    size = frame_payload_bytes(mc)
    payloads = [rng.bytes(size) for _ in range(frames)]
    # warm up (compiled kernels, caches) on a separate chain, then measure
    run_pdus(lc.channel(realtime=False), payloads[:3], [t0] * 3)
    res = run_pdus(link, payloads, [t0] * frames)
    samples = res.samples
    msps = samples / res.wall_s / 1e6
    per_core = samples / max(res.cpu_s, 1e-9) / 1e6
    # thread CPU time of each stage in this run, per channel sample [ns/sample]
    per_block = {st.name(): st.cpu_s / max(samples, 1) * 1e9 for st in link.stages}
    s = res.summary
    return BenchResult(
        link=lc.id,
        modcod=mc.name,
        sample_rate_hz=lc.sample_rate_hz,
        symbol_rate_hz=lc.symbol_rate_hz,
        decoder=DECODER,
        frames=s.get("frames", frames),
        samples=samples,
        wall_s=res.wall_s,
        cpu_s=res.cpu_s,
        msps=msps,
        msps_per_core=per_core,
        realtime_ratio=msps * 1e6 / lc.sample_rate_hz,
        realtime_ratio_per_core=per_core * 1e6 / lc.sample_rate_hz,
        delivered=len(res.delivered),
        pdus=frames,
        ldpc_iterations_mean=s.get("ldpc_iterations", 0)
        / max(1, s.get("frames_decoded", 0) + s.get("ldpc_fail", 0)),
        per_block_ns=per_block,
    )


def reference_chain(
    sample_rate_hz: float, symbol_rate_hz: float, rolloff: float, n_samples: int = 4_000_000
) -> dict[str, Any]:
    """A stock GNU Radio C++ chain of similar function, timed the same way (samples / process
    CPU time): QPSK symbols → RRC interpolation (``rational_resampler_ccf``) → fading
    (``channels.fading_model`` at f_s/100, interpolated back up) → thermal noise
    (``analog.fastnoise_source_c``) → matched filter (``fir_filter_ccf``) →
    ``digital.symbol_sync_cc`` → null sink."""
    from fractions import Fraction

    from gnuradio import analog, blocks, channels, digital, filter

    ratio = Fraction(sample_rate_hz / symbol_rate_hz).limit_denominator(64)
    up, down = ratio.numerator, ratio.denominator
    n_sym = int(n_samples / float(ratio)) + 64
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, (2, 8192))
    sym = ((2 * bits[0] - 1) + 1j * (2 * bits[1] - 1)) / math.sqrt(2)
    taps = filter.firdes.root_raised_cosine(
        up, up * symbol_rate_hz, symbol_rate_hz, rolloff, 16 * up + 1
    )
    mf = filter.firdes.root_raised_cosine(
        1.0, sample_rate_hz, symbol_rate_hz, rolloff, int(16 * float(ratio)) | 1
    )
    tb = gr.top_block("satfl_reference")
    src = blocks.vector_source_c(sym.astype(np.complex64).tolist(), True)
    head = blocks.head(gr.sizeof_gr_complex, n_sym)
    shape = filter.rational_resampler_ccf(up, down, taps)
    fsrc = analog.sig_source_c(sample_rate_hz / 100, analog.GR_CONST_WAVE, 0, 1.0)
    fade = channels.fading_model(8, 5.0 / (sample_rate_hz / 100), True, 10.0, 1)
    interp = filter.rational_resampler_ccf(100, 1)
    mult = blocks.multiply_cc()
    noise = analog.fastnoise_source_c(analog.GR_GAUSSIAN, 0.3, 1, 8192)
    add = blocks.add_cc()
    mfb = filter.fir_filter_ccf(1, mf)
    sync = digital.symbol_sync_cc(
        digital.TED_GARDNER,
        float(ratio) if float(ratio) >= 2 else 2.0,
        0.01,
        1.0,
        1.0,
        0.1,
        1,
        digital.constellation_qpsk().base(),
        digital.IR_MMSE_8TAP,
        128,
        [],
    )
    sink = blocks.null_sink(gr.sizeof_gr_complex)
    tb.connect(src, head, shape, (mult, 0))
    tb.connect(fsrc, fade, interp, (mult, 1))
    tb.connect(mult, (add, 0))
    tb.connect(noise, (add, 1))
    tb.connect(add, mfb, sync, sink)
    w0, c0 = time.perf_counter(), time.process_time()
    tb.run()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    samples = int(n_sym * float(ratio))
    return {
        "chain": "vector_source → rational_resampler_ccf (RRC) → × fading_model@f_s/100 "
        "(interpolated) → + fastnoise_source_c → fir_filter_ccf (MF) → symbol_sync_cc",
        "samples": samples,
        "wall_s": wall,
        "cpu_s": cpu,
        "msps": samples / wall / 1e6,
        "msps_per_core": samples / max(cpu, 1e-9) / 1e6,
    }


def threshold_db(points: list[dict[str, Any]], target: float = 1e-2) -> float | None:
    """Es/N0 [dB] where the measured FER crosses ``target``: linear interpolation of
    log10(FER) between the last point above and the first point at or below it (None if
    the curve does not cross)."""
    pts = sorted(points, key=lambda p: p["esn0_db"])
    for a, b in itertools.pairwise(pts):
        fa, fb = a["fer"], b["fer"]
        if fa > target >= fb:
            la = math.log10(fa)
            lb = math.log10(max(fb, 0.5 / b["frames"]))
            if la == lb:
                return float(b["esn0_db"])
            # with no error at b, log10(FER) there is floored at half a frame: the crossing
            # is then an upper bound, and never beyond b
            x = min(1.0, (math.log10(target) - la) / (lb - la))
            return float(a["esn0_db"] + x * (b["esn0_db"] - a["esn0_db"]))
    return None


def _fer_point(
    mc: modcod.Modcod,
    esn0_db: float,
    frames: int,
    seed: int,
    sample_rate_hz: float,
    symbol_rate_hz: float,
    rolloff: float,
    doppler_hz: float,
) -> dict[str, Any]:
    from flowgraphs.modem import ModemConfig

    rng = np.random.default_rng([seed, int(round(esn0_db * 1000)) & 0xFFFFFF, mc.id])
    geo = StaticLink(snr_db=float(esn0_db), doppler_hz=doppler_hz)
    cfg = ModemConfig(sample_rate_hz, symbol_rate_hz, rolloff, 1440, 0.0)
    link = LinkChannel(
        "per",
        geo,
        None,
        cfg,
        noise_bandwidth_hz=symbol_rate_hz,
        policy=AcmPolicy(mc.name),
        seed=seed + mc.id,
        doppler_precomp="none",
    )
    size = frame_payload_bytes(mc)
    payloads = [rng.bytes(size) for _ in range(frames)]
    res = run_pdus(link, payloads, [0.0] * frames)
    ok = sum(1 for m, p in res.delivered if p == payloads[int(m["seq"])])
    wrong = sum(1 for m, p in res.delivered if p != payloads[int(m["seq"])])
    s = res.summary
    return {
        "esn0_db": float(esn0_db),
        "frames": frames,
        "delivered": ok,
        "wrong_payloads": wrong,
        "fer": 1.0 - ok / frames,
        "lost": {k: v for k, v in s.items() if k.startswith("lost_") or k.endswith("_fail")},
        "ldpc_iterations_mean": s.get("ldpc_iterations", 0) / max(1, frames),
    }


def per_modcod(
    name: str,
    esn0_db: list[float] | None = None,
    frames: int = 100,
    seed: int = 1,
    sample_rate_hz: float = 5.0e6,
    symbol_rate_hz: float = 5.0e6 / 1.05,
    rolloff: float = 0.05,
    doppler_hz: float = 300.0,
) -> dict[str, Any]:
    """FER vs Es/N0 of one MODCOD through the real flowgraph (AWGN, a static link with a
    constant carrier offset ``doppler_hz`` the receiver must remove), full frames, beside its
    reference (EN 302 307-1 Table 13).

    Without ``esn0_db`` the points are searched: from 1 dB below the reference upwards in
    0.2 dB steps until the FER is 0, refined by 0.1 dB around the 1e-2 crossing.
    """
    mc = modcod.by_name(name)
    args = (frames, seed, sample_rate_hz, symbol_rate_hz, rolloff, doppler_hz)
    if esn0_db is not None:
        points = [_fer_point(mc, e, *args) for e in esn0_db]
    else:
        points = []
        e = round(mc.reference_esn0_db - 1.0, 1)
        for _ in range(16):
            p = _fer_point(mc, e, *args)
            points.append(p)
            if p["fer"] == 0.0:
                break
            e = round(e + 0.2, 1)
        # refine the crossing with a point in between
        th = threshold_db(points)
        if th is not None:
            mid = round(th, 1)
            if all(abs(p["esn0_db"] - mid) > 0.05 for p in points):
                points.append(_fer_point(mc, mid, *args))
    points.sort(key=lambda p: p["esn0_db"])
    th = threshold_db(points)
    lay_syms = _frame_symbols(mc, sample_rate_hz, symbol_rate_hz, rolloff)
    return {
        "name": mc.name,
        "esn0_db_at_fer_1e-2": th,
        "reference_esn0_db": mc.reference_esn0_db,
        "reference": modcod.REFERENCE_SOURCE,
        "spectral_efficiency": mc.k / lay_syms,
        "bits_per_data_symbol": mc.bits_per_data_symbol,
        "frame_symbols": lay_syms,
        "points": points,
        "frames_per_point": frames,
        "doppler_hz": doppler_hz,
        "sample_rate_hz": sample_rate_hz,
        "symbol_rate_hz": symbol_rate_hz,
        "rolloff": rolloff,
        "cpu_count": os.cpu_count(),
    }


def _frame_symbols(mc: modcod.Modcod, fs: float, rs: float, alpha: float) -> int:
    from flowgraphs.modem import ModemConfig

    return ModemConfig(fs, rs, alpha, 1440, 0.0).layout(mc, mc.capacity_bytes).n_symbols

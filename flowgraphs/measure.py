"""Measurements through the emulator: throughput (``bench``) and FER vs SNR (``per``).

Both push bursts through a real :class:`~flowgraphs.link_channel.LinkChannel` in a running
top block (all stages, their message queues and threads), injected and collected in
process so that only the emulator is measured.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from channel import RicianFading, contact_windows, theory
from flowgraphs.burst_stage import Dropped
from flowgraphs.config import LinkConfig
from flowgraphs.frame import append_crc32
from flowgraphs.link_channel import LinkChannel
from flowgraphs.msg_io import PduCollector, PduInjector
from flowgraphs.pmt_numpy import c32_to_pmt, u8_to_pmt
from flowgraphs.static_link import StaticLink

__all__ = ["BenchResult", "RunResult", "bench_link", "per_curve", "run_bursts"]


@dataclass
class RunResult:
    """Outcome of :func:`run_bursts`."""

    delivered: list[tuple[dict[str, Any], bytes]]
    status: list[dict[str, Any]]
    wall_s: float
    cpu_s: float
    samples: int
    summary: dict[str, int]


def run_bursts(
    link: LinkChannel,
    payloads: list[bytes],
    tx_times: list[float],
    timeout_s: float = 120.0,
    extra_meta: dict[str, Any] | None = None,
) -> RunResult:
    """Send ``payloads`` at emulated ``tx_times`` through ``link``; wait until every burst
    has left the receiver (delivered or dropped); return what came out."""
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
            inj.send({"tx_time": float(t), "seq": i, "src": "bench", **(extra_meta or {})}, p)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = link.crc_check.counters["in"] + sum(
                v for k, v in link.demodulator.counters.items() if k.startswith("lost_")
            )
            dropped = sum(
                s.counters.get(k, 0)
                for s in link.stages
                for k in ("bad_input", "internal_error", "bad_length")
            )
            if done + dropped >= n and link.crc_check.counters["in"] == (
                link.crc_check.counters["out"] + link.crc_check.counters.get("crc_fail", 0)
            ):
                break
            time.sleep(0.002)
        else:
            raise TimeoutError(f"only part of {n} bursts left the receiver in {timeout_s} s")
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        out.wait_for(link.crc_check.counters["out"], 5.0)
    finally:
        tb.stop()
        tb.wait()
    return RunResult(
        out.items, [m for m, _ in st.items], wall, cpu, link.awgn.samples, link.summary()
    )


@dataclass
class BenchResult:
    """Throughput of one link (see :func:`bench_link`)."""

    link: str
    modulation: str
    sample_rate_hz: float
    bursts: int
    samples: int
    wall_s: float
    cpu_s: float
    msps: float
    msps_per_core: float
    realtime_ratio: float
    realtime_ratio_5mhz: float
    delivered: int
    per_block_ns: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _per_block_ns(link: LinkChannel, payload: bytes, tx_time: float, reps: int) -> dict[str, float]:
    """Wall time per channel sample of each stage, measured alone (one thread, same bursts),
    including its PMT conversions [ns/sample]."""
    meta: dict[str, Any] = {"tx_time": tx_time, "seq": 0}
    data: Any = append_crc32(payload)
    inputs = []
    for s in link.stages:
        inputs.append((s, dict(meta), data))
        try:
            r = s.process(dict(meta), data)
        except Dropped:  # a lost frame still costs the stages it reached
            break
        if r is None:
            break
        meta, data = r
    n_ch = link.awgn.samples or 1
    times: dict[str, float] = {}
    n_chan = None
    for s, m, d in inputs:
        vec = c32_to_pmt(d) if s._in_kind == "c32" else u8_to_pmt(bytes(d))
        msg = pmt.cons(pmt.to_pmt(m), vec)
        if s._in_kind == "c32" and n_chan is None:
            n_chan = len(d)
        t0 = time.perf_counter()
        for _ in range(reps):
            s._handle(msg)
        times[s.name()] = (time.perf_counter() - t0) / reps
    n_ch = n_chan or n_ch
    return {k: v / n_ch * 1e9 for k, v in times.items()}


def _visible_time(lc: LinkConfig) -> float:
    w = contact_windows(lc.orbit, lc.site, 0.0, 2 * 86400.0, lc.params.min_elevation_deg)
    if not w:
        raise ValueError(f"link {lc.id}: no contact window in two days")
    best = max(w, key=lambda c: c.max_elevation_deg)
    return best.tca_s


def bench_link(
    lc: LinkConfig, bursts: int = 40, payload_bytes: int = 4000, seed: int = 0
) -> BenchResult:
    """Samples per second through the full chain of link ``lc`` (bursts at the highest pass)."""
    rng = np.random.default_rng(seed)
    t0 = _visible_time(lc)
    payloads = [rng.bytes(payload_bytes) for _ in range(bursts)]

    def make() -> LinkChannel:
        return LinkChannel(
            lc.id,
            lc.geometry(),
            lc.fading(),
            lc.sample_rate_hz,
            lc.symbol_rate_hz,
            lc.modulation,
            seed=lc.seed,
            doppler_precomp=lc.doppler_precomp,
            residual_hz=lc.residual_hz,
            realtime=False,
            guard_s=lc.guard_s,
            rolloff=lc.rolloff,
        )

    link = make()
    res = run_bursts(link, payloads, [t0] * bursts)  # back to back on the link clock
    msps = res.samples / res.wall_s / 1e6
    per_core = res.samples / max(res.cpu_s, 1e-9) / 1e6
    per_block = _per_block_ns(make(), payloads[0], t0, reps=5)
    return BenchResult(
        link=lc.id,
        modulation=lc.modulation,
        sample_rate_hz=lc.sample_rate_hz,
        bursts=bursts,
        samples=res.samples,
        wall_s=res.wall_s,
        cpu_s=res.cpu_s,
        msps=msps,
        msps_per_core=per_core,
        realtime_ratio=msps * 1e6 / lc.sample_rate_hz,
        realtime_ratio_5mhz=msps * 1e6 / 5e6,
        delivered=len(res.delivered),
        per_block_ns=per_block,
    )


def per_curve(
    modulation: str,
    snr_db: list[float],
    frames: int = 200,
    payload_bytes: int = 256,
    rician_k_db: float | None = None,
    fading_doppler_hz: float = 10.0,
    doppler_hz: float = 3000.0,
    sample_rate_hz: float = 1.0e6,
    symbol_rate_hz: float = 250.0e3,
    seed: int = 1,
) -> dict[str, Any]:
    """FER vs Es/N0 through the emulator beside theory (:mod:`channel.theory`).

    The link is static (:class:`~flowgraphs.static_link.StaticLink`: SNR stated directly as
    Es/N0, a constant Doppler offset ``doppler_hz`` the receiver must remove); with
    ``rician_k_db`` the fading stage applies :class:`channel.RicianFading` with f_D =
    ``fading_doppler_hz`` and frames 1 s apart in emulated time, so each frame sees an
    independent, nearly constant gain (block fading, as the theory assumes).
    """
    rng = np.random.default_rng(seed)
    n_bits = 8 * (payload_bytes + 4)
    rows = []
    for i, snr in enumerate(snr_db):
        geo = StaticLink(snr_db=float(snr), doppler_hz=doppler_hz)
        fading = (
            RicianFading(rician_k_db, fading_doppler_hz, seed=seed + 1000 * i)
            if rician_k_db is not None
            else None
        )
        link = LinkChannel(
            "per",
            geo,
            fading,
            sample_rate_hz,
            symbol_rate_hz,
            modulation,
            noise_bandwidth_hz=symbol_rate_hz,
            seed=seed + i,
        )
        payloads = [rng.bytes(payload_bytes) for _ in range(frames)]
        spacing = 1.0 if rician_k_db is not None else 0.0
        res = run_bursts(link, payloads, [k * spacing for k in range(frames)])
        ok = sum(1 for m, p in res.delivered if p == payloads[int(m["seq"])])
        fer = 1.0 - ok / frames
        ber_t = float(theory.ber_awgn(modulation, snr))
        fer_t = (
            float(theory.fer_rician(modulation, snr, n_bits, rician_k_db))
            if rician_k_db is not None
            else float(theory.fer_awgn(modulation, snr, n_bits))
        )
        rows.append(
            {
                "esn0_db": float(snr),
                "frames": frames,
                "delivered": ok,
                "fer": fer,
                "fer_theory": fer_t,
                "ber_theory_awgn": ber_t,
                "lost": {
                    k: v for k, v in res.summary.items() if k.startswith("lost_") or k == "crc_fail"
                },
            }
        )
    return {
        "modulation": modulation,
        "payload_bytes": payload_bytes,
        "frame_bits": n_bits,
        "rician_k_db": rician_k_db,
        "fading_doppler_hz": fading_doppler_hz if rician_k_db is not None else None,
        "doppler_hz": doppler_hz,
        "sample_rate_hz": sample_rate_hz,
        "symbol_rate_hz": symbol_rate_hz,
        "formula": "FER = 1 - (1 - BER(Es/N0))^Nb, Nb = 8*(payload+4); Rician: "
        "FER averaged over |h|^2 (block fading)",
        "points": rows,
        "cpu_count": os.cpu_count(),
    }

"""DVB-S2 LDPC codec throughput and FER: prints markdown tables for docs/performance.md.

``python -m benchmarks.bench_fec [--quick] [--json]``

Measures on this machine, in one run: the encoder (Mbit/s of information bits per core), the
layered min-sum decoder at Es/N0 points around the published QPSK thresholds (FER, mean
iterations, Mbit/s per core = information bits / process CPU seconds spent in ``decode``),
and, for comparison at a fixed Es/N0, GNU Radio's stock ``gr-fec`` ``ldpc_decoder`` and the
PyPI package ``ldpc`` (Roffe, ``BpDecoder``, min-sum, serial schedule) where they can run.
Channel: Gray QPSK over AWGN at :math:`E_s = 1`, LLR :math:`2\\sqrt{2}\\,y/N_0` per axis.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowgraphs.fec import LdpcCode

if TYPE_CHECKING:
    from collections.abc import Callable

    from scipy import sparse

REPO = Path(__file__).resolve().parents[1]
# EN 302 307-1 Table 13: ideal Es/N0 [dB] for QEF, QPSK, normal frames (LDPC + BCH)
THRESHOLD_DB = {"1/4": -2.35, "1/2": 1.00, "3/4": 4.03, "9/10": 6.42}
GR_FEC_ALIST = Path("/usr/share/gnuradio/fec/ldpc/PNB2_512_23C1.alist")  # n 4440, k 2960
GR_FEC_MEMORY_LIMIT = 4 << 30  # address-space cap for the gr-fec attempt on n = 64800 [B]
ROFFE_SCALE = 0.875  # best of 0.75 / 0.875 / 1.0 for ldpc.BpDecoder on DVB-S2 1/2 (4 frames)


def qpsk_llr(bits: np.ndarray, esn0_db: float, rng: np.random.Generator) -> np.ndarray:
    """Gray QPSK (one bit per axis, :math:`\\pm 1/\\sqrt{2}`) through AWGN
    (:math:`N_0/2` per axis) → float32 LLRs :math:`2\\sqrt{2}\\,y/N_0`."""
    n0 = 10.0 ** (-esn0_db / 10.0)
    y = (1.0 - 2.0 * bits.astype(np.float64)) / math.sqrt(2.0)
    y += rng.standard_normal(bits.shape) * math.sqrt(n0 / 2.0)
    return (2.0 * math.sqrt(2.0) * y / n0).astype(np.float32)


def write_alist(h: sparse.spmatrix, path: Path) -> None:
    """MacKay alist of a sparse parity-check matrix (one line per column, then per row)."""
    h, hc = h.tocsr(), h.tocsc()
    m, n = h.shape
    cw, rw = np.diff(hc.indptr), np.diff(h.indptr)
    lines = [f"{n} {m}", f"{cw.max()} {rw.max()}", " ".join(map(str, cw)), " ".join(map(str, rw))]
    lines += [" ".join(map(str, hc.indices[hc.indptr[i] : hc.indptr[i + 1]] + 1)) for i in range(n)]
    lines += [" ".join(map(str, h.indices[h.indptr[i] : h.indptr[i + 1]] + 1)) for i in range(m)]
    path.write_text("\n".join(lines) + "\n")


def read_alist(path: Path) -> sparse.csr_matrix:
    """Sparse H (scipy CSR, uint8) from a MacKay alist."""
    from scipy import sparse

    rows = path.read_text().splitlines()
    n, m = map(int, rows[0].split())
    cols = [np.array(r.split(), dtype=np.int64) for r in rows[4 : 4 + n]]
    ri = np.concatenate([c[c > 0] - 1 for c in cols])
    ci = np.concatenate([np.full(int((c > 0).sum()), i) for i, c in enumerate(cols)])
    return sparse.csr_matrix((np.ones(ri.size, np.uint8), (ri, ci)), shape=(m, n))


# ------------------------------------------------------------------ our codec


def bench_encoder(rate: str, frames: int) -> dict[str, Any]:
    """Mbit/s per core of :meth:`LdpcCode.encode`, a batch of ``frames`` and one at a time."""
    code = LdpcCode.dvbs2(rate)
    u = np.random.default_rng(1).integers(0, 2, (frames, code.k), dtype=np.uint8)
    code.encode(u[:1])
    t0 = time.process_time()
    code.encode(u)
    batch = time.process_time() - t0
    t0 = time.process_time()
    for f in range(frames):
        code.encode(u[f])
    single = time.process_time() - t0
    bits = frames * code.k
    return {
        "rate": rate,
        "n": code.n,
        "k": code.k,
        "frames": frames,
        "mbps_batch": bits / batch / 1e6,
        "mbps_single": bits / single / 1e6,
    }


def bench_decoder(rate: str, esn0_db: float, frames: int, seed: int = 0) -> dict[str, Any]:
    """FER, mean iterations and Mbit/s per core of :meth:`LdpcCode.decode` (max 50 it)."""
    code = LdpcCode.dvbs2(rate)
    rng = np.random.default_rng(seed)
    code.decode(np.ones(code.n, np.float32))  # compiled / loaded outside the timing
    errors, iters, cpu = 0, 0, 0.0
    for _ in range(frames):
        u = rng.integers(0, 2, code.k, dtype=np.uint8)
        llr = qpsk_llr(code.encode(u), esn0_db, rng)
        t0 = time.process_time()
        res = code.decode(llr)
        cpu += time.process_time() - t0
        errors += int(not res.codeword_ok or not np.array_equal(res.info_bits, u))
        iters += res.iterations
    return {
        "rate": rate,
        "esn0_db": esn0_db,
        "frames": frames,
        "frame_errors": errors,
        "fer": errors / frames,
        "mean_iterations": iters / frames,
        "mbps_per_core": frames * code.k / cpu / 1e6,
        "ms_per_iteration": 1e3 * cpu / iters,
    }


# ------------------------------------------------------------------ candidates


def bench_roffe(
    h: sparse.spmatrix,
    k: int,
    esn0_db: float,
    frames: int,
    encode: Callable[[np.ndarray], np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """PyPI ``ldpc`` BpDecoder (min-sum, serial) on H; all-zero words unless ``encode``."""
    try:
        from ldpc import BpDecoder
    except ImportError as e:
        return {"decoder": "ldpc.BpDecoder", "error": f"not installed ({e})"}
    n = h.shape[1]
    dec = BpDecoder(
        h.astype(np.uint8),
        error_rate=0.05,
        max_iter=50,
        bp_method="minimum_sum",
        schedule="serial",
        ms_scaling_factor=ROFFE_SCALE,
        input_vector_type="received_vector",
    )
    rng = np.random.default_rng(seed)
    errors, iters, cpu = 0, 0, 0.0
    for _ in range(frames):
        cw = encode(rng.integers(0, 2, k, dtype=np.uint8)) if encode else np.zeros(n, np.uint8)
        llr = qpsk_llr(cw, esn0_db, rng).astype(np.float64)
        t0 = time.process_time()
        dec.update_channel_probs(1.0 / (1.0 + np.exp(np.minimum(np.abs(llr), 700.0))))
        out = dec.decode((llr < 0).astype(np.uint8))
        cpu += time.process_time() - t0
        errors += int(not np.array_equal(out, cw))
        iters += dec.iter
    return {
        "decoder": f"ldpc {_version('ldpc')} BpDecoder (min-sum x{ROFFE_SCALE}, serial)",
        "esn0_db": esn0_db,
        "frames": frames,
        "frame_errors": errors,
        "fer": errors / frames,
        "mean_iterations": iters / frames,
        "mbps_per_core": frames * k / cpu / 1e6,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def grfec_worker(alist: str, esn0_db: float, frames: int) -> dict[str, Any]:
    """Run in a child process (gr-fec prints to stdout): all-zero words through
    ``fec.decoder(fec.ldpc_decoder(alist))``; the decoder takes :math:`-\\lambda`."""
    from gnuradio import blocks, fec, gr

    t0 = time.process_time()
    dec = fec.ldpc_decoder.make(alist, 0.5, 50)
    setup = time.process_time() - t0
    n, k = dec.get_input_size(), dec.get_output_size()
    rng = np.random.default_rng(0)
    llr = qpsk_llr(np.zeros((frames, n), np.uint8), esn0_db, rng)
    tb = gr.top_block()
    src = blocks.vector_source_f((-llr).ravel().tolist(), False)
    snk = blocks.vector_sink_b()
    tb.connect(src, fec.decoder(dec, gr.sizeof_float, gr.sizeof_char), snk)
    t0 = time.process_time()
    tb.run()
    cpu = time.process_time() - t0
    out = np.array(snk.data(), dtype=np.uint8).reshape(frames, k)
    errors = int(np.count_nonzero(out.any(axis=1)))
    return {
        "decoder": f"gr-fec ldpc_decoder (GNU Radio {gr.version()}, sum-product)",
        "n": n,
        "k": k,
        "esn0_db": esn0_db,
        "frames": frames,
        "frame_errors": errors,
        "fer": errors / frames,
        "mbps_per_core": frames * k / cpu / 1e6,
        "setup_cpu_s": setup,
    }


def bench_grfec(
    alist: Path, esn0_db: float, frames: int, limit_bytes: int | None = None
) -> dict[str, Any]:
    """:func:`grfec_worker` in a child process, optionally under an address-space cap."""

    def cap() -> None:
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    cmd = [sys.executable, "-m", "benchmarks.bench_fec", "--grfec-worker", str(alist)]
    cmd += [str(esn0_db), str(frames)]
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=600, preexec_fn=cap, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return {"decoder": "gr-fec ldpc_decoder", "error": "no result within 600 s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (p.stderr.strip().splitlines() or ["?"])[-1]
    return {"decoder": "gr-fec ldpc_decoder", "error": f"exit {p.returncode}: {tail}"}


# ------------------------------------------------------------------ the run


def run(quick: bool = False) -> dict[str, Any]:
    """Every measurement of this module; ``quick`` uses few frames (smoke run)."""
    load_before = os.getloadavg()
    frames = 8 if quick else 100
    res: dict[str, Any] = {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numba": _version("numba"),
        }
    }
    res["encoder"] = [bench_encoder(r, 20 if quick else 100) for r in (*THRESHOLD_DB, "2/9")]
    offsets = (0.0, 0.5, 1.0) if quick else (0.0, 0.25, 0.5, 1.0, 2.0)
    res["decoder"] = [
        bench_decoder(r, round(thr + d, 2), frames, seed=i)
        for r, thr in THRESHOLD_DB.items()
        for i, d in enumerate(offsets)
    ]
    res["decoder"] += [bench_decoder("2/9", e, frames) for e in (-2.85, -2.35)]
    # candidates, QPSK 1/2 n = 64800
    code = LdpcCode.dvbs2("1/2")
    h = code.parity_check_matrix()
    cand_frames = 3 if quick else 10
    cands = []
    for esn0 in (1.0, 2.0):
        ours = bench_decoder("1/2", esn0, frames, seed=7)
        cands.append({"decoder": "flowgraphs.fec (layered offset min-sum, numba)", **ours})
        cands.append(bench_roffe(h, code.k, esn0, cand_frames, encode=code.encode, seed=7))
    with tempfile.TemporaryDirectory(prefix="bench-fec-") as tmp:
        alist = Path(tmp) / "dvbs2_1_2.alist"
        write_alist(h, alist)
        attempt = bench_grfec(alist, 2.0, 1, limit_bytes=GR_FEC_MEMORY_LIMIT)
    m, n = h.shape
    attempt["note"] = (
        f"address space capped at {GR_FEC_MEMORY_LIMIT >> 30} GiB; gr-fec keeps H as a dense "
        f"M x N byte matrix and its BP messages as two dense M x N double matrices: "
        f"about {17 * m * n / 2**30:.0f} GiB for this code"
    )
    cands.append({"esn0_db": 2.0, **attempt})
    res["candidates_dvbs2_1_2"] = cands
    # gr-fec's own shipped code, where it does run
    small = []
    if GR_FEC_ALIST.exists():
        small.append(bench_grfec(GR_FEC_ALIST, 5.0, 2 if quick else 20))
        hs = read_alist(GR_FEC_ALIST)
        small.append(bench_roffe(hs, hs.shape[1] - hs.shape[0], 5.0, 10 if quick else 50))
    res["candidates_pnb2_4440"] = small
    res["machine"]["loadavg_before"] = load_before
    res["machine"]["loadavg_after"] = os.getloadavg()
    return res


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, int | float) else "–"


def format_markdown(res: dict[str, Any]) -> str:
    """The tables of :func:`run` as markdown."""
    mach = res["machine"]
    out = [
        f"Machine: {mach['cores']} cores, {mach['cpu']}, Python {mach['python']}, numba "
        f"{mach['numba']}; load average before {mach['loadavg_before'][0]:.2f}, after "
        f"{mach['loadavg_after'][0]:.2f} (1 min).\n",
        "| encoder rate | n | k | Mbit/s per core (batch) | Mbit/s per core (one by one) |",
        "|---|---|---|---|---|",
    ]
    for e in res["encoder"]:
        out.append(
            f"| {e['rate']} | {e['n']} | {e['k']} | {e['mbps_batch']:.0f} | "
            f"{e['mbps_single']:.0f} |"
        )
    out += [
        "",
        "| decoder rate | Es/N0 [dB] | frames | FER | mean iterations | Mbit/s per core "
        "| ms / iteration |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in res["decoder"]:
        out.append(
            f"| {d['rate']} | {d['esn0_db']:+.2f} | {d['frames']} | {d['fer']:.3f} | "
            f"{d['mean_iterations']:.1f} | {d['mbps_per_core']:.1f} | "
            f"{d['ms_per_iteration']:.3f} |"
        )
    for title, key in (
        ("QPSK 1/2, n = 64800", "candidates_dvbs2_1_2"),
        ("gr-fec's PNB2_512_23C1 (n 4440, k 2960)", "candidates_pnb2_4440"),
    ):
        out += [
            "",
            f"| candidate ({title}) | Es/N0 [dB] | frames | FER | Mbit/s per core | note |",
            "|---|---|---|---|---|---|",
        ]
        for c in res[key]:
            note = c.get("error", "") + ("; " + c["note"] if "note" in c else "")
            out.append(
                f"| {c['decoder']} | {_fmt(c.get('esn0_db'), '+.1f')} | "
                f"{_fmt(c.get('frames'), 'd')} | {_fmt(c.get('fer'), '.3f')} | "
                f"{_fmt(c.get('mbps_per_core'), '.3f')} | {note} |"
            )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few frames (smoke run)")
    ap.add_argument("--json", action="store_true", help="JSON instead of markdown")
    ap.add_argument("--grfec-worker", nargs=3, metavar=("ALIST", "ESN0_DB", "FRAMES"))
    args = ap.parse_args(argv)
    if args.grfec_worker:
        alist, esn0, frames = args.grfec_worker
        sys.stdout.write(json.dumps(grfec_worker(alist, float(esn0), int(frames))) + "\n")
        return 0
    res = run(quick=args.quick)
    sys.stdout.write(json.dumps(res, indent=2) + "\n" if args.json else format_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Channel emulator throughput: prints a markdown table for docs/performance.md.

``python -m benchmarks.bench_channel [--bursts N] [--json]``

Measures, on this machine, samples per second through the full chain of one link
(modulator → scheduler → fading → Doppler → gate → AWGN → receiver → CRC) for a 1 Msps
sub-channel and a 5 MHz one, the time per block, and, for comparison, two stock GNU Radio
chains on the same samples (``channels.fading_model`` alone and a plain copy).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def _stock_msps(n: int = 2_000_000) -> dict[str, float]:
    """Msps of stock blocks: vector source → X → null sink, wall clock."""
    from gnuradio import blocks, channels, gr

    x = (np.random.default_rng(0).standard_normal(n) + 0j).astype(np.complex64).tolist()
    out = {}
    for name, make in (
        (
            "channels.fading_model (8 sinusoids, K=10)",
            lambda: channels.fading_model(8, 100.0 / 1e6, True, 10.0, 1),
        ),
        ("blocks.copy", lambda: blocks.copy(gr.sizeof_gr_complex)),
    ):
        tb = gr.top_block()
        src, blk, snk = (
            blocks.vector_source_c(x, False),
            make(),
            blocks.null_sink(gr.sizeof_gr_complex),
        )
        tb.connect(src, blk, snk)
        t0 = time.perf_counter()
        tb.run()
        out[name] = n / (time.perf_counter() - t0) / 1e6
    return out


def run(bursts: int = 40) -> dict[str, Any]:
    """Bench a 1 Msps QPSK link, a 1 Msps 16QAM link and a 5 MHz QPSK sub-channel."""
    from flowgraphs.config import parse_config
    from flowgraphs.measure import bench_link

    cfg = parse_config(
        {
            "link": [
                {"id": "qpsk-1M", "seed": 1},
                {"id": "16qam-1M", "seed": 1, "modulation": "16qam"},
                {"id": "qpsk-5M", "seed": 1, "sample_rate_hz": 5e6, "symbol_rate_hz": 1.25e6},
            ]
        }
    )
    links = [bench_link(lc, bursts).to_dict() for lc in cfg.links]
    return {"links": links, "stock_msps": _stock_msps()}


def main(argv: list[str] | None = None) -> int:
    from testbed.commands.channel import format_bench_markdown

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = run(args.bursts)
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
        return 0
    sys.stdout.write(format_bench_markdown(res["links"]))
    sys.stdout.write("\n| stock reference (same machine) | Msps |\n|---|---|\n")
    for k, v in res["stock_msps"].items():
        sys.stdout.write(f"| {k} | {v:.1f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

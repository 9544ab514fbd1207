"""Channel emulator throughput at the 5 MHz configuration: a markdown table for
docs/performance.md.

``python -m benchmarks.bench_channel [--frames N] [--json]``

For each MODCOD case (QPSK 1/2 and 8PSK 3/4 fixed, and ACM as a run chooses at the best pass),
full frames back to back through the full chain of one link in a running top block
(scheduler → modulator → fading → Doppler → gate → AWGN → receiver → LDPC decoder → deframer
→ CRC), and in the same run a stock GNU Radio C++ chain of similar function
(:func:`flowgraphs.measure.reference_chain`). Msps = channel samples / wall time; per core =
samples / process CPU time; × real time = Msps / f_s. Per-block figures are each stage's
thread CPU time per channel sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

CASES = ("qpsk-1/2", "8psk-3/4", "acm")


def run(frames: int = 60) -> dict[str, Any]:
    """Bench every case and the reference chain once; returns the results."""
    from flowgraphs.config import parse_config
    from flowgraphs.measure import bench_link, reference_chain

    out: dict[str, Any] = {"links": []}
    for case in CASES:
        # the standalone link of `testbed channel bench` (seed 1), 5 MHz, at its best pass
        lc = parse_config({"link": [{"id": "c1", "seed": 1, "modcod": case}]}, "<b>").links[0]
        out["links"].append(bench_link(lc, frames).to_dict())
    out["reference"] = reference_chain(lc.sample_rate_hz, lc.symbol_rate_hz, lc.rolloff)
    return out


def table(res: dict[str, Any]) -> str:
    ref = res["reference"]
    rows = [
        "| MODCOD | delivered | Msps (wall) | Msps per core | × real time (wall) "
        "| × real time per core | vs reference per core |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["links"]:
        rows.append(
            f"| {r['modcod']} | {r['delivered']}/{r['pdus']} | {r['msps']:.2f} "
            f"| {r['msps_per_core']:.2f} | {r['realtime_ratio']:.2f} "
            f"| {r['realtime_ratio_per_core']:.2f} "
            f"| {r['msps_per_core'] / ref['msps_per_core']:.2f} |"
        )
    fs_msps = res["links"][0]["sample_rate_hz"] / 1e6  # the reference runs at the links' f_s
    rows.append(
        f"| reference: {ref['chain']} | – | {ref['msps']:.2f} | {ref['msps_per_core']:.2f} "
        f"| {ref['msps'] / fs_msps:.2f} | {ref['msps_per_core'] / fs_msps:.2f} | 1 |"
    )
    blocks = list(res["links"][0]["per_block_ns"])
    rows += [
        "",
        "| block [ns/sample] | " + " | ".join(r["modcod"] for r in res["links"]) + " |",
        "|---|" + "---|" * len(res["links"]),
    ]
    for b in blocks:
        vals = " | ".join(f"{r['per_block_ns'].get(b, 0.0):.1f}" for r in res["links"])
        rows.append(f"| {b} | {vals} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    res = run(a.frames)
    sys.stdout.write(json.dumps(res, indent=2) + "\n" if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: enhanced EMS-FL vs standard EMS-FL vs the synchronous baseline on the embedded task.

Measures, on the ideal-link timeline with the default :class:`~testbed.fl.config.FLConfig`:
cycles to reach the target global accuracy, uplink bytes per upload (safetensors size), and the
device-side training memory (Table I analog: held parameters + gradient + two Adam moments of
the trainable ones, measured from the tensors of the model each device trains). Prints a
markdown table.

Run: ``python -m benchmarks.bench_fl [--seeds 0 1 2] [--cycles 8]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time

__all__ = ["main"]

ALGOS = ("emsfl-enhanced", "emsfl", "baseline")


def _fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the markdown table; returns 0."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_fl")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--target", type=float, default=None)
    ap.add_argument(
        "--cache", default=None, help="model cache (default $TESTBED_CACHE or ~/.cache)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch
    from transformers.utils import logging as hf_logging

    from testbed.fl.config import FLConfig
    from testbed.fl.timeline import run_learning, with_overrides

    hf_logging.disable_progress_bar()
    torch.set_num_threads(2)
    rows = {a: [] for a in ALGOS}
    t_start = time.perf_counter()
    for seed in args.seeds:
        cfg = with_overrides(FLConfig(), seed=seed, target_accuracy=args.target)
        for a in ALGOS:
            t0 = time.perf_counter()
            r = run_learning(a, args.cycles, cfg, cache=args.cache)
            rows[a].append((r, time.perf_counter() - t0))
    total = time.perf_counter() - t_start
    target = rows[ALGOS[0]][0][0].target_accuracy

    def summary(a: str) -> dict:
        runs = rows[a]
        ctt = [r.cycles_to_target for r, _ in runs]
        reached = [c for c in ctt if c is not None]
        per_upload = [
            sum(c.uplink_bytes for c in r.cycles) / max(1, sum(c.uploads for c in r.cycles))
            for r, _ in runs
        ]
        mem_stage1 = [r.cycles[0].device_model_bytes for r, _ in runs]
        mem_max = [max(c.device_model_bytes for c in r.cycles) for r, _ in runs]
        return {
            "ctt": ctt,
            "ctt_mean": statistics.mean(reached) if len(reached) == len(ctt) else None,
            "final": statistics.mean(r.cycles[-1].accuracy_global for r, _ in runs),
            "init": statistics.mean(r.initial_accuracy for r, _ in runs),
            "per_upload": statistics.mean(per_upload),
            "per_cycle": statistics.mean(
                sum(c.uplink_bytes for c in r.cycles) / len(r.cycles) for r, _ in runs
            ),
            "mem1": statistics.mean(mem_stage1),
            "mem_max": statistics.mean(mem_max),
            "wall": statistics.mean(w for _, w in runs),
        }

    s = {a: summary(a) for a in ALGOS}
    base = s["baseline"]
    out = [
        f"Embedded task, ideal link, FLConfig defaults, seeds {args.seeds}, {args.cycles} cycles, "
        f"target global accuracy {target}; torch {torch.__version__}, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}, total {total:.0f} s.",
        "",
        "| algorithm | cycles to target (per seed) | mean | vs baseline | initial → final acc "
        "| uplink B/upload | vs baseline | uplink B/cycle | device train memory B (cycle 1 / max) "
        "| vs baseline (cycle 1) | wall s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in ALGOS:
        x = s[a]
        ratio = (
            x["ctt_mean"] / base["ctt_mean"]
            if x["ctt_mean"] is not None and base["ctt_mean"]
            else None
        )
        out.append(
            f"| {a} | {x['ctt']} | {_fmt(x['ctt_mean'])} | {_fmt(ratio)} | "
            f"{x['init']:.3f} → {x['final']:.3f} | {x['per_upload']:.0f} | "
            f"{x['per_upload'] / base['per_upload']:.3f} | {x['per_cycle']:.0f} | "
            f"{x['mem1']:.0f} / {x['mem_max']:.0f} | {x['mem1'] / base['mem1']:.3f} | "
            f"{x['wall']:.1f} |"
        )
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``testbed learn``: run an algorithm on the paper's timeline with an ideal link.

Heavy imports (torch, transformers) happen inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from testbed.commands.link import png_path
from testbed.errors import UserError
from testbed.fl.config import ALGORITHMS, LOSSES, MAX_THREADS, RELEVANCE_MODES, FLConfig

__all__ = ["register", "run"]

_D = FLConfig()


def register(sub) -> None:
    """Add the ``learn`` subcommand to the argparse subparsers ``sub``."""
    p = sub.add_parser(
        "learn",
        help="run EMS-FL / enhanced EMS-FL / the synchronous baseline with an ideal link",
        description="Run a federated fine-tuning algorithm on the paper's timeline (one cluster "
        "connected per slot, consecutive orbital cycles) with an ideal link.",
    )
    p.add_argument("--algorithm", choices=ALGORITHMS, default="emsfl-enhanced")
    p.add_argument("--cycles", type=int, default=5, help="orbital cycles (default 5)")
    p.add_argument(
        "--clusters", type=int, default=_D.clusters, help=f"clusters K (default {_D.clusters})"
    )
    p.add_argument("--model", metavar="PATH", help="local MoE checkpoint (default: embedded model)")
    p.add_argument(
        "--data",
        metavar="FILE.jsonl",
        help="your own data: MCQA or sentence-pair JSONL with a cluster or domain field "
        "(README, 'Your own data')",
    )
    p.add_argument(
        "--data-kind",
        choices=("auto", "mcqa", "pairs"),
        default="auto",
        help="what --data holds (default: detected)",
    )
    p.add_argument(
        "--major-fraction",
        type=float,
        default=_D.major_fraction,
        help="share of a cluster's data from its own domain, 0..1 "
        f"(default {_D.major_fraction}; 1 = one domain per cluster)",
    )
    p.add_argument(
        "--relevance",
        choices=RELEVANCE_MODES,
        default=_D.relevance,
        help="eq. 29: mean router probability (default) or how often the router selects an "
        "expert (the paper's definition)",
    )
    p.add_argument(
        "--loss",
        choices=LOSSES,
        default=_D.loss,
        help="local training loss: cross-entropy over the options' length-normalised "
        "log-likelihoods (the paper, default) or LM loss on the gold answer",
    )
    p.add_argument(
        "--masked-share",
        type=float,
        default=_D.masked_share,
        help="enhanced EMS-FL: share of the cycles with the masked gate before gate tuning, "
        f"0..1 (default {_D.masked_share})",
    )
    p.add_argument(
        "--tau-relative",
        type=float,
        default=_D.tau_relative,
        help=f"relevance threshold τ of eq. 32 as a multiple of 1/E (default {_D.tau_relative})",
    )
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument(
        "--target",
        type=float,
        default=_D.target_accuracy,
        help=f"target global accuracy for cycles_to_target (default {_D.target_accuracy})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=_D.threads,
        help=f"torch intra-op threads, 1..{MAX_THREADS} (default {_D.threads}); see "
        "docs/learning.md, Determinism",
    )
    p.add_argument(
        "--idle-slots",
        type=int,
        default=0,
        help="slots per cycle with no cluster connected (paper Remark 4; default 0): EMS-FL "
        "clusters keep training, the baseline waits",
    )
    p.add_argument(
        "--slot-s",
        type=float,
        default=120.0,
        help="slot length of the ideal timeline, for emulated_s [s] (default 120)",
    )
    p.add_argument("--json", action="store_true", help="write the result as JSON to stdout")
    p.add_argument(
        "--plot", metavar="FILE.png", type=png_path, help="plot accuracy per cycle to FILE.png"
    )
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> None:
    if args.cycles < 1:
        raise UserError("--cycles must be at least 1")
    if args.clusters < 1:
        raise UserError("--clusters must be at least 1")
    if not 0.0 <= args.target <= 1.0:
        raise UserError("--target must be in [0, 1]")
    if not 1 <= args.threads <= MAX_THREADS:
        raise UserError(f"--threads must be in 1..{MAX_THREADS}, got {args.threads}")
    if not (math.isfinite(args.tau_relative) and args.tau_relative > 0.0):
        raise UserError(f"--tau-relative must be a number > 0, got {args.tau_relative}")
    if args.idle_slots < 0:
        raise UserError(f"--idle-slots must be >= 0, got {args.idle_slots}")
    if not (math.isfinite(args.slot_s) and args.slot_s > 0):
        raise UserError(f"--slot-s must be a number > 0, got {args.slot_s}")
    if not 0.0 <= args.masked_share <= 1.0:
        raise UserError(f"--masked-share must be in [0, 1], got {args.masked_share}")
    if not 0.0 <= args.major_fraction <= 1.0:
        raise UserError(f"--major-fraction must be in [0, 1], got {args.major_fraction}")
    from pathlib import Path

    if args.data is not None:
        if Path(args.data).is_dir():
            raise UserError(f"--data {args.data}: is a directory, not a JSONL file")
        if not Path(args.data).is_file():
            raise UserError(f"--data: no such file: {args.data}")
    if args.model is not None and not args.model.strip():
        raise UserError("--model must not be empty (leave it out for the embedded model)")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UserError("--plot needs a .png file name")


def _plot(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [0] + [c.cycle for c in result.cycles]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(
        xs,
        [result.initial_accuracy] + [c.accuracy_global for c in result.cycles],
        "o-",
        label="global",
    )
    k = len(result.cycles[0].accuracy_local)
    for j in range(k):
        ax.plot(
            xs[1:],
            [c.accuracy_local[j] for c in result.cycles],
            "--",
            alpha=0.6,
            label=f"cluster {j}",
        )
    ax.axhline(result.target_accuracy, color="grey", lw=0.8)
    ax.set_xlabel("orbital cycle")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(result.algorithm)
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Handler of ``testbed learn``; returns the exit status."""
    _validate(args)
    from transformers.utils import logging as hf_logging

    from testbed.fl.timeline import run_learning, with_overrides

    hf_logging.disable_progress_bar()
    config = with_overrides(
        FLConfig(),
        clusters=args.clusters,
        seed=args.seed,
        target_accuracy=args.target,
        threads=args.threads,
        major_fraction=args.major_fraction,
        relevance=args.relevance,
        loss=args.loss,
        masked_share=args.masked_share,
        tau_relative=args.tau_relative,
    )
    from testbed.progress import Display, eta_s, fmt_duration

    total = args.cycles * args.clusters
    with Display(f"testbed learn · {args.algorithm}", quiet=args.quiet) as disp:

        def show(cycle: int, slot: int, k: int, acc: float) -> None:
            done = (cycle - 1) * k + slot
            eta = fmt_duration(eta_s(done, total, disp.elapsed_s))
            disp.update(
                [[args.algorithm, f"{cycle}/{args.cycles}", f"{slot}/{k}", f"{acc:.3f}", eta]],
                ["algorithm", "cycle", "slot", "global accuracy (last cycle)", "ETA"],
                f"[{args.algorithm}] cycle {cycle}/{args.cycles} slot {slot}/{k} · "
                f"accuracy {acc:.3f} · ETA {eta}",
            )

        result = run_learning(
            args.algorithm,
            args.cycles,
            config,
            model_path=args.model,
            data_path=args.data,
            data_kind=args.data_kind,
            on_progress=show,
            idle_slots=args.idle_slots,
            slot_s=args.slot_s,
        )
    if args.plot:
        _plot(result, args.plot)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        lines = [f"{result.algorithm}: initial accuracy {result.initial_accuracy:.3f}"]
        for c in result.cycles:
            lines.append(
                f"cycle {c.cycle}: global {c.accuracy_global:.3f}  local "
                + " ".join(f"{a:.3f}" for a in c.accuracy_local)
                + f"  uplink {c.uplink_bytes} B in {c.uploads} uploads"
                + f" (largest {c.upload_bytes_max} B)  t = {c.emulated_s:.0f} s"
            )
        lines.append(f"cycles to target {result.target_accuracy}: {result.cycles_to_target}")
        sys.stdout.write("\n".join(lines) + "\n")
    return 0

"""``testbed replay`` and ``testbed sweep``: recorded payloads through changed channel settings.

See :mod:`testbed.replay` for what a replay does and what ``replay.json``/``sweep.json`` hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from testbed.commands.link import png_path
from testbed.paths import add_parents_flag, check_output_path

__all__ = ["format_replay", "format_sweep", "loss_text", "register"]


def _f(x: Any, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


def format_replay(res: dict[str, Any], path: Path) -> str:
    """Plain-text tables of a replay: per payload, then the aggregations that changed."""
    lines = [
        f"Replay of {res['run_dir']} with {' '.join(res['overrides']) or 'unchanged settings'}"
    ]
    for alg, a in res["algorithms"].items():
        lines += [
            "",
            f"[{alg}]",
            f"{'payload':<36} {'orig up[s]':>10} {'pass':>4} {'replay up[s]':>12} {'pass':>4}"
            f" {'Δ[s]':>7}  replay status",
        ]
        for r in a["payloads"]:
            o, p = r["original"], r["replay"]
            lines.append(
                f"{r['payload']:<36} {_f(o['upload_time_s']):>10} {_f(o['passes_used'], 'd'):>4}"
                f" {_f(p['upload_time_s']):>12} {_f(p['passes_used'], 'd'):>4}"
                f" {_f(r['delta_upload_time_s'], '+.1f'):>7}  {p['status']}"
            )
        changed = [g for g in a["aggregations"] if g["newly_missed"] or g["newly_made"]]
        if changed:
            lines.append("aggregations that change:")
        for g in changed:
            head = f"  cycle {g['cycle']} {g['cluster']} {g['stage']} (t_agg {g['t_agg_s']:.1f} s):"
            if g["newly_missed"]:
                names = ", ".join(f"{m['payload']} ({m['reason']})" for m in g["newly_missed"])
                lines.append(f"{head} would MISS {names}")
            if g["newly_made"]:
                names = ", ".join(m["payload"] for m in g["newly_made"])
                lines.append(f"{head} would now INCLUDE {names}")
        s = a["summary"]
        lines.append(
            f"summary: accepted {s['original_accepted']}→{s['replay_accepted']} of "
            f"{s['payloads']}; mean upload {_f(s['original_upload_time_mean_s'])}→"
            f"{_f(s['replay_upload_time_mean_s'])} s, max {_f(s['original_upload_time_max_s'])}"
            f"→{_f(s['replay_upload_time_max_s'])} s; aggregations missing a payload "
            f"{s['original_aggs_incomplete']}→{s['replay_aggs_incomplete']} of "
            f"{s['aggregations']} ({s['newly_missed']} newly missed, {s['newly_made']} newly made)"
        )
        lines.append(f"why: {loss_text(s)}")
    lines.append(f"replay: {path}")
    return "\n".join(lines) + "\n"


def loss_text(s: dict[str, Any]) -> str:
    """Why payloads were lost: ``2 not delivered, 1 late; frames lost: 396 of 493 (gate 0,
    detection 3, decoding (LDPC) 393, CRC 0)``."""
    fl = s.get("frame_losses") or {}
    lost = {k: v for k, v in fl.items() if k not in ("frames", "delivered_pdus")}
    n = sum(lost.values())
    parts = [
        f"{s.get('replay_payloads_not_delivered', 0)} payload(s) not delivered in time for "
        f"their aggregation, {s.get('replay_payloads_late', 0)} late"
    ]
    if fl:
        why = ", ".join(f"{k} {v}" for k, v in lost.items())
        parts.append(f"frames lost {n} of {fl.get('frames', 0)} ({why})")
    return "; ".join(parts)


def _display(what: str, quiet: bool) -> Any:
    from testbed.progress import Display

    return Display(what, quiet=quiet)


def _progress_fn(disp: Any, what: str) -> Any:
    from testbed.progress import eta_s, fmt_duration

    def show(done: int, total: int, note: str) -> None:
        eta = fmt_duration(eta_s(done, total, disp.elapsed_s))
        disp.update(
            [[f"{done}/{total}", note, fmt_duration(disp.elapsed_s), eta]],
            ["payloads done", "now", "elapsed", "ETA"],
            f"{what}: {done}/{total} payloads · {note} · ETA {eta}",
        )

    return show


def format_sweep(res: dict[str, Any], path: Path, plot: Path | None) -> str:
    """One line per grid point and algorithm."""
    lines = [f"Sweep of {res['run_dir']} over {', '.join(res['grid'])}"]
    for pt in res["points"]:
        st = " ".join(f"{k}={v}" for k, v in pt["settings"].items())
        for alg, s in pt["algorithms"].items():
            lines.append(
                f"  {st:<40} {alg:<16} accepted {s['replay_accepted']}/{s['payloads']}, "
                f"upload mean {_f(s['replay_upload_time_mean_s'])} s max "
                f"{_f(s['replay_upload_time_max_s'])} s, aggregations missing a payload "
                f"{s['replay_aggs_incomplete_fraction']:.2f}"
            )
            lines.append(f"  {'':<40} {'':<16} why: {loss_text(s)}")
    lines.append(f"sweep: {path}")
    if plot is not None:
        lines.append(f"plot: {plot}")
    return "\n".join(lines) + "\n"


def _replay(args: argparse.Namespace) -> int:
    from testbed.replay import replay_run

    out = check_output_path(args.out, "--out", args.parents) if args.out else None
    with _display("testbed replay", args.quiet) as disp:
        res, path = replay_run(
            Path(args.run_dir),
            list(args.set or []),
            out,
            args.algorithm,
            args.drain,
            progress=_progress_fn(disp, "replay"),
        )
    if args.json:
        sys.stdout.write(json.dumps({**res, "replay_json": str(path)}, indent=1) + "\n")
    else:
        sys.stdout.write(format_replay(res, path))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from testbed.errors import UserError
    from testbed.replay import parse_grid, sweep_run, write_sweep_plot

    grid = parse_grid(list(args.grid or []))
    plot = Path(args.plot) if args.plot else None
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"--plot {plot}: expected a .png, .svg or .pdf file name")
    out = check_output_path(args.out, "--out", args.parents) if args.out else None
    with _display("testbed sweep", args.quiet) as disp:
        res, path = sweep_run(
            Path(args.run_dir),
            grid,
            out,
            args.algorithm,
            args.drain,
            progress=_progress_fn(disp, "sweep"),
        )
    if plot is not None:
        write_sweep_plot(res, plot)
    if args.json:
        out = {**res, "sweep_json": str(path), "plot": str(plot) if plot else None}
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        sys.stdout.write(format_sweep(res, path, plot))
    return 0


def register(sub: Any) -> None:
    """Add ``testbed replay`` and ``testbed sweep``."""
    r = sub.add_parser(
        "replay",
        help="send a run's recorded payloads through the emulator under changed settings",
        description="Replay every recorded payload of RUN_DIR (written by `testbed run`) through "
        "a channel emulator built from the run's scenario with --set overrides, and compare "
        "upload times, passes and aggregation membership with the original run. Writes "
        "RUN_DIR/replays/<timestamp>/replay.json (or --out DIR/replay.json); the run's own "
        "files are never modified.",
    )
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="scenario override, e.g. link.rician_k_db=3 (repeatable)",
    )
    r.add_argument("--algorithm", metavar="A", help="replay only this algorithm's run")
    r.add_argument("--out", metavar="DIR", help="output directory")
    add_parents_flag(r)
    r.add_argument(
        "--drain",
        action="store_true",
        help="let transfers still open at the end continue through the remaining windows",
    )
    r.add_argument("--json", action="store_true", help="print replay.json's content")
    r.set_defaults(func=_replay)

    s = sub.add_parser(
        "sweep",
        help="replay a run over a grid of settings and plot upload time against each",
        description="Run `testbed replay` at every point of the cartesian product of the --grid "
        "values; write sweep.json (one entry per grid point) under RUN_DIR/sweeps/<timestamp>/ "
        "(or --out) and, with --plot, upload time (mean, max) and the fraction of aggregations "
        "missing a payload against each swept key.",
    )
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2,...",
        help="values of one setting, e.g. link.rician_k_db=0,3,10 (repeatable)",
    )
    s.add_argument("--algorithm", metavar="A", help="sweep only this algorithm's run")
    s.add_argument("--out", metavar="DIR", help="output directory")
    add_parents_flag(s)
    s.add_argument("--plot", metavar="FILE.png", type=png_path, help="write the plot here")
    s.add_argument("--drain", action="store_true", help="as for replay")
    s.add_argument("--json", action="store_true", help="print sweep.json's content")
    s.set_defaults(func=_sweep)

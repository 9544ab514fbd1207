"""``testbed run``, ``testbed node satellite|cluster`` and ``testbed demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.errors import ConfigError, UserError
from testbed.paths import add_parents_flag, check_output_path
from testbed.procs import terminate_as_interrupt

__all__ = ["register"]

log = logging.getLogger(__name__)

ALGORITHMS = ("emsfl", "emsfl-enhanced", "baseline")
DEMO_OUT = "runs/demo"


def _load(path: str, sets: list[str] | None = None) -> Any:
    from testbed.scenario import load_scenario

    scn = load_scenario(path)
    return scn.with_overrides(sets) if sets else scn


def _run(args: argparse.Namespace) -> int:
    from testbed.run import check_run_out, preflight, run_scenario, run_summary_table

    terminate_as_interrupt()
    scn = _load(args.scenario, args.set)
    algs = args.algorithm or [scn.algorithm.name]
    for a in algs:
        if a not in ALGORITHMS:
            raise UserError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {a!r}")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if args.out is not None:
        out = check_run_out(check_output_path(args.out, "--out", args.parents))
    else:
        out = Path(f"runs/{scn.name}-{stamp}")
    preflight(scn)
    info = run_scenario(scn, out, algs, args.verbose, quiet=args.quiet)
    if args.report:
        info["report"] = _report(out)
        (out / "run.json").write_text(json.dumps(info, indent=1))
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return 0
    sys.stdout.write(
        run_summary_table(out)
        + f"run directory: {out}\n"
        + (f"report: {info['report']}\n" if info.get("report") else "")
    )
    return 0


def _report(out: Path) -> str:
    from testbed.report import write_report

    return str(write_report(out).report)


def _node(args: argparse.Namespace) -> int:
    scn = _load(args.scenario)
    out = Path(args.out)
    keys = None
    if args.keys is not None:
        from flowgraphs.keys import Keyring, KeysError

        me = "satellite" if args.role == "satellite" else args.id
        try:
            keys = Keyring(args.keys, me)
        except KeysError as e:
            raise UserError(f"--keys: {e}") from None
    if args.role == "satellite":
        from nodes.satellite import SatelliteNode

        return SatelliteNode(scn, out, args.token, keys=keys).run()
    from nodes.cluster import ClusterNode
    from testbed.schedule import cluster_windows, run_geometry

    try:
        scn.cluster(args.id)
    except (KeyError, ConfigError) as e:
        raise UserError(f"no cluster {args.id!r} in the scenario") from e
    windows = cluster_windows(scn)
    node = ClusterNode(
        scn,
        args.id,
        out,
        args.token,
        windows[args.id],
        run_geometry(scn, args.id, windows),
        keys=keys,
    )
    return node.serve()


def _demo(args: argparse.Namespace) -> int:
    from testbed.run import check_run_out, preflight, run_scenario, run_summary_table

    terminate_as_interrupt()
    scn = _load("default")
    out = Path(args.out)
    if args.out != DEMO_OUT:
        out = check_output_path(args.out, "--out", args.parents)
    check_run_out(out)
    w = sys.stdout.write
    w(f"demo: scenario 'default' with emsfl-enhanced and baseline → {out}\n")
    preflight(scn)
    info = run_scenario(scn, out, ["emsfl-enhanced", "baseline"], args.verbose, quiet=args.quiet)
    info["report"] = _report(out)
    (out / "run.json").write_text(json.dumps(info, indent=1))
    w(run_summary_table(out))
    w(f"run directory: {out}\n")
    if info["report"]:
        w(f"report: {info['report']}\n")
    return 0


def register(sub: Any) -> None:
    """Add ``run``, ``node`` and ``demo``."""
    r = sub.add_parser("run", help="run a scenario: emulator, satellite and cluster processes")
    r.add_argument("scenario", help="scenario file, or the name of a shipped one (default, gpu)")
    r.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    r.add_argument(
        "--algorithm",
        action="append",
        choices=ALGORITHMS,
        help="algorithm(s) to run, repeatable (default: the scenario's)",
    )
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a scenario value, e.g. link.rician_k_db=3 (repeatable)",
    )
    add_parents_flag(r)
    r.add_argument("--report", action="store_true", help="write the report afterwards")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_run)
    n = sub.add_parser("node", help="one node process of a run (started by testbed run)")
    n.add_argument("role", choices=("satellite", "cluster"))
    n.add_argument("--id", help="cluster id (role cluster)")
    n.add_argument("--scenario", required=True)
    n.add_argument("--out", required=True, help="the algorithm's run directory")
    n.add_argument("--token", required=True, help="the run's endpoint token")
    n.add_argument("--keys", help="keys directory (CURVE and signatures; docs/security.md)")
    n.set_defaults(func=_node)
    d = sub.add_parser(
        "demo", help="the main job: default scenario, enhanced EMS-FL vs baseline, then the report"
    )
    d.add_argument("--out", default=DEMO_OUT, help="run directory (default runs/demo)")
    add_parents_flag(d)
    d.set_defaults(func=_demo)

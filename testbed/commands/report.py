"""``testbed report RUN_DIR``: figures and one self-contained HTML page for a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def _report(args: argparse.Namespace) -> int:
    from testbed.paths import check_output_path
    from testbed.report import write_report

    out = check_output_path(args.out, "--out", args.parents) if args.out else None
    res = write_report(args.run_dir, out)
    if args.json:
        sys.stdout.write(json.dumps(res.to_dict(), indent=2) + "\n")
        return 0
    w = sys.stdout.write
    s = res.summary
    w(f"Run {s['run']} (scenario {s.get('scenario')}, status {s.get('status')}):\n")
    for name, a in s["algorithms"].items():
        acc = "–" if a["final_accuracy"] is None else f"{a['final_accuracy']:.3f}"
        ctt = a["cycles_to_target"] if a["cycles_to_target"] is not None else "not reached"
        mean = "–" if a["upload_time_mean_s"] is None else f"{a['upload_time_mean_s']:.1f} s"
        w(
            f"  {name}: final accuracy {acc}, cycles to target {ctt}, "
            f"mean upload {mean}, {a['uploads_multi_pass']} upload(s) over >1 pass, "
            f"{a['missed_aggregations']} missed payload(s)\n"
        )
    if s["malformed_lines"]:
        w(f"  {s['malformed_lines']} malformed input line(s) skipped (listed in the report)\n")
    w(f"report: {res.report}\n")
    return 0


def register(sub: Any) -> None:
    """Add ``testbed report``."""
    p = sub.add_parser(
        "report",
        help="write PNGs and a self-contained HTML report for a run directory",
        description="Read RUN_DIR (written by `testbed run`) and write accuracy, upload-time, "
        "goodput-vs-Shannon, link-timeline and aggregation-membership figures plus one "
        "self-contained HTML page (images embedded).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds run.json)")
    p.add_argument("--out", metavar="DIR", help="output directory (default RUN_DIR/report)")
    from testbed.paths import add_parents_flag

    add_parents_flag(p)
    p.add_argument("--json", action="store_true", help="print report path, figures, summary")
    p.set_defaults(func=_report)

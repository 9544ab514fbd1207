"""``testbed demo``: the project's main job on the embedded default scenario.

Until the orchestrated run exists, the demo prints the link report of the default scenario
(24 h of passes over the default site) and writes the plot of its best pass.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from channel.geometry import default_link_geometry
    from testbed.commands.link import pass_report, plot_pass

    out = Path(args.out)
    link = default_link_geometry()
    rep = pass_report(link, 24.0)
    best = max(rep["windows"], key=lambda w: w["max_elevation_deg"])
    png = plot_pass(link, best, out / "link_pass.png")
    w = sys.stdout.write
    w(
        f"Default scenario link report ({len(rep['windows'])} passes in 24 h, "
        f"theta_min {link.params.min_elevation_deg:g} deg):\n"
    )
    for win in rep["windows"]:
        w(
            f"  {win['aos'][:19]}  {win['duration_s']:6.0f} s  "
            f"max el {win['max_elevation_deg']:5.1f}"
            f"  {win['capacity_bytes'] / 1e6:6.0f} MB\n"
        )
    w(f"plot of the best pass: {png}\n")
    return 0


def register(sub: Any) -> None:
    """Add ``testbed demo``."""
    p = sub.add_parser("demo", help="run the main job on the embedded default scenario")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.set_defaults(func=_demo)

"""``testbed link constellation``: the contact plan of a constellation and its stations.

A Walker pattern (``--walker 53:24/4/1 --altitude-km 550``) or a TLE set (``--tle-file``),
ground stations (``--stations "48.1,11.6;40.4,-3.7"``), a horizon: every sat-ground window
and ISL with its capacity (:mod:`channel.contact_plan`), as text, JSON or a plot; with
``--route SRC,DST,BYTES`` the earliest-arrival and minimum-latency routes of a payload.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from testbed.commands.link import (
    _parse_epoch,
    add_link_params_args,
    link_params_from_args,
    number_in,
    png_path,
)
from testbed.errors import ConfigError, UserError

__all__ = ["parse_stations", "plot_constellation", "register"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


#: options that --scenario replaces (option → argparse dest), and their defaults
_CONSTELLATION_OPTS = {
    "--walker": "walker",
    "--tle-file": "tle_file",
    "--stations": "stations",
    "--pattern": "pattern",
    "--altitude-km": "altitude_km",
    "--min-elevation-deg": "min_elevation_deg",
    "--isl-terminal": "isl_terminal",
    "--max-isl-range-km": "max_isl_range_km",
    "--grazing-altitude-km": "grazing_altitude_km",
    "--max-slew-deg-s": "max_slew_deg_s",
    "--no-intra-plane": "no_intra_plane",
    "--no-inter-plane": "no_inter_plane",
}
_DEFAULTS: dict[str, Any] = {}
#: the timeline shows one row per satellite up to this many (then only the stations)
_MAX_PLOT_ROWS = 150


def parse_stations(text: str) -> list[Any]:
    """``"[NAME=]LAT,LON[,ALT_M];..."`` → :class:`channel.GroundSite` list (default names
    ``gs0``, ``gs1``, …); a one-line :class:`UserError` otherwise."""
    from channel.orbit import GroundSite, OrbitError

    out = []
    items = [x.strip() for x in text.split(";") if x.strip()]
    if not items:
        raise UserError(f"--stations takes [NAME=]LAT,LON[,ALT_M];... , got {text!r}")
    for i, item in enumerate(items):
        name, _, coords = item.rpartition("=")
        name = name.strip() or f"gs{i}"
        if not _NAME.match(name):
            raise UserError(f"--stations: station name {name!r} must be [A-Za-z0-9_-], 1..32")
        parts = coords.split(",")
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            raise UserError(f"--stations: {item!r} is not LAT,LON[,ALT_M]") from None
        if len(vals) not in (2, 3):
            raise UserError(f"--stations: {item!r} is not LAT,LON[,ALT_M]")
        try:
            out.append(GroundSite(*vals, name=name))
        except OrbitError as e:
            raise UserError(f"--stations: {item!r}: {e}") from None
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise UserError(f"--stations: duplicate station names {names}")
    return out


def _build(args: argparse.Namespace) -> tuple[Any, list[Any], dict[str, Any]]:
    """(constellation, stations, contact_plan keyword arguments) from the options or the
    scenario's ``[constellation]`` / ``[[station]]``."""
    from channel.constellation import Constellation, ConstellationError
    from channel.isl import IslRules, OpticalTerminal, RfTerminal
    from channel.orbit import GroundSite

    epoch = _parse_epoch(args.epoch)
    try:
        if args.scenario:
            given = [
                opt
                for opt, dest in _CONSTELLATION_OPTS.items()
                if getattr(args, dest) != _DEFAULTS.get(dest)
            ]
            if given:
                raise UserError(
                    f"--scenario takes the constellation and stations from the file; "
                    f"do not also give {', '.join(given)}"
                )
            from testbed.scenario import load_scenario

            sc = load_scenario(args.scenario)
            spec = sc.constellation
            if spec is None:
                raise UserError(f"{sc.source}: no [constellation] table")
            if spec.walker:
                con = Constellation.walker(
                    spec.walker, spec.altitude_km * 1e3, spec.pattern, epoch=sc.epoch
                )
            else:
                con = Constellation.from_tle_file(spec.tle_file, epoch=sc.epoch)
            stations = [GroundSite(s.lat_deg, s.lon_deg, s.alt_m, s.name) for s in sc.stations]
            rules = IslRules(
                spec.grazing_altitude_km * 1e3,
                spec.max_isl_range_km * 1e3,
                spec.max_slew_deg_s,
                spec.intra_plane,
                spec.inter_plane,
            )
            terminal = spec.isl_terminal
            # --hours, when given, shortens or extends the scenario's horizon
            hours = args.hours if args.hours != _DEFAULTS.get("hours") else spec.hours
            min_el = spec.min_elevation_deg
        else:
            if bool(args.walker) == bool(args.tle_file):
                raise UserError("give exactly one of --walker I:T/P/F or --tle-file FILE")
            if args.walker:
                con = Constellation.walker(
                    args.walker, args.altitude_km * 1e3, args.pattern, epoch=epoch
                )
            else:
                ep = epoch if args.epoch_given else None
                con = Constellation.from_tle_file(args.tle_file, epoch=ep)
            stations = parse_stations(args.stations) if args.stations is not None else []
            rules = IslRules(
                args.grazing_altitude_km * 1e3,
                args.max_isl_range_km * 1e3,
                args.max_slew_deg_s,
                not args.no_intra_plane,
                not args.no_inter_plane,
            )
            terminal = args.isl_terminal
            hours, min_el = args.hours, args.min_elevation_deg
    except (ConstellationError, ValueError, OverflowError) as e:
        if isinstance(e, ConfigError | UserError):
            raise
        if isinstance(e, OverflowError):
            raise UserError(f"--epoch {args.epoch}: the horizon runs past year 9999") from None
        raise UserError(str(e)) from None
    kw = {
        "duration_s": hours * 3600.0,
        "min_elevation_deg": min_el,
        "ground": link_params_from_args(args),
        "rules": rules,
        "terminal": OpticalTerminal() if terminal == "optical" else RfTerminal(),
    }
    return con, stations, kw


def _parse_route(text: str) -> tuple[str, str, int]:
    parts = text.split(",")
    if len(parts) != 3:
        raise UserError(f"--route takes SRC,DST,BYTES, got {text!r}")
    try:
        nbytes = int(float(parts[2]))
    except (ValueError, OverflowError):
        raise UserError(f"--route: BYTES must be a finite number, got {parts[2]!r}") from None
    if nbytes <= 0:
        raise UserError(f"--route: BYTES must be > 0, got {parts[2]!r}")
    return parts[0].strip(), parts[1].strip(), nbytes


def _constellation(args: argparse.Namespace) -> int:
    from channel.constellation import ConstellationError
    from channel.contact_plan import contact_plan
    from channel.routing import ContactGraph

    route = _parse_route(args.route) if args.route is not None else None
    if args.out is not None:
        from testbed.paths import check_output_path

        if not args.out.strip() or Path(args.out).is_dir():
            raise UserError(f"--out must name a JSON file, got {args.out!r}")
        check_output_path(args.out, "--out", has_parents_flag=False)
    con, stations, kw = _build(args)
    try:
        con.epoch + timedelta(seconds=kw["duration_s"])
    except OverflowError:
        raise UserError(f"--epoch {args.epoch}: the horizon runs past year 9999") from None
    try:
        plan = contact_plan(con, stations, **kw)
    except ConstellationError as e:
        raise UserError(str(e)) from None
    except MemoryError:
        raise UserError(
            "not enough memory for this constellation and horizon; shorten --hours"
        ) from None
    routes: dict[str, Any] = {}
    if route is not None:
        src, dst, nbytes = route
        g = ContactGraph(plan)
        try:
            ea = g.earliest_arrival(src, dst, 0.0, nbytes)
            ml = g.minimum_latency(src, dst, 0.0, nbytes)
        except ConstellationError as e:
            raise UserError(f"--route: {e}") from None
        routes = {
            "earliest_arrival": None if ea is None else ea.to_dict(),
            "minimum_latency": None if ml is None else ml.to_dict(),
        }
    out = plan.to_dict()
    if routes:
        out["routes"] = routes
    if args.plot:
        out["plot"] = str(plot_constellation(con, plan, args.plot))
    if args.out is not None:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    sys.stdout.write(_summary(plan, routes, out.get("plot"), args.out))
    return 0


def _summary(plan: Any, routes: dict[str, Any], plot: str | None, out: str | None) -> str:
    sats = plan.satellites
    planes = {s["plane"] for s in sats}
    plane_of = {s["id"]: s["plane"] for s in sats}
    span_h = (plan.end_s - plan.start_s) / 3600.0
    lines = [
        f"{len(sats)} satellites in {len(planes)} planes, {len(plan.stations)} stations, "
        f"{span_h:g} h from {plan.to_dict()['start']}"
    ]
    for st in plan.stations:
        cs = [c for c in plan.contacts if c.kind == "sat_ground" and c.src == st["name"]]
        tot = sum(c.duration_s for c in cs)
        cap = sum(c.capacity_bytes for c in cs)
        lines.append(
            f"  station {st['name']:<10} {len(cs):4d} passes, {tot / 3600:6.2f} h of passes, "
            f"{cap / 1e9:8.2f} GB (Shannon, clear sky)"
        )
    isl = [c for c in plan.contacts if c.kind == "isl"]
    intra = [c for c in isl if plane_of.get(c.src) == plane_of.get(c.dst)]
    inter = [c for c in isl if plane_of.get(c.src) != plane_of.get(c.dst)]
    for name, cs in (("intra-plane", intra), ("inter-plane", inter)):
        if cs:
            dur = [c.duration_s for c in cs]
            lines.append(
                f"  {name} ISLs {len(cs):5d} contacts, median {sorted(dur)[len(dur) // 2]:8.0f} s,"
                f" {sum(c.capacity_bytes for c in cs) / 1e12:8.2f} TB"
            )
        else:
            lines.append(f"  {name} ISLs     0 contacts")
    for kind, r in routes.items():
        if r is None:
            lines.append(f"  {kind}: no route within the horizon")
        else:
            lines.append(
                f"  {kind}: {' > '.join(r['nodes'])}  released {r['release_s']:.1f} s, "
                f"arrives {r['arrival_s']:.1f} s (latency {r['latency_s']:.1f} s)"
            )
    if plot:
        lines.append(f"plot: {plot}")
    if out:
        lines.append(f"contact plan: {out}")
    return "\n".join(lines) + "\n"


def plot_constellation(con: Any, plan: Any, path: str | Path) -> Path:
    """Ground tracks with the stations (one orbital period), and the availability timeline
    of ground contacts (one row per station) and inter-plane ISLs (one row per satellite)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from channel.constants import EARTH_ROTATION_RAD_S
    from channel.constellation import Ephemeris
    from channel.orbit import gmst_rad

    span = min(plan.end_s - plan.start_s, 6000.0)
    if len(con.satellites) > 500:  # ground tracks of a sample: the plot stays readable
        step = len(con.satellites) // 500 + 1
        con = type(con)(con.satellites[::step], con.epoch, con.pattern)
    eph = Ephemeris(con, plan.start_s, plan.start_s + span, 20.0)
    th = gmst_rad(con.epoch) + EARTH_ROTATION_RAD_S * eph.t
    x, y, z = eph.pos[..., 0], eph.pos[..., 1], eph.pos[..., 2]
    lon = np.degrees(np.arctan2(-np.sin(th) * x + np.cos(th) * y, np.cos(th) * x + np.sin(th) * y))
    lat = np.degrees(np.arcsin(z / np.linalg.norm(eph.pos, axis=-1)))
    plane_of = {s["id"]: s["plane"] for s in plan.satellites}
    cmap = plt.get_cmap("tab10")
    inter = [
        c for c in plan.contacts if c.kind == "isl" and plane_of.get(c.src) != plane_of.get(c.dst)
    ]
    isl_rows = sorted({c.src for c in inter}, key=lambda s: (plane_of[s], s))
    if len(isl_rows) > _MAX_PLOT_ROWS:  # too many to read: the stations' rows only
        isl_rows = []
    n_rows = len(plan.stations) + len(isl_rows)
    fig = plt.figure(figsize=(11, 5 + 0.14 * n_rows))
    ax1 = fig.add_axes((0.14, 0.50, 0.83, 0.44))
    for i, s in enumerate(con.satellites):
        ax1.scatter(lon[i], lat[i], s=1.5, color=cmap(s.plane % 10), linewidths=0)
    for st in plan.stations:
        ax1.plot(st["lon_deg"], st["lat_deg"], "k^", ms=8)
        ax1.annotate(
            st["name"],
            (st["lon_deg"], st["lat_deg"]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax1.set_xlim(-180, 180)
    ax1.set_ylim(-90, 90)
    ax1.set_xlabel("longitude [deg]")
    ax1.set_ylabel("latitude [deg]")
    ax1.set_title(
        f"Ground tracks over {span / 60:.0f} min ({len(con.satellites)} satellites, "
        f"colour = plane) and stations"
    )
    ax1.grid(alpha=0.3)
    ax2 = fig.add_axes((0.14, 0.07, 0.83, 0.33))
    labels = []
    for r, st in enumerate(plan.stations):
        for c in plan.contacts:
            if c.kind == "sat_ground" and c.src == st["name"]:
                ax2.barh(
                    r,
                    c.duration_s / 3600,
                    left=c.start_s / 3600,
                    height=0.8,
                    color=cmap(plane_of.get(c.dst, 0) % 10),
                )
        labels.append(f"{st['name']} (ground)")
    base = len(plan.stations)
    for k, sat in enumerate(isl_rows):
        for c in inter:
            if c.src == sat:
                ax2.barh(
                    base + k,
                    c.duration_s / 3600,
                    left=c.start_s / 3600,
                    height=0.8,
                    color=cmap(plane_of[c.dst] % 10),
                )
        labels.append(f"{sat} > next plane")
    ax2.set_yticks(range(len(labels)))
    ax2.set_yticklabels(labels, fontsize=6 if len(labels) > 30 else 8)
    ax2.invert_yaxis()
    ax2.set_xlim(plan.start_s / 3600, plan.end_s / 3600)
    ax2.set_xlabel("hours since the epoch (colour = plane of the satellite reached)")
    ax2.set_title("Availability: ground contacts and inter-plane ISLs")
    ax2.grid(alpha=0.3, axis="x")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def register(lsub: Any) -> None:
    """Add ``testbed link constellation`` to the ``link`` sub-commands."""
    from channel.isl import IslRules

    r = IslRules()
    p = lsub.add_parser(
        "constellation",
        help="contact plan of a constellation: ground windows, ISLs, capacity, routes",
        description="Walker i:T/P/F or a TLE set, ground stations, a horizon: every contact "
        "(sat_ground, isl) with its capacity; optional routes (contact graph routing).",
    )
    g = p.add_argument_group("constellation")
    g.add_argument("--walker", metavar="I:T/P/F", help="Walker pattern, e.g. 53:24/4/1")
    g.add_argument(
        "--pattern",
        choices=("delta", "star"),
        default="delta",
        help="Walker delta (nodes over 360°) or star (180°, polar)",
    )
    g.add_argument("--altitude-km", type=number_in(100.0, 40000.0), default=550.0)
    g.add_argument("--tle-file", metavar="FILE", help="a file with many TLEs (SGP4)")
    g.add_argument(
        "--scenario",
        metavar="FILE",
        help="take [constellation] and [[station]] from a scenario file",
    )
    g.add_argument(
        "--stations",
        metavar='"[NAME=]LAT,LON[,ALT_M];..."',
        help='ground stations, e.g. "munich=48.1,11.6;40.4,-3.7"',
    )
    g.add_argument(
        "--hours",
        type=number_in(0.0, 744.0, open_lo=True),
        default=24.0,
        help="horizon [h] (default 24)",
    )
    g.add_argument(
        "--min-elevation-deg",
        type=number_in(0.0, 89.9),
        default=10.0,
        help="elevation gate of every station [deg] (default 10)",
    )
    g.add_argument(
        "--epoch",
        default=None,
        help="t = 0 (ISO-8601 UTC; default 2026-01-01T00:00:00Z, or the TLE epoch)",
    )
    i = p.add_argument_group("inter-satellite links")
    i.add_argument("--isl-terminal", choices=("rf", "optical"), default="rf")
    i.add_argument(
        "--max-isl-range-km", type=number_in(0.0, 1e6, open_lo=True), default=r.max_range_m / 1e3
    )
    i.add_argument(
        "--grazing-altitude-km", type=number_in(0.0, 1000.0), default=r.grazing_altitude_m / 1e3
    )
    i.add_argument(
        "--max-slew-deg-s", type=number_in(0.0, 1000.0, open_lo=True), default=r.max_slew_deg_s
    )
    i.add_argument("--no-intra-plane", action="store_true", help="no fore/aft ISLs")
    i.add_argument("--no-inter-plane", action="store_true", help="no cross-plane ISLs")
    o = p.add_argument_group("output")
    o.add_argument(
        "--route",
        metavar="SRC,DST,BYTES",
        help="earliest-arrival and minimum-latency routes of a payload released at 0",
    )
    o.add_argument("--json", action="store_true", help="the contact plan as JSON on stdout")
    o.add_argument("--out", metavar="FILE.json", help="write the contact plan JSON here")
    o.add_argument(
        "--plot", metavar="FILE.png", type=png_path, help="ground tracks and availability timeline"
    )
    add_link_params_args(p, skip=("min_elevation_deg",))
    p.set_defaults(func=_run)
    for dest in (*_CONSTELLATION_OPTS.values(), "hours"):
        _DEFAULTS[dest] = p.get_default(dest)


def _run(args: argparse.Namespace) -> int:
    args.epoch_given = args.epoch is not None
    if args.epoch is None:
        args.epoch = "2026-01-01T00:00:00Z"
    return _constellation(args)

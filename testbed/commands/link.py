"""``testbed link budget``, ``pass`` and ``constellation``: the link model from the command line.

Every link-budget option's default is taken from :class:`channel.LinkParams`, so the CLI,
scenarios and library share one set of defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.errors import UserError

__all__ = [
    "add_link_params_args",
    "finite_number",
    "link_params_from_args",
    "pass_report",
    "register",
]

log = logging.getLogger(__name__)

_HELP = {
    "carrier_hz": "carrier frequency [Hz]",
    "bandwidth_hz": "sub-channel bandwidth [Hz]",
    "tx_power_dbm": "ground transmit power [dBm]",
    "tx_antenna_gain_dbi": "ground antenna gain [dBi]",
    "rx_antenna_gain_dbi": "satellite antenna gain [dBi]",
    "noise_figure_db": "satellite receiver noise figure [dB]",
    "noise_temp_k": "system noise temperature [K] (0: T0·NF)",
    "atmospheric_zenith_db": "zenith atmospheric loss [dB]",
    "rain_zenith_db": "zenith rain loss in a rain phase [dB]",
    "rain_probability": "probability of a rain phase [0..1]",
    "shadowing_sigma_db": "log-normal shadowing sigma [dB]",
    "shadowing_corr_s": "shadowing decorrelation time [s]",
    "rician_k_db": "Rician K-factor [dB]",
    "min_elevation_deg": "elevation gate theta_min [deg]",
    "implementation_loss_db": "modem implementation loss [dB]",
}


def finite_number(text: str) -> float:
    """argparse type: a finite float (one-line error otherwise)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return v


def number_in(lo: float, hi: float, open_lo: bool = False) -> Any:
    """argparse type factory: a finite float in [lo, hi] (or (lo, hi] with ``open_lo``)."""

    def parse(text: str) -> float:
        v = finite_number(text)
        if v < lo or v > hi or (open_lo and v == lo):
            raise argparse.ArgumentTypeError(
                f"must be in {'(' if open_lo else '['}{lo:g}, {hi:g}], got {text!r}"
            )
        return v

    return parse


def png_path(text: str) -> str:
    """argparse type: a PNG file to write (``*.png``, not a directory)."""
    if not text.lower().endswith(".png") or Path(text).name.lower() == ".png":
        raise argparse.ArgumentTypeError(f"must name a .png file, got {text!r}")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"is a directory: {text!r}")
    parent = Path(text).expanduser().absolute().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: the directory {parent} does not exist")
    return text


def seed_int(text: str) -> int:
    """argparse type: a random seed, 0 ≤ seed < 2³²."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0..4294967295, got {text!r}")
    return v


def add_link_params_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--name`` option per :class:`channel.LinkParams` field (defaults shared)."""
    from channel.link_budget import LinkParams

    defaults = LinkParams()
    g = p.add_argument_group("link parameters")
    for f in fields(LinkParams):
        if f.name in skip:
            continue
        opt = "--" + f.name.replace("_", "-")
        g.add_argument(
            opt,
            dest=f"lp_{f.name}",
            type=finite_number,
            default=getattr(defaults, f.name),
            metavar="X",
            help=f"{_HELP.get(f.name, f.name)} (default %(default)s)",
        )
    g.add_argument(
        "--antenna-gain-dbi",
        dest="lp_rx_antenna_gain_dbi",
        type=finite_number,
        help=argparse.SUPPRESS,
    )  # alias of --rx-antenna-gain-dbi


def link_params_from_args(args: argparse.Namespace) -> Any:
    """Build validated :class:`channel.LinkParams` from parsed options."""
    from channel.link_budget import LinkBudgetError, LinkParams

    kw = {
        f.name: getattr(args, f"lp_{f.name}")
        for f in fields(LinkParams)
        if getattr(args, f"lp_{f.name}", None) is not None
    }
    try:
        return LinkParams(**kw)
    except LinkBudgetError as e:
        raise UserError(str(e)) from e


def _emit(obj: dict[str, Any], as_json: bool, text: str) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n" if as_json else text)


def _budget(args: argparse.Namespace) -> int:
    import numpy as np

    from channel.link_budget import (
        atmospheric_loss_db,
        free_space_path_loss_db,
        noise_power_dbm,
        shannon_capacity_bps,
    )
    from channel.windows import ergodic_capacity_bps

    p = link_params_from_args(args)
    breakdown: dict[str, float] = {}
    if args.path_loss_db is not None:
        if args.slant_range_km is not None:
            raise UserError("give either --path-loss-db or --slant-range-km, not both")
        loss = args.path_loss_db
        breakdown["large_scale_loss_db"] = loss
    else:
        rng_km = 600.0 if args.slant_range_km is None else args.slant_range_km
        if rng_km <= 0:
            raise UserError(f"--slant-range-km must be positive, got {rng_km}")
        if not 0.0 < args.elevation_deg <= 90.0:
            raise UserError(f"--elevation-deg must be in (0, 90], got {args.elevation_deg}")
        fspl = float(free_space_path_loss_db(rng_km * 1e3, p.carrier_hz))
        atm = float(atmospheric_loss_db(args.elevation_deg, p.atmospheric_zenith_db))
        loss = fspl + atm
        breakdown.update(
            slant_range_km=rng_km,
            free_space_loss_db=fspl,
            atmospheric_loss_db=atm,
            large_scale_loss_db=loss,
        )
    n_dbm = noise_power_dbm(p.bandwidth_hz, p.noise_figure_db, p.noise_temp_k)
    prx = p.tx_power_dbm + p.tx_antenna_gain_dbi + p.rx_antenna_gain_dbi - loss
    snr = prx - n_dbm - p.implementation_loss_db
    cap = float(shannon_capacity_bps(p.bandwidth_hz, snr))
    erg = float(ergodic_capacity_bps(p.bandwidth_hz, snr, p.rician_k_db))
    out = {
        **breakdown,
        "tx_power_dbm": p.tx_power_dbm,
        "rx_power_dbm": prx,
        "noise_power_dbm": n_dbm,
        "snr_db": snr,
        "capacity_bps": cap,
        "ergodic_capacity_bps": erg,
        "rician_k_db": p.rician_k_db,
        "bandwidth_hz": p.bandwidth_hz,
        "window_s": args.window_s,
        "window_bytes": cap * args.window_s / 8.0,
        "window_bytes_ergodic": erg * args.window_s / 8.0,
    }
    text = (
        f"received power  {prx:8.2f} dBm   (P_t {p.tx_power_dbm:g} dBm + G "
        f"{p.tx_antenna_gain_dbi + p.rx_antenna_gain_dbi:g} dBi - L {loss:.2f} dB)\n"
        f"noise power     {n_dbm:8.2f} dBm   (B {p.bandwidth_hz / 1e6:g} MHz, "
        f"NF {p.noise_figure_db:g} dB)\n"
        f"SNR             {snr:8.2f} dB\n"
        f"capacity        {cap / 1e6:8.3f} Mbit/s (AWGN Shannon), "
        f"{erg / 1e6:.3f} Mbit/s ergodic at K={p.rician_k_db:g} dB\n"
        f"in {args.window_s:g} s     {cap * args.window_s / 8e6:8.1f} MB "
        f"({erg * args.window_s / 8e6:.1f} MB ergodic)\n"
    )
    del np
    _emit(out, args.json, text)
    return 0


def _parse_site(text: str) -> Any:
    from channel.orbit import GroundSite, OrbitError

    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise UserError(f"--site takes LAT,LON[,ALT_M], got {text!r}")
    try:
        vals = [float(x) for x in parts]
    except ValueError:
        raise UserError(f"--site takes numbers LAT,LON[,ALT_M], got {text!r}") from None
    try:
        return GroundSite(*vals, name="site")
    except OrbitError as e:
        raise UserError(str(e)) from e


def _parse_epoch(text: str) -> datetime:
    try:
        ep = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--epoch is not an ISO-8601 time: {text!r}") from None
    return ep if ep.tzinfo else ep.replace(tzinfo=UTC)


def _orbit_from_args(args: argparse.Namespace) -> Any:
    from channel.orbit import CircularOrbit, OrbitError, TleOrbit

    epoch = _parse_epoch(args.epoch)
    try:
        if args.tle:
            return TleOrbit.from_file(args.tle, epoch=epoch)
        return CircularOrbit(
            args.altitude_km * 1e3, args.inclination_deg, args.raan_deg, args.phase_deg, epoch
        )
    except OrbitError as e:
        raise UserError(str(e)) from e


def pass_report(link: Any, hours: float, step_s: float = 10.0) -> dict[str, Any]:
    """Windows over ``hours`` with pass-integrated capacity, plus the gaps between them."""
    from channel.windows import WindowError, contact_windows, gaps, window_capacity_bytes

    try:
        ws = contact_windows(
            link.orbit, link.site, 0.0, hours * 3600.0, link.params.min_elevation_deg, step_s
        )
    except WindowError as e:
        raise UserError(str(e)) from e
    epoch = link.orbit.epoch
    out_w = []
    for w in ws:
        d = w.to_dict(epoch)
        d["capacity_bytes"] = window_capacity_bytes(link, w, fading=True)
        d["capacity_bytes_awgn"] = window_capacity_bytes(link, w, fading=False)
        st = link.state([w.aos_s, w.tca_s, w.los_s], shadowing=False)
        d["doppler_hz_at_aos"] = float(st.doppler_hz[0])
        d["doppler_hz_at_los"] = float(st.doppler_hz[2])
        d["snr_db_at_tca"] = float(st.snr_db[1])
        out_w.append(d)
    return {
        "epoch": epoch.isoformat().replace("+00:00", "Z"),
        "site": {
            "lat_deg": link.site.lat_deg,
            "lon_deg": link.site.lon_deg,
            "alt_m": link.site.alt_m,
        },
        "min_elevation_deg": link.params.min_elevation_deg,
        "hours": hours,
        "link": link.params.to_dict(),
        "windows": out_w,
        "gaps_s": [b - a for a, b in gaps(ws)],
        "total_contact_s": sum(w.duration_s for w in ws),
        "total_capacity_bytes": sum(d["capacity_bytes"] for d in out_w),
    }


def plot_pass(link: Any, window: dict[str, Any], path: str | Path) -> Path:
    """Four stacked panels over one pass: elevation, Doppler, SNR, capacity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from channel.link_budget import shannon_capacity_bps
    from channel.windows import ergodic_capacity_bps

    pad = 120.0
    t = np.arange(window["aos_s"] - pad, window["los_s"] + pad, 1.0)
    st = link.state(t)
    p = link.params
    rel = (t - window["aos_s"]) / 60.0
    fig, ax = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    ax[0].plot(rel, st.elevation_deg)
    ax[0].axhline(p.min_elevation_deg, color="r", ls="--", label=r"$\theta_{min}$")
    ax[0].set_ylabel("elevation [deg]")
    ax[0].legend(loc="upper right")
    ax[1].plot(rel, st.doppler_hz / 1e3)
    ax[1].set_ylabel("Doppler [kHz]")
    ax[2].plot(rel, st.snr_db, label="large-scale SNR (with shadowing)")
    ax[2].set_ylabel("SNR [dB]")
    ax[2].legend(loc="lower center", fontsize=8)
    gate = st.visible
    cap = np.where(gate, shannon_capacity_bps(p.bandwidth_hz, st.snr_db), 0.0)
    erg = np.where(gate, ergodic_capacity_bps(p.bandwidth_hz, st.snr_db, p.rician_k_db), 0.0)
    ax[3].plot(rel, cap / 1e6, label="AWGN Shannon")
    ax[3].plot(rel, erg / 1e6, label=f"ergodic, K={p.rician_k_db:g} dB")
    ax[3].set_ylabel("capacity [Mbit/s]")
    ax[3].set_xlabel("minutes since AOS")
    ax[3].legend(loc="lower center", fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
        a.axvspan(0, (window["los_s"] - window["aos_s"]) / 60.0, color="g", alpha=0.06)
    fig.suptitle(
        f"Pass {window['aos']} — max el {window['max_elevation_deg']:.1f}°, "
        f"{window['capacity_bytes'] / 1e6:.0f} MB deliverable"
    )
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _pass(args: argparse.Namespace) -> int:
    from channel.geometry import LinkGeometry
    from channel.orbit import GroundSite

    if not 0.0 < args.hours <= 24.0 * 14:
        raise UserError(f"--hours must be in (0, 336], got {args.hours}")
    params = link_params_from_args(args)
    site = _parse_site(args.site) if args.site else GroundSite(48.1, 11.6, 500.0, "munich")
    link = LinkGeometry(_orbit_from_args(args), site, params, seed=args.seed)
    rep = pass_report(link, args.hours)
    if args.plot:
        if not rep["windows"]:
            raise UserError("no pass above the elevation gate in the interval: nothing to plot")
        idx = (
            args.pass_index
            if args.pass_index is not None
            else max(
                range(len(rep["windows"])), key=lambda i: rep["windows"][i]["max_elevation_deg"]
            )
        )
        if not 0 <= idx < len(rep["windows"]):
            raise UserError(f"--pass-index {idx} out of range (0..{len(rep['windows']) - 1})")
        rep["plot"] = str(plot_pass(link, rep["windows"][idx], args.plot))
    lines = [
        f"{len(rep['windows'])} passes above {params.min_elevation_deg:g} deg in "
        f"{args.hours:g} h over ({site.lat_deg:g}, {site.lon_deg:g}):"
    ]
    lines.append(f"{'AOS (UTC)':<22}{'dur [s]':>9}{'max el':>8}{'MB':>9}{'MB awgn':>9}")
    for w in rep["windows"]:
        lines.append(
            f"{w['aos'][:19]:<22}{w['duration_s']:>9.1f}{w['max_elevation_deg']:>8.1f}"
            f"{w['capacity_bytes'] / 1e6:>9.1f}{w['capacity_bytes_awgn'] / 1e6:>9.1f}"
        )
    if "plot" in rep:
        lines.append(f"plot: {rep['plot']}")
    _emit(rep, args.json, "\n".join(lines) + "\n")
    return 0


def add_orbit_args(p: argparse.ArgumentParser) -> None:
    """Orbit/site options shared by ``link pass`` and others."""
    g = p.add_argument_group("orbit and site")
    g.add_argument("--site", metavar="LAT,LON[,ALT_M]", help="ground site (default Munich)")
    g.add_argument("--tle", metavar="FILE", help="propagate this TLE with SGP4")
    g.add_argument(
        "--altitude-km", type=finite_number, default=600.0, help="circular orbit altitude"
    )
    g.add_argument("--inclination-deg", type=finite_number, default=53.0)
    g.add_argument("--raan-deg", type=finite_number, default=0.0)
    g.add_argument(
        "--phase-deg", type=finite_number, default=0.0, help="argument of latitude at epoch"
    )
    g.add_argument("--epoch", default="2026-01-01T00:00:00Z", help="emulated t=0 (ISO-8601 UTC)")
    g.add_argument("--seed", type=seed_int, default=0, help="shadowing/rain realisation seed")


def register(sub: Any) -> None:
    """Add ``testbed link``."""
    p = sub.add_parser("link", help="link budget and pass geometry (channel/ model)")
    lsub = p.add_subparsers(dest="link_command", metavar="{budget,pass,constellation}")
    lsub.required = True
    b = lsub.add_parser(
        "budget",
        help="SNR and Shannon capacity for one geometry",
        description="SNR = P_t + G_t + G_r - L - N; C = B log2(1 + SNR).",
    )
    b.add_argument(
        "--path-loss-db", type=number_in(0.0, 400.0), help="large-scale loss L [dB] (e.g. 160)"
    )
    b.add_argument(
        "--slant-range-km", type=finite_number, help="compute L from range (default 600)"
    )
    b.add_argument(
        "--elevation-deg",
        type=finite_number,
        default=90.0,
        help="elevation for the atmospheric loss (with --slant-range-km)",
    )
    b.add_argument(
        "--window-s",
        type=number_in(0.0, 1e7, open_lo=True),
        default=600.0,
        help="window for the bytes figure [s]",
    )
    b.add_argument("--json", action="store_true", help="machine-readable output")
    add_link_params_args(b)
    b.set_defaults(func=_budget)
    ps = lsub.add_parser("pass", help="contact windows, Doppler, SNR and capacity per pass")
    add_orbit_args(ps)
    ps.add_argument("--hours", type=finite_number, default=24.0, help="search horizon [h]")
    ps.add_argument("--json", action="store_true")
    ps.add_argument(
        "--plot", metavar="FILE.png", type=png_path, help="plot one pass (highest by default)"
    )
    ps.add_argument("--pass-index", type=int, help="which window to plot")
    add_link_params_args(ps)
    ps.set_defaults(func=_pass)
    from testbed.commands import constellation

    constellation.register(lsub)

"""``testbed channel serve|bench|per``: the GNU Radio channel emulator and its measurements.

GNU Radio is imported inside the handlers only, so ``testbed --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from typing import Any

from testbed.commands.link import finite_number, png_path
from testbed.errors import UserError

__all__ = ["format_bench_markdown", "register"]


def _positive(text: str) -> float:
    v = finite_number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= v <= 100_000:
        raise argparse.ArgumentTypeError(f"must be in 1..100000, got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``channel`` command group."""
    p = sub.add_parser("channel", help="GNU Radio channel emulator (serve, bench, per)")
    csub = p.add_subparsers(dest="channel_command", metavar="SUBCOMMAND")
    csub.required = True

    s = csub.add_parser("serve", help="run the emulator process (ZeroMQ PDUs in/out)")
    s.add_argument(
        "--config", metavar="FILE", help="TOML config (default: links 'c1' and 'c1-down')"
    )
    s.add_argument(
        "--keys",
        metavar="DIR",
        help="keys directory (testbed keys create DIR channel satellite c1): CURVE on the "
        "default links, c1 admitted as sender and 'satellite' as receiver",
    )
    s.set_defaults(func=_serve)

    b = csub.add_parser("bench", help="samples/s through the full chain, per link and per block")
    b.add_argument("--config", metavar="FILE", help="TOML config (default: link 'c1')")
    b.add_argument(
        "--bandwidth-hz", type=_positive, help="sub-channel B of the default link [Hz] (5e6)"
    )
    b.add_argument(
        "--modcod",
        type=str.lower,
        default=None,
        help="fix the MODCOD (default: ACM at the best pass)",
    )
    b.add_argument("--frames", type=_count, default=60, help="frames per link (default 60)")
    b.add_argument("--no-reference", action="store_true", help="skip the stock GNU Radio chain")
    b.add_argument("--json", action="store_true", help="JSON on stdout")
    b.set_defaults(func=_bench)

    f = csub.add_parser(
        "per", help="frame error rate vs Es/N0 per MODCOD through the emulator vs reference"
    )
    f.add_argument("--modcod", type=str.lower, default="qpsk-1/2", help="a MODCOD name, or 'all'")
    f.add_argument(
        "--esn0-db", metavar="LIST", help="comma-separated Es/N0 values [dB] (default: search)"
    )
    f.add_argument("--frames", type=_count, default=100, help="frames per point (default 100)")
    f.add_argument(
        "--doppler-hz",
        type=finite_number,
        default=300.0,
        help="carrier offset the receiver must remove [Hz] (default 300)",
    )
    f.add_argument("--bandwidth-hz", type=_positive, default=5.0e6, help="B = f_s [Hz]")
    f.add_argument("--rolloff", type=float, default=0.05, help="RRC roll-off α")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--json", action="store_true", help="JSON on stdout")
    f.add_argument("--plot", metavar="FILE.png", type=png_path, help="write the curves to a PNG")
    f.set_defaults(func=_per)


def _load(path: str | None, bandwidth_hz: float | None = None, pair: bool = True) -> Any:
    """The config file, or the standalone link ``c1`` (with ``pair``: and its feedback link
    ``c1-down``), with the sub-channel bandwidth ``bandwidth_hz`` if given."""
    from flowgraphs.config import load_config, parse_config
    from nodes.zmq_link import LinkEndpoints
    from testbed.commands.transfer import emulator_link_table

    if path is not None:
        if bandwidth_hz is not None:
            raise UserError("--bandwidth-hz applies to the default link; set it in the config")
        return load_config(path)
    ids = ("c1", "c1-down") if pair else ("c1",)
    tables = []
    for i, lid in enumerate(ids):
        t = emulator_link_table(lid, LinkEndpoints.default(lid), 1 + i)
        if bandwidth_hz is not None:
            t["params"] = {"bandwidth_hz": bandwidth_hz}
        tables.append(t)
    return parse_config({"emulator": {"stats_interval_s": 0}, "link": tables}, "<defaults>")


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from flowgraphs.serve import run

    cfg = _load(args.config)
    if args.keys is not None:
        if args.config is not None:
            raise UserError(
                "--keys applies to the default links; set [emulator] keys in the config"
            )
        # the standalone pair: c1 sends on c1 and hears c1-down; the receiver is 'satellite'
        nodes = {"c1": ("c1", "satellite"), "c1-down": ("satellite", "c1")}
        links = tuple(
            dataclasses.replace(lk, tx_node=nodes[lk.id][0], rx_node=nodes[lk.id][1])
            for lk in cfg.links
        )
        cfg = dataclasses.replace(cfg, links=links, keys=args.keys)
    if args.verbose == 0:
        logging.getLogger("flowgraphs").setLevel(logging.INFO)

    def ready(emu: Any) -> None:
        links = {
            lp.cfg.id: {"in": lp.cfg.in_addr, "out": lp.cfg.out_addr, "status": lp.cfg.status_addr}
            for lp in emu.links
        }
        sys.stdout.write(json.dumps({"event": "ready", "links": links}) + "\n")
        sys.stdout.flush()

    try:
        final = run(cfg, on_ready=ready)
    except ValueError as e:
        raise UserError(str(e)) from e
    sys.stdout.write(json.dumps({"event": "stopped", "stats": final}) + "\n")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from flowgraphs import modcod
    from flowgraphs.measure import bench_link, reference_chain

    cfg = _load(args.config, args.bandwidth_hz, pair=False)
    links = list(cfg.links)
    if args.modcod is not None:
        try:
            modcod.by_name(args.modcod)
        except ValueError as e:
            raise UserError(f"--modcod: {e}") from e
        links = [replace(lc, modcod=args.modcod) for lc in links]
    results = [bench_link(lc, args.frames).to_dict() for lc in links]
    out: dict[str, Any] = {"links": results}
    if not args.no_reference:
        lc = links[0]
        ref = reference_chain(lc.sample_rate_hz, lc.symbol_rate_hz, lc.rolloff)
        ref["ratio_link_to_reference_per_core"] = results[0]["msps_per_core"] / ref["msps_per_core"]
        out["reference"] = ref
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    sys.stdout.write(format_bench_markdown(out))
    return 0


def format_bench_markdown(out: dict[str, Any]) -> str:
    """Markdown tables of ``testbed channel bench`` results."""
    results = out["links"]
    lines = [
        "| link | MODCOD | f_s [Msps] | Msps (wall) | Msps per core | × real time per core | "
        "delivered |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['link']} | {r['modcod']} | {r['sample_rate_hz'] / 1e6:g} | "
            f"{r['msps']:.2f} | {r['msps_per_core']:.2f} | {r['realtime_ratio_per_core']:.2f} | "
            f"{r['delivered']}/{r['pdus']} |"
        )
    ref = out.get("reference")
    if ref:
        lines += [
            "",
            f"reference (stock GNU Radio C++): {ref['chain']}: {ref['msps_per_core']:.2f} Msps "
            f"per core; link / reference = {ref['ratio_link_to_reference_per_core']:.2f}",
        ]
    lines += ["", "| block | ns per channel sample (thread CPU) | share |", "|---|---|---|"]
    for r in results[:1]:
        tot = sum(r["per_block_ns"].values()) or 1.0
        for k, v in r["per_block_ns"].items():
            lines.append(f"| {k} | {v:.1f} | {100 * v / tot:.0f} % |")
        lines.append(f"| **sum** | {tot:.1f} | 100 % |")
    return "\n".join(lines) + "\n"


def _parse_list(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise UserError(f"--esn0-db: expected comma-separated numbers, got {text!r}") from e
    if not vals or not all(math.isfinite(v) and -20 <= v <= 60 for v in vals):
        raise UserError("--esn0-db: values must be finite, in -20..60 dB")
    return vals


def _per(args: argparse.Namespace) -> int:
    from flowgraphs import modcod
    from flowgraphs.config import ROLLOFFS

    if args.modcod == "all":
        names = [m.name for m in modcod.MODCODS]
    else:
        try:
            names = [modcod.by_name(args.modcod).name]
        except ValueError as e:
            raise UserError(f"--modcod: {e}") from e
    if not any(abs(args.rolloff - a) < 1e-12 for a in ROLLOFFS):
        raise UserError(f"--rolloff: expected one of {ROLLOFFS}, got {args.rolloff}")
    rs = args.bandwidth_hz / (1 + args.rolloff)
    if not abs(args.doppler_hz) < rs / 64:
        raise UserError(
            f"--doppler-hz must be within the acquisition range ±R_s/64 = ±{rs / 64:.0f} Hz"
        )
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    esn0 = _parse_list(args.esn0_db) if args.esn0_db else None
    from flowgraphs.measure import per_modcod

    rows = []
    for name in names:
        r = per_modcod(
            name,
            esn0,
            args.frames,
            args.seed,
            args.bandwidth_hz,
            rs,
            args.rolloff,
            args.doppler_hz,
        )
        rows.append(r)
        if not args.json:
            th = r["esn0_db_at_fer_1e-2"]
            sys.stderr.write(
                f"per: {name}: FER 1e-2 at {'n/a' if th is None else f'{th:.2f}'} dB "
                f"(reference {r['reference_esn0_db']:.2f} dB)\n"
            )
    res = {"modcods": rows, "reference": modcod.REFERENCE_SOURCE}
    if args.plot:
        _plot(res, args.plot)
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
        return 0
    lines = [
        "| MODCOD | Es/N0 @ FER 1e-2 [dB] | reference [dB] | Δ [dB] | bit/symbol |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        th = r["esn0_db_at_fer_1e-2"]
        d = "n/a" if th is None else f"{th - r['reference_esn0_db']:+.2f}"
        lines.append(
            f"| {r['name']} | {'n/a' if th is None else f'{th:.2f}'} | "
            f"{r['reference_esn0_db']:.2f} | {d} | {r['spectral_efficiency']:.3f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _plot(res: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in res["modcods"]:
        x = [p["esn0_db"] for p in r["points"]]
        fer = [max(p["fer"], 0.5 / p["frames"]) for p in r["points"]]
        (line,) = ax.semilogy(x, fer, "o-", ms=3, label=r["name"])
        ax.axvline(r["reference_esn0_db"], color=line.get_color(), ls=":", lw=0.8)
    ax.axhline(1e-2, color="k", lw=0.6)
    ax.set_xlabel("Es/N0 [dB]")
    ax.set_ylabel("FER (full 64800-bit frames)")
    ax.set_ylim(1e-3, 1.1)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("FER through the emulator; dotted: EN 302 307-1 Table 13 (PER 1e-7)")
    if len(res["modcods"]) <= 12:
        ax.legend(fontsize=7, ncol=2)
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise UserError(f"--plot: cannot write {path}: {e.strerror}") from e
    finally:
        plt.close(fig)

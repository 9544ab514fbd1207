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

from testbed.errors import UserError

__all__ = ["register"]

_MODS = ("bpsk", "qpsk", "8psk", "16qam")
_DEFAULT_SNR = {
    "bpsk": "5,6,7,8,9,10",
    "qpsk": "8,9,10,11,12,13",
    "8psk": "13,14,15,16,17,18",
    "16qam": "15,16,17,18,19,20",
}

_PER_SYMBOL_RATE_HZ = 250.0e3  # symbol rate of `channel per` (f_s = 1 MHz) [Hz]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``channel`` command group."""
    p = sub.add_parser("channel", help="GNU Radio channel emulator (serve, bench, per)")
    csub = p.add_subparsers(dest="channel_command", metavar="SUBCOMMAND")
    csub.required = True

    s = csub.add_parser("serve", help="run the emulator process (ZeroMQ PDUs in/out)")
    s.add_argument("--config", metavar="FILE", help="TOML config (default: one link 'c1')")
    s.set_defaults(func=_serve)

    b = csub.add_parser("bench", help="samples/s through the full chain, per link and per block")
    b.add_argument("--config", metavar="FILE", help="TOML config (default: one link 'c1')")
    b.add_argument("--bursts", type=int, default=40, help="bursts per link (default 40)")
    b.add_argument("--payload-bytes", type=int, default=4000, help="payload per burst")
    b.add_argument("--json", action="store_true", help="JSON on stdout")
    b.set_defaults(func=_bench)

    f = csub.add_parser("per", help="frame error rate vs Es/N0 through the emulator vs theory")
    f.add_argument("--modulation", choices=_MODS, default="qpsk")
    f.add_argument("--snr-db", metavar="LIST", help="comma-separated Es/N0 values [dB]")
    f.add_argument(
        "--rician-k-db",
        type=float,
        default=None,
        metavar="K",
        help="Rician K [dB] (block fading); default AWGN",
    )
    f.add_argument("--frames", type=int, default=200, help="frames per point (default 200)")
    f.add_argument("--payload-bytes", type=int, default=256, help="payload per frame")
    f.add_argument(
        "--doppler-hz",
        type=float,
        default=3000.0,
        help="carrier offset the receiver must remove (default 3000)",
    )
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--json", action="store_true", help="JSON on stdout")
    f.add_argument("--plot", metavar="FILE.png", help="write the curves to a PNG")
    f.set_defaults(func=_per)


def _load(path: str | None) -> Any:
    from flowgraphs.config import load_config, parse_config

    if path is None:
        return parse_config({"link": [{"id": "c1", "seed": 1}]}, "<defaults>")
    return load_config(path)


def _serve(args: argparse.Namespace) -> int:
    from flowgraphs.serve import run

    cfg = _load(args.config)
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
    from flowgraphs.measure import bench_link

    if args.bursts < 1 or args.payload_bytes < 1 or args.payload_bytes > 65531:
        raise UserError("--bursts must be >= 1 and --payload-bytes in 1..65531")
    cfg = _load(args.config)
    results = [bench_link(lc, args.bursts, args.payload_bytes).to_dict() for lc in cfg.links]
    if args.json:
        sys.stdout.write(json.dumps({"links": results}, indent=2) + "\n")
        return 0
    sys.stdout.write(format_bench_markdown(results))
    return 0


def format_bench_markdown(results: list[dict[str, Any]]) -> str:
    """Markdown tables of :func:`flowgraphs.measure.bench_link` results."""
    lines = [
        "| link | modulation | f_s [Msps] | Msps (wall) | Msps per core | × real time | "
        "× real time @ 5 MHz | delivered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['link']} | {r['modulation']} | {r['sample_rate_hz'] / 1e6:g} | "
            f"{r['msps']:.2f} | {r['msps_per_core']:.2f} | {r['realtime_ratio']:.2f} | "
            f"{r['realtime_ratio_5mhz']:.2f} | {r['delivered']}/{r['bursts']} |"
        )
    lines += ["", "| block | ns per channel sample | share |", "|---|---|---|"]
    for r in results[:1]:
        tot = sum(r["per_block_ns"].values())
        for k, v in r["per_block_ns"].items():
            lines.append(f"| {k} | {v:.1f} | {100 * v / tot:.0f} % |")
        lines.append(f"| **sum (one thread)** | {tot:.1f} | 100 % |")
    return "\n".join(lines) + "\n"


def _parse_list(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise UserError(f"--snr-db: expected comma-separated numbers, got {text!r}") from e
    if not vals or not all(math.isfinite(v) and -20 <= v <= 60 for v in vals):
        raise UserError("--snr-db: values must be finite, in -20..60 dB")
    return vals


def _per(args: argparse.Namespace) -> int:
    default = _DEFAULT_SNR[args.modulation]
    if args.rician_k_db is not None:  # fading needs a wider range: +0 … +15 dB
        lo = float(default.split(",")[0])
        default = ",".join(f"{lo + d:g}" for d in range(0, 16, 3))
    snr = _parse_list(args.snr_db or default)
    if args.frames < 1 or not 1 <= args.payload_bytes <= 65531:
        raise UserError("--frames must be >= 1 and --payload-bytes in 1..65531")
    if args.rician_k_db is not None and not math.isfinite(args.rician_k_db):
        raise UserError("--rician-k-db must be finite")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    half_rs = _PER_SYMBOL_RATE_HZ / 2
    if not math.isfinite(args.doppler_hz) or abs(args.doppler_hz) >= half_rs:
        raise UserError(
            f"--doppler-hz must be finite with |f| < R_s/2 = {half_rs:g} Hz, got {args.doppler_hz}"
        )
    from flowgraphs.measure import per_curve

    res = per_curve(
        args.modulation,
        snr,
        args.frames,
        args.payload_bytes,
        args.rician_k_db,
        doppler_hz=args.doppler_hz,
        seed=args.seed,
        symbol_rate_hz=_PER_SYMBOL_RATE_HZ,
    )
    if args.plot:
        _plot(res, args.plot)
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
        return 0
    chan = "AWGN" if res["rician_k_db"] is None else f"Rician K={res['rician_k_db']:g} dB"
    lines = [
        f"FER vs Es/N0, {res['modulation']}, {res['payload_bytes']} B payload "
        f"({res['frame_bits']} bits with CRC), {chan}",
        f"theory: {res['formula']}",
        "| Es/N0 [dB] | frames | FER measured | FER theory |",
        "|---|---|---|---|",
    ]
    for p in res["points"]:
        lines.append(
            f"| {p['esn0_db']:g} | {p['frames']} | {p['fer']:.4f} | {p['fer_theory']:.4f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _plot(res: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from channel import theory

    x = [p["esn0_db"] for p in res["points"]]
    fer = [max(p["fer"], 0.5 / p["frames"]) for p in res["points"]]
    xs = np.linspace(min(x) - 1, max(x) + 1, 200)
    n_bits = res["frame_bits"]
    if res["rician_k_db"] is None:
        ft = theory.fer_awgn(res["modulation"], xs, n_bits)
    else:
        ft = theory.fer_rician(res["modulation"], xs, n_bits, res["rician_k_db"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(xs, ft, "-", label="theory")
    ax.semilogy(x, fer, "o", label="emulator")
    ax.set_xlabel("Es/N0 [dB]")
    ax.set_ylabel("FER")
    ax.set_ylim(1e-3, 1.1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"{res['modulation']}, {res['payload_bytes']} B")
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise UserError(f"--plot: cannot write {path}: {e.strerror}") from e
    finally:
        plt.close(fig)

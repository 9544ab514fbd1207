"""``testbed send`` and ``testbed receive``: reliable file transfer through the emulator.

``testbed receive --dir DIR`` runs a standalone receiver: PDUs from the uplink's ``out``
endpoint, replies (NAKs, FINISHED) into the downlink's ``in``. Accepted payloads appear in
``DIR/accepted/``; counters go to ``DIR/receiver_stats.json``.

``testbed send FILE`` pushes one file through the emulator (a running one, or one it starts
together with a receiver) and prints the upload record. Links are named ``<link>`` (uplink)
and ``<link>-down`` (feedback path), with the emulator's default endpoints
``ipc:///tmp/satfl-<id>-{in,out,status}`` unless given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from flowgraphs.frame import BITS_PER_SYMBOL
from testbed.commands.link import finite_number
from testbed.errors import EXIT_RUNTIME, UserError

__all__ = ["register", "send_file"]

log = logging.getLogger(__name__)


def _endpoints(link: str, args: argparse.Namespace, prefix: str) -> Any:
    from nodes.zmq_link import LinkEndpoints

    d = LinkEndpoints.default(link)
    get = lambda k, dv: getattr(args, f"{prefix}_{k}", None) or dv  # noqa: E731
    return LinkEndpoints(get("in", d.in_addr), get("out", d.out_addr), get("status", d.status_addr))


def _receive(args: argparse.Namespace) -> int:
    _check_endpoints(args)
    from nodes.receiver import ReceiverConfig, ReceiverEngine
    from nodes.store import ReceiverStore
    from nodes.zmq_link import serve_receiver

    up = _endpoints(args.link, args, "up")
    down = _endpoints(f"{args.link}-down", args, "down")
    try:
        cfg = ReceiverConfig(
            max_payload_bytes=int(args.max_payload_mb * 1e6),
            frame_bytes=args.frame_bytes,
            supersede=args.supersede,
        )
    except ValueError as e:
        raise UserError(str(e)) from e
    store = ReceiverStore(args.dir)
    engine = ReceiverEngine(store, cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stats_path = Path(args.dir) / "receiver_stats.json"

    def dump() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(engine.counters), indent=1))
        os.replace(tmp, stats_path)

    def periodic() -> None:
        while not stop.wait(1.0):
            dump()

    threading.Thread(target=periodic, daemon=True).start()
    log.info("receiver on %s → replies to %s; dir %s", up.out_addr, down.in_addr, args.dir)
    counters = serve_receiver(
        engine, up.out_addr, down.in_addr, down.status_addr, node_id=args.node_id, stop=stop
    )
    dump()
    if args.json:
        sys.stdout.write(
            json.dumps({"counters": dict(counters), "accepted": store.accepted()}, indent=2) + "\n"
        )
    return 0


def send_file(
    path: Path,
    link: str,
    sender: str,
    round_: int,
    fragment_size: int,
    start_s: float,
    windows: list[tuple[float, float]] | None,
    up: Any,
    down: Any,
    bitrate_bps: float,
    deadline_s: float | None,
    credit: int = 8,
    geometry: Any = None,
) -> dict[str, Any]:
    """Send one file through the emulator; returns the upload record as a dict.

    With ``geometry`` (the uplink's :class:`channel.LinkGeometry`), the record also holds
    ``predicted_shannon_s``: the pass-integrated Shannon time for the same bytes from the
    same first transmission (:func:`channel.time_to_deliver_s`).
    """
    from nodes.payload import manifest_for, new_transfer_id
    from nodes.sender import SenderConfig, SenderDriver, SenderEngine
    from nodes.zmq_link import EmulatorSenderLink

    data = path.read_bytes()
    m = manifest_for(data, sender, round_, fragment_size, name=path.name, created_s=start_s)
    link_obj = EmulatorSenderLink(up, down, src=sender, bitrate_bps=bitrate_bps)
    try:
        drv = SenderDriver(
            SenderEngine(new_transfer_id(), m, data),
            link_obj,
            SenderConfig(credit=credit),
            windows=windows,
            start_s=start_s,
        )
        rec = drv.run(deadline_s=deadline_s).to_dict()
    finally:
        link_obj.close()
    rec["link"] = link
    if geometry is not None:
        from channel import time_to_deliver_s

        rec["predicted_shannon_s"] = time_to_deliver_s(geometry, rec["first_tx_s"], len(data))
    return rec


def _emulator_config(link: str, args: argparse.Namespace, eps: dict[str, Any]) -> str:
    lines = ["[emulator]", "stats_interval_s = 0", ""]
    for lid in (link, f"{link}-down"):
        e = eps[lid]
        lines += [
            "[[link]]",
            f'id = "{lid}"',
            f'in = "{e.in_addr}"',
            f'out = "{e.out_addr}"',
            f'status = "{e.status_addr}"',
            f'modulation = "{args.modulation}"',
            f"sample_rate_hz = {args.sample_rate_hz}",
            f"symbol_rate_hz = {args.symbol_rate_hz}",
            f"seed = {args.seed + (lid != link)}",
            f"fading_max_doppler_hz = {args.fading_max_doppler_hz}",
            "",
            "[link.params]",
            f"min_elevation_deg = {args.min_elevation_deg}",
            f"rician_k_db = {args.rician_k_db}",
            "",
        ]
    return "\n".join(lines)


def _wait_for_emulator(
    proc: subprocess.Popen, addrs: list[str], log: Path, timeout_s: float
) -> None:
    """Until the emulator has bound ``addrs`` (fresh ipc paths: their files appear on bind)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            err = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
            raise UserError(
                f"the emulator exited with status {proc.returncode}: "
                f"{err[-1] if err else 'no message'}"
            )
        if all(Path(a[len("ipc://") :]).exists() for a in addrs):
            return
        time.sleep(0.2)
    raise UserError(f"the emulator did not come up within {timeout_s:g} s; see {log}")


def _check_endpoints(args: argparse.Namespace) -> None:
    for d in ("up", "down"):
        for k in ("in", "out", "status"):
            v = getattr(args, f"{d}_{k}", None)
            if v is not None and not v.startswith(("ipc://", "tcp://")):
                raise UserError(f"--{d}-{k}: expected an ipc:// or tcp:// endpoint, got {v!r}")


def _send(args: argparse.Namespace) -> int:
    import zmq

    from channel import WindowError
    from nodes.sender import TransferError
    from nodes.wire import WireError

    _check_endpoints(args)
    try:
        return _send_impl(args)
    except (WireError, WindowError) as e:
        raise UserError(str(e)) from e
    except zmq.ZMQError as e:
        raise UserError(f"ZeroMQ: {e}") from e
    except TransferError as e:
        raise UserError(
            f"{e}: is `testbed channel serve` running with links {args.link!r} "
            f"and {args.link}-down, and a receiver?"
        ) from e


def _send_impl(args: argparse.Namespace) -> int:
    from channel import contact_windows, default_link_geometry

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if not 64 <= args.fragment_size <= 8192:
        raise UserError(f"--fragment-size must be in 64..8192, got {args.fragment_size}")
    from channel import LinkBudgetError, LinkGeometry

    base = default_link_geometry()
    try:
        params = base.params.with_updates(
            min_elevation_deg=args.min_elevation_deg, rician_k_db=args.rician_k_db
        )
    except LinkBudgetError as e:
        raise UserError(str(e)) from e
    # The geometry the self-started emulator builds for this uplink (same params and seed).
    geo = LinkGeometry(base.orbit, base.site, params, seed=args.seed)
    ws = contact_windows(
        geo.orbit, geo.site, 0.0, args.horizon_h * 3600.0, params.min_elevation_deg
    )
    windows = [(w.aos_s, w.los_s) for w in ws]
    if not windows:
        raise UserError("no contact window in the horizon; raise --horizon-h")
    start = windows[0][0] if args.start_s is None else args.start_s
    up = _endpoints(args.link, args, "up")
    down = _endpoints(f"{args.link}-down", args, "down")
    procs: list[subprocess.Popen] = []
    tmpdir = None
    try:
        if args.start_emulator:
            # Endpoints unique to this invocation: no collision with a running emulator,
            # another send, or socket files a killed process left behind.
            tmpdir = tempfile.mkdtemp(prefix="satfl-send-")
            from nodes.zmq_link import LinkEndpoints

            eps = {
                lid: LinkEndpoints(*(f"ipc://{tmpdir}/{lid}-{k}" for k in ("in", "out", "status")))
                for lid in (args.link, f"{args.link}-down")
            }
            up, down = eps[args.link], eps[f"{args.link}-down"]
            cfg = Path(tmpdir) / "emulator.toml"
            cfg.write_text(_emulator_config(args.link, args, eps))
            log_path = Path(tmpdir) / "emulator.log"
            with open(log_path, "wb") as logf:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "testbed.cli",
                            "channel",
                            "serve",
                            "--config",
                            str(cfg),
                        ],
                        stdout=logf,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait_for_emulator(procs[0], [e.in_addr for e in eps.values()], log_path, 60.0)
            rdir = args.receiver_dir or str(Path(tmpdir) / "receiver")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "testbed.cli",
                        "receive",
                        "--dir",
                        rdir,
                        "--link",
                        args.link,
                        "--up-out",
                        up.out_addr,
                        "--down-in",
                        down.in_addr,
                        "--down-status",
                        down.status_addr,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        bitrate = args.symbol_rate_hz * BITS_PER_SYMBOL.get(args.modulation, 2)
        rec = send_file(
            path,
            args.link,
            args.sender,
            args.round,
            args.fragment_size,
            start,
            windows,
            up,
            down,
            bitrate,
            args.deadline_s,
            geometry=geo,
        )
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    if args.records:
        with open(args.records, "a") as f:
            f.write(json.dumps(rec) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(rec, indent=2) + "\n")
    else:
        up_t = rec["upload_time_s"]
        sys.stdout.write(
            f"{rec['status']}: {rec['size_bytes']} B in "
            f"{'n/a' if up_t is None else f'{up_t:.3f} s'} emulated "
            f"({rec['wall_s']:.2f} s wall), {rec['passes_used']} pass(es), "
            f"{rec['fragments_sent']} fragments sent ({rec['fragments_retransmitted']} resent); "
            f"Shannon prediction {_fmt_s(rec.get('predicted_shannon_s'))}\n"
        )
    return 0 if rec["status"] == "accepted" else EXIT_RUNTIME


def _positive(text: str) -> float:
    v = finite_number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 2**31:
        raise argparse.ArgumentTypeError(f"must be in 0..2147483647, got {text!r}")
    return v


def _fmt_s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} s"


def _add_endpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("endpoints (default ipc:///tmp/satfl-<link>[-down]-{in,out,status})")
    for d in ("up", "down"):
        for k in ("in", "out", "status"):
            g.add_argument(f"--{d}-{k}", dest=f"{d}_{k}", metavar="ADDR")


def register(sub: Any) -> None:
    """Add ``testbed send`` and ``testbed receive``."""
    r = sub.add_parser("receive", help="run a standalone payload receiver")
    r.add_argument("--dir", required=True, help="receiver directory (accepted/ inside)")
    r.add_argument("--link", default="c1", help="uplink id (replies go to <link>-down)")
    r.add_argument("--node-id", default="satellite")
    r.add_argument("--max-payload-mb", type=float, default=64.0)
    r.add_argument(
        "--frame-bytes",
        type=int,
        default=8192 + 128,
        help="largest message accepted (default fits the largest fragment)",
    )
    r.add_argument("--supersede", choices=("cancel", "keep"), default="cancel")
    r.add_argument("--json", action="store_true", help="print counters and accepted on exit")
    _add_endpoint_args(r)
    r.set_defaults(func=_receive)

    s = sub.add_parser("send", help="push a file through the emulator; print the upload record")
    s.add_argument("file")
    s.add_argument("--link", default="c1")
    s.add_argument("--sender", default="c1", help="sender id in the manifest")
    s.add_argument("--round", type=_nonneg_int, default=0)
    s.add_argument("--fragment-size", type=int, default=1024, help="payload bytes per frame")
    s.add_argument("--start-s", type=finite_number, help="emulated start (default: first AOS)")
    s.add_argument("--deadline-s", type=float, help="give up at this emulated time")
    s.add_argument("--horizon-h", type=_positive, default=24.0, help="contact windows to use [h]")
    s.add_argument(
        "--start-emulator",
        action="store_true",
        help="start an emulator and a receiver for this transfer",
    )
    s.add_argument("--receiver-dir", help="receiver directory (with --start-emulator)")
    s.add_argument("--records", help="append the upload record (JSON line) to this file")
    s.add_argument("--json", action="store_true")
    g = s.add_argument_group("self-started emulator")
    g.add_argument("--modulation", default="qpsk", choices=("bpsk", "qpsk", "8psk", "16qam"))
    g.add_argument("--sample-rate-hz", type=_positive, default=1.0e6)
    g.add_argument("--symbol-rate-hz", type=_positive, default=250.0e3)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--fading-max-doppler-hz", type=float, default=100.0)
    g.add_argument("--min-elevation-deg", type=float, default=10.0)
    g.add_argument("--rician-k-db", type=float, default=10.0)
    _add_endpoint_args(s)
    s.set_defaults(func=_send)

"""``testbed send`` and ``testbed receive``: reliable file transfer through the emulator.

``testbed receive --dir DIR`` runs a standalone receiver: PDUs from the uplink's ``out``
endpoint, replies (NAKs, FINISHED) and the forwarded safe times into the downlink's ``in``.
Accepted payloads appear in ``DIR/accepted/``; counters go to ``DIR/receiver_stats.json``.

``testbed send FILE`` pushes one file through the emulator (a running one — ``testbed channel
serve`` with no config serves ``c1`` and ``c1-down`` — or one it starts together with a
receiver, ``--start-emulator``) and prints the upload record. Links are named ``<link>``
(uplink) and ``<link>-down`` (feedback), with the emulator's default endpoints
``ipc:///tmp/satfl-<id>-{in,out,status}`` unless given. The link settings (bandwidth,
roll-off, MODCOD policy, orbit, seed, …) must be the running emulator's; ``send`` uses them
for the contact windows, its timers and the capacities it compares the goodput with.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from testbed.commands.link import finite_number
from testbed.errors import EXIT_RUNTIME, UserError
from testbed.procs import die_with_parent, terminate_as_interrupt

__all__ = [
    "emulator_link_table",
    "emulator_toml",
    "register",
    "send_file",
    "standalone_link_config",
]

log = logging.getLogger(__name__)


def _endpoints(link: str, args: argparse.Namespace, prefix: str) -> Any:
    from nodes.zmq_link import LinkEndpoints

    d = LinkEndpoints.default(link)
    get = lambda k, dv: getattr(args, f"{prefix}_{k}", None) or dv  # noqa: E731
    return LinkEndpoints(get("in", d.in_addr), get("out", d.out_addr), get("status", d.status_addr))


def _keyring(directory: str | None, me: str) -> Any:
    """The keyring of node ``me`` in ``directory`` (None without one); one-line errors."""
    if directory is None:
        return None
    from flowgraphs.keys import Keyring, KeysError

    try:
        return Keyring(directory, me)
    except KeysError as e:
        raise UserError(f"--keys: {e}") from None


def _receive(args: argparse.Namespace) -> int:
    _check_endpoints(args)
    from testbed.paths import check_output_path

    check_output_path(args.dir, "--dir", has_parents_flag=False)
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
    try:
        store = ReceiverStore(args.dir)
    except OSError as e:
        raise UserError(
            f"--dir {args.dir}: cannot use it as a receiver directory: {e.strerror}"
        ) from None
    keys = _keyring(args.keys, args.node_id)
    engine = ReceiverEngine(store, cfg, keys=keys)
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
    if not args.json:
        sys.stderr.write(
            f"receive: listening on {up.out_addr}, replying on {down.in_addr}; accepted files "
            f"go to {Path(args.dir) / 'accepted'} (Ctrl-C stops)\n"
        )
    counters = serve_receiver(
        engine,
        up.out_addr,
        down.in_addr,
        down.status_addr,
        node_id=args.node_id,
        stop=stop,
        keys=keys,
        emulator=args.emulator_node,
    )
    dump()
    if args.json:
        sys.stdout.write(
            json.dumps({"counters": dict(counters), "accepted": store.accepted()}, indent=2) + "\n"
        )
    return 0


def emulator_link_table(
    link_id: str,
    endpoints: Any,
    seed: int,
    args: argparse.Namespace | None = None,
    nodes: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One ``[[link]]`` table for the standalone link (``send``'s settings or defaults);
    ``nodes`` = (tx_node, rx_node) for CURVE."""
    a = args
    t: dict[str, Any] = {
        "id": link_id,
        "in": endpoints.in_addr,
        "out": endpoints.out_addr,
        "status": endpoints.status_addr,
        "seed": seed,
    }
    if nodes is not None:
        t["tx_node"], t["rx_node"] = nodes
    if a is not None:
        t.update(
            modcod=a.modcod,
            acm_margin_db=a.acm_margin_db,
            acm_prediction=a.acm_prediction,
            rolloff=a.rolloff,
            fading_max_doppler_hz=a.fading_max_doppler_hz,
            doppler_precomp=a.doppler_precomp,
            residual_hz=a.residual_hz,
        )
        if a.sample_rate_hz is not None:
            t["sample_rate_hz"] = a.sample_rate_hz
        t["params"] = {
            "bandwidth_hz": a.bandwidth_hz,
            "min_elevation_deg": a.min_elevation_deg,
            "rician_k_db": a.rician_k_db,
        }
    return t


def standalone_link_config(
    link: str, args: argparse.Namespace | None, eps: dict[str, Any], seed: int = 1
) -> Any:
    """The emulator config of the standalone pair ``<link>`` + ``<link>-down``."""
    from flowgraphs.config import parse_config

    links = [
        emulator_link_table(link, eps[link], seed, args),
        emulator_link_table(f"{link}-down", eps[f"{link}-down"], seed + 1, args),
    ]
    return parse_config({"emulator": {"stats_interval_s": 0}, "link": links}, "<send>")


def emulator_toml(cfg_links: list[dict[str, Any]], keys: str | None = None) -> str:
    """The emulator config file (TOML) of ``[[link]]`` tables from :func:`emulator_link_table`
    (with ``keys``: CURVE on every endpoint)."""
    lines = ["[emulator]", "stats_interval_s = 0"]
    if keys is not None:
        lines.append(f"keys = {json.dumps(keys)}")
    lines.append("")
    for t in cfg_links:
        lines.append("[[link]]")
        for k, v in t.items():
            if k != "params":
                lines.append(f"{k} = {json.dumps(v)}")
        lines.append("[link.params]")
        for k, v in t.get("params", {}).items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


def send_file(
    path: Path,
    lc: Any,
    sender: str,
    round_: int,
    fragment_size: int,
    start_s: float,
    windows: list[tuple[float, float]] | None,
    up: Any,
    down: Any,
    deadline_s: float | None,
    credit: int = 32,
    on_wait: Any = None,
    on_join: Any = None,
    keys: Any = None,
    emulator: str = "channel",
) -> dict[str, Any]:
    """Send one file through the emulator; returns the upload record as a dict.

    ``lc`` is the uplink's :class:`flowgraphs.config.LinkConfig`: its geometry gives the
    Shannon references (``predicted_shannon_s``, :func:`nodes.link_profile.capacity_fields`),
    its modem settings the sender's timers. With ``keys`` (this node's
    :class:`flowgraphs.keys.Keyring`) every socket is a CURVE client of the node ``emulator``
    and the manifest and any CANCEL are signed. The transfer starts at ``start_s`` or, on an
    emulator whose link is already past it (earlier transfers), at the link's clock
    (``on_join(t_link)`` is called then): emulated time never runs backwards on a link.
    """
    from channel import time_to_deliver_s
    from nodes.link_profile import capacity_fields, sender_config
    from nodes.payload import derived_transfer_id, manifest_for
    from nodes.sender import SenderDriver, SenderEngine
    from nodes.signing import signed
    from nodes.zmq_link import EmulatorSenderLink

    data = path.read_bytes()
    # the transfer id depends on the requested start, not on the link's clock: the same file
    # sent again is recognised by the receiver as the same transfer
    m = manifest_for(data, sender, round_, fragment_size, name=path.name, created_s=start_s)
    tid = derived_transfer_id(m)
    m, cancel_signer = signed(tid, m, keys)
    link_obj = EmulatorSenderLink(up, down, src=sender, keys=keys, emulator=emulator)
    geo = lc.geometry()
    drv = None
    try:
        try:
            t_link = link_obj.link_clock()
        except TimeoutError as e:
            raise UserError(f"{up.in_addr}: {e}") from None
        if t_link > 0.0 and t_link >= start_s:
            # just after it: the link's safe time and clock then advance with this transfer's
            # first PDU, and their markers (sent only when they advance) reach this session
            start_s = t_link + 1e-6
            if on_join is not None:
                on_join(start_s)
        drv = SenderDriver(
            SenderEngine(tid, m, data, cancel_signer),
            link_obj,
            sender_config(lc, credit=credit, fragment_size=fragment_size),
            windows=windows,
            start_s=start_s,
            on_wait=on_wait,
        )
        rec = drv.run(deadline_s=deadline_s).to_dict()
    finally:
        if drv is not None:
            # tell the emulator nothing more comes from here, also after an interrupt (a frame
            # waiting for a promise would hold the link for the next transfer)
            ts = [t for t in (drv.now, drv.first_tx, start_s) if t is not None and math.isfinite(t)]
            link_obj.advance(max(ts) + 1.0)
        link_obj.close()
    rec["link"] = lc.id
    rec["predicted_shannon_s"] = time_to_deliver_s(geo, rec["first_tx_s"], len(data))
    rec.update(capacity_fields(rec, geo, lc))
    return rec


def _wait_for_emulator(
    proc: subprocess.Popen, addrs: list[str], log_path: Path, timeout_s: float
) -> None:
    """Until the emulator has bound ``addrs`` (fresh ipc paths: their files appear on bind)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            err = (
                log_path.read_text(errors="replace").strip().splitlines()
                if log_path.exists()
                else []
            )
            raise UserError(
                f"the emulator exited with status {proc.returncode}: "
                f"{err[-1] if err else 'no message'}"
            )
        if all(Path(a[len("ipc://") :]).exists() for a in addrs):
            return
        time.sleep(0.2)
    raise UserError(f"the emulator did not come up within {timeout_s:g} s; see {log_path}")


def _check_endpoints(args: argparse.Namespace) -> None:
    for d in ("up", "down"):
        for k in ("in", "out", "status"):
            v = getattr(args, f"{d}_{k}", None)
            if v is not None and not v.startswith(("ipc://", "tcp://")):
                raise UserError(f"--{d}-{k}: expected an ipc:// or tcp:// endpoint, got {v!r}")


def _send(args: argparse.Namespace) -> int:
    import zmq

    from channel import WindowError
    from flowgraphs.errors import ConfigError
    from nodes.sender import TransferError
    from nodes.wire import WireError

    _check_endpoints(args)
    terminate_as_interrupt()  # SIGTERM: children stopped, temporary directory removed
    try:
        return _send_impl(args)
    except (WireError, WindowError, ConfigError) as e:
        raise UserError(str(e)) from e
    except zmq.ZMQError as e:
        raise UserError(f"ZeroMQ: {e}") from e
    except TransferError as e:
        raise UserError(
            f"{e} (links {args.link!r} and {args.link}-down: start `testbed channel serve` "
            "and `testbed receive --dir DIR`, or use --start-emulator)"
        ) from e


def _remove_stale_send_dirs() -> int:
    """Remove ``satfl-send-*`` temp dirs of ours whose owner process is gone (a ``send`` killed
    with SIGKILL cannot clean up after itself); returns how many were removed."""
    n = 0
    for d in Path(tempfile.gettempdir()).glob("satfl-send-*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        except PermissionError:
            continue
    if n:
        log.info("removed %d stale satfl-send-* directories", n)
    return n


def _send_impl(args: argparse.Namespace) -> int:
    from channel import contact_windows
    from nodes.zmq_link import LinkEndpoints

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if not 64 <= args.fragment_size <= 8192:
        raise UserError(f"--fragment-size must be in 64..8192, got {args.fragment_size}")
    up = _endpoints(args.link, args, "up")
    down = _endpoints(f"{args.link}-down", args, "down")
    eps = {args.link: up, f"{args.link}-down": down}
    cfg = standalone_link_config(args.link, args, eps, args.seed)
    lc = cfg.links[0]
    geo = lc.geometry()
    ws = contact_windows(
        geo.orbit, geo.site, 0.0, args.horizon_h * 3600.0, lc.params.min_elevation_deg
    )
    windows = [(w.aos_s, w.los_s) for w in ws]
    if not windows:
        raise UserError("no contact window in the horizon; raise --horizon-h")
    start = windows[0][0] if args.start_s is None else args.start_s
    procs: list[subprocess.Popen] = []
    tmpdir = None
    from nodes.signing import signer_covers

    if (args.keys or args.start_emulator) and not signer_covers(
        args.node or args.sender, args.sender
    ):
        raise UserError(f"--node {args.node!r} may not sign for --sender {args.sender!r}")
    keys = _keyring(args.keys, args.node or args.sender)
    try:
        if args.start_emulator:
            # Endpoints unique to this invocation: no collision with a running emulator,
            # another send, or socket files a killed process left behind.
            _remove_stale_send_dirs()
            tmpdir = tempfile.mkdtemp(prefix="satfl-send-")
            (Path(tmpdir) / "owner.pid").write_text(str(os.getpid()))
            eps = {
                lid: LinkEndpoints(*(f"ipc://{tmpdir}/{lid}-{k}" for k in ("in", "out", "status")))
                for lid in (args.link, f"{args.link}-down")
            }
            up, down = eps[args.link], eps[f"{args.link}-down"]
            node, rx = args.node or args.sender, "satellite"
            if args.keys is None:  # fresh keys for this transfer's three nodes
                from flowgraphs.keys import create_keys

                args.keys = str(Path(tmpdir) / "keys")
                create_keys(args.keys, ["channel", rx, node] if node != rx else ["channel", rx])
            keys = _keyring(args.keys, node)
            cfg_path = Path(tmpdir) / "emulator.toml"
            cfg_path.write_text(
                emulator_toml(
                    [
                        emulator_link_table(args.link, up, args.seed, args, (node, rx)),
                        emulator_link_table(
                            f"{args.link}-down", down, args.seed + 1, args, (rx, node)
                        ),
                    ],
                    str(Path(args.keys).absolute()),
                )
            )
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
                            str(cfg_path),
                        ],
                        stdout=logf,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
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
                        "--keys",
                        str(args.keys),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            )

        def on_wait(t_from: float, aos: float) -> None:
            if not args.json:
                sys.stderr.write(
                    f"send: outside a contact window at t = {t_from:.1f} s; "
                    f"waiting for AOS at t = {aos:.1f} s (emulated)\n"
                )

        if not args.json and start < windows[0][0] + 1e-9 and args.start_s is None:
            sys.stderr.write(f"send: first AOS at t = {start:.1f} s (emulated); sending\n")

        def on_join(t_link: float) -> None:
            if not args.json:
                sys.stderr.write(
                    f"send: the link's clock is already at t = {t_link:.3f} s (earlier "
                    "transfers on this emulator); starting there\n"
                )

        rec = send_file(
            path,
            lc,
            args.sender,
            args.round,
            args.fragment_size,
            start,
            windows,
            up,
            down,
            args.deadline_s,
            credit=args.credit,
            on_wait=on_wait,
            on_join=on_join,
            keys=keys,
            emulator=args.emulator_node,
        )
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if tmpdir is not None:  # sockets, config, log and the default receiver directory
            shutil.rmtree(tmpdir, ignore_errors=True)
    if args.records:
        with open(args.records, "a") as f:
            f.write(json.dumps(rec) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(rec, indent=2) + "\n")
    else:
        sys.stdout.write(_summary(rec))
    return 0 if rec["status"] == "accepted" else EXIT_RUNTIME


def _summary(rec: dict[str, Any]) -> str:
    up_t = rec["upload_time_s"]
    if rec.get("already_accepted"):
        return (
            f"accepted: {rec['size_bytes']} B were already on the receiver (committed at "
            f"t = {rec['accepted_s']:.3f} s, before this send began); nothing uploaded, "
            f"confirmed at t = {_fmt_s(rec.get('confirmed_s'))} ({rec['wall_s']:.2f} s wall)\n"
        )
    lines = [
        f"{rec['status']}: {rec['size_bytes']} B in "
        f"{'n/a' if up_t is None else f'{up_t:.3f} s'} emulated ({rec['wall_s']:.2f} s wall), "
        f"{rec['passes_used']} pass(es), {rec['frames']} frames, "
        f"{rec['fragments_sent']} fragments sent ({rec['fragments_retransmitted']} resent)"
    ]
    if rec.get("shannon_bps"):
        lines.append(
            f"goodput {_mbps(rec.get('goodput_bps'))} · MODCODs could carry "
            f"{_mbps(rec.get('modcod_rate_bps'))} · Shannon occupied band "
            f"{_mbps(rec.get('occupied_shannon_bps'))} · Shannon {rec['bandwidth_hz'] / 1e6:g} MHz "
            f"{_mbps(rec.get('shannon_bps'))} → efficiency {rec['efficiency_vs_shannon']:.3f}"
        )
    if rec.get("modcods"):
        mods = ", ".join(f"{k} ×{v}" for k, v in sorted(rec["modcods"].items()))
        lines.append(f"MODCODs: {mods}")
    lines.append(f"Shannon prediction {_fmt_s(rec.get('predicted_shannon_s'))}")
    return "\n".join(lines) + "\n"


def _mbps(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e6:.3f} Mbit/s"


def _positive(text: str) -> float:
    v = finite_number(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= v < 2**31:
        raise argparse.ArgumentTypeError(f"must be in 0..2147483647, got {text!r}")
    return v


def _credit(text: str) -> int:
    v = _nonneg_int(text)
    if not 1 <= v <= 48:
        raise argparse.ArgumentTypeError(f"must be in 1..48, got {text!r}")
    return v


def _fmt_s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f} s"


def _add_key_args(p: argparse.ArgumentParser, note: str) -> None:
    p.add_argument(
        "--keys",
        metavar="DIR",
        help=f"keys directory (testbed keys create): CURVE and signatures; {note}",
    )
    p.add_argument("--emulator-node", default="channel", help="the emulator's node name in --keys")


def _add_endpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("endpoints (default ipc:///tmp/satfl-<link>[-down]-{in,out,status})")
    for d in ("up", "down"):
        for k in ("in", "out", "status"):
            g.add_argument(f"--{d}-{k}", dest=f"{d}_{k}", metavar="ADDR")


def _add_link_args(p: argparse.ArgumentParser) -> None:
    from flowgraphs.config import (
        DEFAULT_FADING_DOPPLER_HZ,
        DEFAULT_RESIDUAL_HZ,
        DEFAULT_ROLLOFF,
        ROLLOFFS,
    )

    g = p.add_argument_group(
        "link (the emulator's settings; --start-emulator starts one with them)"
    )
    g.add_argument("--bandwidth-hz", type=_positive, default=5.0e6, help="sub-channel B [Hz]")
    g.add_argument(
        "--rolloff", type=float, choices=ROLLOFFS, default=DEFAULT_ROLLOFF, help="RRC roll-off α"
    )
    g.add_argument("--sample-rate-hz", type=_positive, help="emulator f_s (default B)")
    g.add_argument(
        "--modcod", type=str.lower, default="acm", help="'acm' or a MODCOD name, e.g. qpsk-1/2"
    )
    g.add_argument("--acm-margin-db", type=finite_number, default=1.0)
    g.add_argument(
        "--acm-prediction",
        choices=("feedback", "predict", "genie"),
        default="feedback",
        help="what ACM chooses from: receiver SNR reports (closed loop, default), the link "
        "budget alone (open loop), or the realised SNR (upper bound)",
    )
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--fading-max-doppler-hz", type=finite_number, default=DEFAULT_FADING_DOPPLER_HZ)
    g.add_argument("--doppler-precomp", choices=("none", "full", "residual"), default="residual")
    g.add_argument("--residual-hz", type=finite_number, default=DEFAULT_RESIDUAL_HZ)
    g.add_argument("--min-elevation-deg", type=finite_number, default=10.0)
    g.add_argument("--rician-k-db", type=finite_number, default=10.0)


def register(sub: Any) -> None:
    """Add ``testbed send`` and ``testbed receive``."""
    r = sub.add_parser("receive", help="run a standalone payload receiver")
    r.add_argument("--dir", required=True, help="receiver directory (accepted/ inside)")
    r.add_argument("--link", default="c1", help="uplink id (replies go to <link>-down)")
    r.add_argument("--node-id", default="satellite")
    r.add_argument("--max-payload-mb", type=_positive, default=64.0)
    r.add_argument(
        "--frame-bytes",
        type=_positive_int,
        default=8192 + 128,
        help="largest message accepted (default fits the largest fragment)",
    )
    r.add_argument("--supersede", choices=("cancel", "keep"), default="cancel")
    r.add_argument("--json", action="store_true", help="print counters and accepted on exit")
    _add_key_args(r, "this receiver's node is --node-id")
    _add_endpoint_args(r)
    r.set_defaults(func=_receive)

    s = sub.add_parser("send", help="push a file through the emulator; print the upload record")
    s.add_argument("file")
    s.add_argument("--link", default="c1")
    s.add_argument("--sender", default="c1", help="sender id in the manifest")
    s.add_argument("--round", type=_nonneg_int, default=0)
    s.add_argument("--fragment-size", type=int, default=1024, help="payload bytes per fragment")
    s.add_argument("--credit", type=_credit, default=32, help="PDUs in the modem at most")
    s.add_argument("--start-s", type=finite_number, help="emulated start (default: first AOS)")
    s.add_argument("--deadline-s", type=_positive, help="give up at this emulated time [s, > 0]")
    s.add_argument("--horizon-h", type=_positive, default=24.0, help="contact windows to use [h]")
    s.add_argument(
        "--start-emulator",
        action="store_true",
        help="start an emulator and a receiver for this transfer",
    )
    s.add_argument("--receiver-dir", help="receiver directory (with --start-emulator)")
    s.add_argument("--records", help="append the upload record (JSON line) to this file")
    s.add_argument("--json", action="store_true")
    _add_key_args(s, "signs as --node (default --sender); --start-emulator without it: fresh keys")
    s.add_argument("--node", help="this sender's node name in --keys (default: --sender)")
    _add_link_args(s)
    _add_endpoint_args(s)
    s.set_defaults(func=_send)

"""ZeroMQ PDU endpoints of the emulator, with input validation and counters.

Equivalent to gr-zeromq's ``pull_msg_source`` / ``push_msg_sink`` (same wire format:
``pmt.serialize_str`` of the PDU), but the source validates every message with the
reference decoder :func:`flowgraphs.pdu.decode_pdu`, counts what it rejects, republishes the
metadata it validated (re-encoded by :func:`flowgraphs.pdu.encode_pdu`, so a duplicated key
cannot smuggle a different value past it) and stops reading while too many bursts are in
flight (ZeroMQ's high-water mark then pushes back on the sender); the sink never blocks the
flowgraph: a PDU that no receiver can take at once (none connected, or its queue full) is
dropped and counted as ``dropped``.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pmt
import zmq
from gnuradio import gr

from flowgraphs.burst_stage import CTL
from flowgraphs.config import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_TX_TIME_S
from flowgraphs.endpoints import ipc_path, remove_ipc_file
from flowgraphs.keys import ZapGuard
from flowgraphs.pdu import KEY_CMD, KEY_TX_TIME, PduError, decode_pdu, encode_pdu, finite_float
from flowgraphs.pmt_numpy import meta_to_pmt, u8_to_pmt

__all__ = ["ZmqPduSink", "ZmqPduSource"]

log = logging.getLogger("flowgraphs")

_LOG_FIRST = 10  # log the first bad inputs, then every _LOG_EVERY-th
_LOG_EVERY = 1000
_META_ALLOWANCE = 65536  # bytes of metadata allowed on top of the payload limit
_RCVHWM = 16  # messages ZeroMQ queues on the input before the sender blocks


def _open_socket(
    kind: int,
    address: str,
    bind: bool,
    opts: dict[int, int],
    guard: ZapGuard | None = None,
    clients: tuple[str, ...] = (),
) -> tuple[zmq.Context | None, zmq.Socket]:
    """A context (None: the guard's, shared) and a socket bound (or connected) to
    ``address``; with ``guard`` a bound socket is a CURVE server that admits only the enrolled
    nodes ``clients`` (:class:`flowgraphs.keys.ZapGuard`). Raises ValueError (loud
    construction) when the endpoint cannot be used."""
    ctx = zmq.Context() if guard is None else None
    sock = (ctx or guard.ctx).socket(kind)  # type: ignore[union-attr]
    sock.setsockopt(zmq.LINGER, 0)
    for k, v in opts.items():
        sock.setsockopt(k, v)
    try:
        if guard is not None:
            if not bind:
                raise zmq.ZMQError(zmq.EINVAL, "a CURVE endpoint of the emulator must bind")
            guard.serve(sock, address, clients)
        if bind:
            path = ipc_path(address)
            if path is not None and _ipc_in_use(path):
                # ZeroMQ would silently take the path over from the process listening there
                raise zmq.ZMQError(zmq.EADDRINUSE, "in use by another process")
            sock.bind(address)
        else:
            sock.connect(address)
    except (zmq.ZMQError, ValueError) as e:
        sock.close()
        if ctx is not None:
            ctx.term()
        raise ValueError(f"cannot {'bind' if bind else 'connect'} {address}: {e}") from e
    return ctx, sock


def _ipc_in_use(path: Path) -> bool:
    """True if a process listens on the Unix socket ``path`` (a stale file refuses)."""
    if not path.is_socket():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


def _close_socket(ctx: zmq.Context | None, sock: zmq.Socket, address: str, bound: bool) -> None:
    """Close the socket (and its own context) and, for a bound ``ipc://`` endpoint, remove its
    socket file (ZeroMQ leaves it behind)."""
    sock.close()
    if ctx is not None:
        ctx.term()
    if bound:
        remove_ipc_file(address)


class ZmqPduSource(gr.basic_block):
    """PULL socket → validated PDUs on message port ``out``.

    Accepted: a PMT pair ``(dict . u8vector)`` whose dict has a number ``tx_time`` [s] in
    0 … ``max_tx_time_s`` and whose payload is 1 … ``max_payload_bytes`` long. Rejected
    inputs are counted under ``not_pdu`` (not PMT / not a PDU / oversized buffer),
    ``bad_tx_time`` (missing, not a finite number, < 0 or beyond the horizon),
    ``bad_payload`` (empty or too long) or ``multipart``. A PDU with meta
    ``{"cmd": "stats"}`` is a stats request: ``stats_fn()`` is published on port ``status``.

    Back-pressure: while ``in_flight_fn()`` (bursts accepted and not yet delivered or lost)
    is ≥ ``max_in_flight`` the source does not read; the socket's receive high-water mark
    (16 messages) then fills and the sender's ``send`` blocks (or fails with ``EAGAIN``).
    Each such pause is counted in ``overload``. A message longer than
    ``max_payload_bytes + 65536`` makes ZeroMQ drop the sender's connection
    (``ZMQ_MAXMSGSIZE``; it reconnects by itself).

    Parameters
    ----------
    address : ZeroMQ endpoint to bind (or connect), e.g. ``ipc:///tmp/satfl-c1-in``
    max_payload_bytes : largest accepted payload [bytes]
    bind : bind (True) or connect (False)
    stats_fn : returns the flat dict answered to a stats request
    max_tx_time_s : largest accepted ``tx_time`` [emulated s]
    max_in_flight : bursts in flight above which the source stops reading
    in_flight_fn : returns the bursts in flight (None: no cap)
    guard, clients : CURVE: the process's ZAP guard and the enrolled nodes admitted
    """

    def __init__(
        self,
        address: str,
        max_payload_bytes: int = 16384,
        bind: bool = True,
        stats_fn: Callable[[], dict[str, Any]] | None = None,
        max_tx_time_s: float = DEFAULT_MAX_TX_TIME_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        in_flight_fn: Callable[[], int] | None = None,
        guard: ZapGuard | None = None,
        clients: tuple[str, ...] = (),
    ) -> None:
        gr.basic_block.__init__(self, name="satfl_zmq_pdu_source", in_sig=None, out_sig=None)
        if max_payload_bytes < 1:
            raise ValueError("max_payload_bytes must be >= 1")
        if not (math.isfinite(max_tx_time_s) and max_tx_time_s > 0):
            raise ValueError("max_tx_time_s must be a finite number > 0")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.address = address
        self._bound = bind
        self.max_payload_bytes = int(max_payload_bytes)
        self.max_tx_time_s = float(max_tx_time_s)
        self.max_in_flight = int(max_in_flight)
        self.in_flight_fn = in_flight_fn
        #: returns True while the link clock waits for the sender's promise; reading then
        #: continues past the cap (the promise may be the next message)
        self.waiting_fn: Callable[[], bool] | None = None
        self.stats_fn = stats_fn
        self.message_port_register_out(pmt.intern("out"))
        self.message_port_register_out(pmt.intern("status"))
        self.counters: dict[str, int] = {
            "received": 0,
            "accepted": 0,
            "rejected": 0,
            "overload": 0,
        }
        self._lock = threading.Lock()
        self._ctx, self._sock = _open_socket(
            zmq.PULL,
            address,
            bind,
            {zmq.RCVHWM: _RCVHWM, zmq.MAXMSGSIZE: self.max_payload_bytes + _META_ALLOWANCE},
            guard,
            clients,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="zmq-pdu-source", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        return True

    def close(self) -> None:
        """Close the socket (after the flowgraph stopped)."""
        _close_socket(self._ctx, self._sock, self.address, self._bound)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _reject(self, reason: str, detail: str) -> None:
        with self._lock:
            self.counters["rejected"] += 1
            self.counters[reason] = self.counters.get(reason, 0) + 1
            n = self.counters["rejected"]
        if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
            log.warning("%s: rejected input #%d (%s): %s", self.address, n, reason, detail)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        paused = False
        while not self._stop.is_set():
            if (
                self.in_flight_fn is not None
                and self.in_flight_fn() >= self.max_in_flight
                and not (self.waiting_fn is not None and self.waiting_fn())
            ):
                if not paused:
                    paused = True
                    with self._lock:
                        self.counters["overload"] += 1
                self._stop.wait(0.005)  # leave the messages to ZeroMQ's queue
                continue
            paused = False
            if not poller.poll(100):
                continue
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            with self._lock:
                self.counters["received"] += 1
            if len(frames) != 1:
                self._reject("multipart", f"{len(frames)} frames")
                continue
            self.handle_bytes(frames[0])

    def handle_bytes(self, buf: bytes) -> None:
        """Validate one serialised PDU and publish it (or count why not)."""
        try:
            meta, payload = decode_pdu(buf, max_bytes=self.max_payload_bytes + _META_ALLOWANCE)
        except PduError as e:
            self._reject("not_pdu", str(e))
            return
        if meta.get(KEY_CMD) == "advance":
            try:
                t = finite_float(meta, KEY_TX_TIME)
                if not 0 <= t <= self.max_tx_time_s:
                    raise PduError(f"advance to {t:g} s is outside 0 … {self.max_tx_time_s:g} s")
            except PduError as e:
                self._reject("bad_tx_time", str(e))
                return
            with self._lock:
                self.counters["advance"] = self.counters.get("advance", 0) + 1
            # one dummy byte: the stock crc_append drops empty PDUs
            msg = pmt.cons(meta_to_pmt({CTL: "advance", "t": t}), u8_to_pmt(b"\x00"))
            self.message_port_pub(pmt.intern("out"), msg)
            return
        if meta.get(KEY_CMD) == "stats":
            stats = self.stats_fn() if self.stats_fn is not None else self.stats()
            reply = {KEY_CMD: "stats", **{k: v for k, v in stats.items() if k != KEY_CMD}}
            try:
                reply_pmt = meta_to_pmt(reply)
            except ValueError as e:
                log.warning("%s: cannot answer a stats request: %s", self.address, e)
                return
            self.message_port_pub(pmt.intern("status"), pmt.cons(reply_pmt, u8_to_pmt(b"")))
            return
        try:
            t = finite_float(meta, KEY_TX_TIME)
            if t < 0:
                raise PduError("tx_time must be >= 0")
            if t > self.max_tx_time_s:
                raise PduError(f"tx_time {t:g} s is beyond the horizon {self.max_tx_time_s:g} s")
        except PduError as e:
            self._reject("bad_tx_time", str(e))
            return
        if not 0 < len(payload) <= self.max_payload_bytes:
            self._reject("bad_payload", f"{len(payload)} bytes (limit {self.max_payload_bytes})")
            return
        # republish what was validated: the reference encoding of the decoded dict (with a
        # duplicated key the raw bytes could carry another value for PMT's own parser)
        try:
            msg = pmt.deserialize_str(encode_pdu(meta, payload))
        except (PduError, RuntimeError) as e:
            self._reject("not_pdu", f"cannot re-encode: {e}")
            return
        with self._lock:
            self.counters["accepted"] += 1
        self.message_port_pub(pmt.intern("out"), msg)


class ZmqPduSink(gr.basic_block):
    """PDUs on message port ``in`` → PUSH socket (``pmt.serialize_str`` bytes).

    A lossless pipe while a receiver lives: a PDU that no receiver can take at once (none
    connected yet, or its queue at the high-water mark) waits for one — the link then backs up
    to the sender, which is what a slow consumer should cause under conservative
    synchronisation (a dropped safe-time marker would stall the run, a dropped PDU would make
    the outcome depend on when the receiver connected). Only after ``send_timeout_ms`` (the
    receiver is taken for dead) is the PDU dropped, counted in ``dropped`` and logged; a
    flowgraph stop ends any wait at once.

    Parameters
    ----------
    address : ZeroMQ endpoint to bind (or connect)
    bind : bind (True) or connect (False)
    send_timeout_ms : how long a PDU may wait for a receiver before it is dropped [ms]
    guard, clients : CURVE: the process's ZAP guard and the enrolled nodes admitted
    """

    def __init__(
        self,
        address: str,
        bind: bool = True,
        send_timeout_ms: int = 60_000,
        guard: ZapGuard | None = None,
        clients: tuple[str, ...] = (),
    ) -> None:
        gr.basic_block.__init__(self, name="satfl_zmq_pdu_sink", in_sig=None, out_sig=None)
        if send_timeout_ms < 0:
            raise ValueError("send_timeout_ms must be >= 0")
        self.address = address
        self._bound = bind
        self.send_timeout_s = send_timeout_ms / 1000.0
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.counters: dict[str, int] = {"sent": 0, "dropped": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ctx, self._sock = _open_socket(zmq.PUSH, address, bind, {}, guard, clients)

    def start(self) -> bool:
        self._stop.clear()
        return True

    def stop(self) -> bool:
        self.request_stop()
        return True

    def request_stop(self) -> None:
        """End any send wait now; from here on PDUs nobody takes at once are dropped."""
        self._stop.set()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _handle(self, msg: pmt.pmt_base) -> None:
        buf = pmt.serialize_str(msg)
        deadline = time.monotonic() + self.send_timeout_s
        while True:
            try:
                self._sock.send(buf, zmq.NOBLOCK)
            except zmq.Again:
                left = deadline - time.monotonic()
                if left > 0 and not self._stop.wait(min(left, 0.01)):
                    continue
                with self._lock:
                    self.counters["dropped"] += 1
                    n = self.counters["dropped"]
                if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
                    log.warning("%s: no receiver took PDU (drop #%d)", self.address, n)
                return
            except zmq.ZMQError as e:  # socket closed during shutdown
                log.debug("%s: send failed: %s", self.address, e)
                return
            with self._lock:
                self.counters["sent"] += 1
            return

    def close(self) -> None:
        """Close the socket (after the flowgraph stopped)."""
        _close_socket(self._ctx, self._sock, self.address, self._bound)

"""ZeroMQ PDU endpoints of the emulator, with input validation and counters.

Equivalent to gr-zeromq's ``pull_msg_source`` / ``push_msg_sink`` (same wire format:
``pmt.serialize_str`` of the PDU), but the source validates every message with the
reference decoder :func:`testbed.pdu.decode_pdu` and counts what it rejects, and the sink
never blocks the flowgraph when no receiver is connected (it waits ``send_timeout_ms``,
then counts the PDU as ``dropped_no_peer``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import pmt
import zmq
from gnuradio import gr

from flowgraphs.pmt_numpy import u8_to_pmt
from testbed.pdu import KEY_CMD, KEY_TX_TIME, PduError, decode_pdu, finite_float

__all__ = ["ZmqPduSink", "ZmqPduSource"]

log = logging.getLogger("flowgraphs")

_LOG_FIRST = 10  # log the first bad inputs, then every _LOG_EVERY-th
_LOG_EVERY = 1000


class ZmqPduSource(gr.basic_block):
    """PULL socket → validated PDUs on message port ``out``.

    Accepted: a PMT pair ``(dict . u8vector)`` whose dict has a finite, non-negative
    ``tx_time`` [s] and whose payload is 1 … ``max_payload_bytes`` long. Rejected inputs are
    counted under ``not_pdu`` (not PMT / not a PDU / oversized buffer), ``bad_tx_time``
    (missing or not a finite number ≥ 0), ``bad_payload`` (empty or too long) or
    ``multipart``. A PDU with meta ``{"cmd": "stats"}`` is a stats request: ``stats_fn()``
    is published on port ``status``.

    Parameters
    ----------
    address : ZeroMQ endpoint to bind (or connect), e.g. ``ipc:///tmp/satfl-c1-in``
    max_payload_bytes : largest accepted payload [bytes]
    bind : bind (True) or connect (False)
    stats_fn : returns the flat dict answered to a stats request
    """

    def __init__(
        self,
        address: str,
        max_payload_bytes: int = 16384,
        bind: bool = True,
        stats_fn: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        gr.basic_block.__init__(self, name="satfl_zmq_pdu_source", in_sig=None, out_sig=None)
        if max_payload_bytes < 1:
            raise ValueError("max_payload_bytes must be >= 1")
        self.address = address
        self.max_payload_bytes = int(max_payload_bytes)
        self.stats_fn = stats_fn
        self.message_port_register_out(pmt.intern("out"))
        self.message_port_register_out(pmt.intern("status"))
        self.counters: dict[str, int] = {"received": 0, "accepted": 0, "rejected": 0}
        self._lock = threading.Lock()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if bind:
                self._sock.bind(address)
            else:
                self._sock.connect(address)
        except zmq.ZMQError as e:
            self._sock.close()
            self._ctx.term()
            raise ValueError(f"cannot {'bind' if bind else 'connect'} {address}: {e}") from e
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
        self._sock.close()
        self._ctx.term()

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
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
            with self._lock:
                self.counters["received"] += 1
            if len(frames) != 1:
                self._reject("multipart", f"{len(frames)} frames")
                continue
            self.handle_bytes(frames[0])

    def handle_bytes(self, buf: bytes) -> None:
        """Validate one serialised PDU and publish it (or count why not)."""
        try:
            meta, payload = decode_pdu(buf, max_bytes=self.max_payload_bytes + 65536)
        except PduError as e:
            self._reject("not_pdu", str(e))
            return
        if meta.get(KEY_CMD) == "stats":
            stats = self.stats_fn() if self.stats_fn is not None else self.stats()
            reply = {KEY_CMD: "stats", **{k: v for k, v in stats.items() if k != KEY_CMD}}
            self.message_port_pub(pmt.intern("status"), pmt.cons(pmt.to_pmt(reply), u8_to_pmt(b"")))
            return
        try:
            t = finite_float(meta, KEY_TX_TIME)
            if t < 0 or not math.isfinite(t):
                raise PduError("tx_time must be >= 0")
        except PduError as e:
            self._reject("bad_tx_time", str(e))
            return
        if not 0 < len(payload) <= self.max_payload_bytes:
            self._reject("bad_payload", f"{len(payload)} bytes (limit {self.max_payload_bytes})")
            return
        with self._lock:
            self.counters["accepted"] += 1
        # decode_pdu accepted it, so PMT's own deserialiser builds the identical object fast
        self.message_port_pub(pmt.intern("out"), pmt.deserialize_str(buf))


class ZmqPduSink(gr.basic_block):
    """PDUs on message port ``in`` → PUSH socket (``pmt.serialize_str`` bytes).

    Parameters
    ----------
    address : ZeroMQ endpoint to bind (or connect)
    bind : bind (True) or connect (False)
    send_timeout_ms : how long a PDU waits for a receiver before it is dropped [ms]
    """

    def __init__(self, address: str, bind: bool = True, send_timeout_ms: int = 1000) -> None:
        gr.basic_block.__init__(self, name="satfl_zmq_pdu_sink", in_sig=None, out_sig=None)
        self.address = address
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.counters: dict[str, int] = {"sent": 0, "dropped_no_peer": 0}
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDTIMEO, int(send_timeout_ms))
        try:
            if bind:
                self._sock.bind(address)
            else:
                self._sock.connect(address)
        except zmq.ZMQError as e:
            self._sock.close()
            self._ctx.term()
            raise ValueError(f"cannot {'bind' if bind else 'connect'} {address}: {e}") from e

    def _handle(self, msg: pmt.pmt_base) -> None:
        try:
            self._sock.send(pmt.serialize_str(msg))
            self.counters["sent"] += 1
        except zmq.Again:
            self.counters["dropped_no_peer"] += 1
            log.warning("%s: no receiver connected; PDU dropped", self.address)
        except zmq.ZMQError as e:  # socket closed during shutdown
            log.debug("%s: send failed: %s", self.address, e)

    def close(self) -> None:
        """Close the socket (after the flowgraph stopped)."""
        self._sock.close()
        self._ctx.term()

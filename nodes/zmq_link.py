"""The payload transfer over the channel emulator's ZeroMQ ports.

The emulator binds three endpoints per link (``in`` PULL, ``out`` PUSH, ``status`` PUSH);
nodes connect to them. Payload data only ever travels PUSH → PULL with bounded high-water
marks, and the sender's credit window keeps at most ``credit`` bursts queued.

* :class:`EmulatorSenderLink` — a :class:`nodes.sender.SenderLink`: bursts go to the uplink's
  ``in``; the modem's reports come from the uplink's ``status``; the receiver's feedback
  arrives from the downlink's ``out``.
* :func:`serve_receiver` — the receiver process loop: PDUs from the uplink's ``out`` go to a
  :class:`nodes.receiver.ReceiverEngine`; its replies go to the downlink's ``in``, each sent at
  the emulated time the triggering PDU arrived.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from nodes.receiver import ReceiverEngine
from nodes.sender import Delivery, TxReport
from nodes.wire import encode
from testbed.pdu import (
    KEY_CMD,
    KEY_PROP_DELAY_S,
    KEY_RX_END,
    KEY_SEQ,
    KEY_SRC,
    KEY_TX_END,
    KEY_TX_START,
    KEY_TX_TIME,
    PduError,
    decode_pdu,
    encode_pdu,
    finite_float,
)

__all__ = ["EmulatorSenderLink", "LinkEndpoints", "LinkMux", "serve_receiver"]

log = logging.getLogger(__name__)

MAX_PDU_BYTES = 1 << 20
HWM = 256


@dataclass(frozen=True)
class LinkEndpoints:
    """The three endpoints the emulator binds for one link."""

    in_addr: str
    out_addr: str
    status_addr: str

    @classmethod
    def default(cls, link_id: str) -> LinkEndpoints:
        base = f"ipc:///tmp/satfl-{link_id}"
        return cls(f"{base}-in", f"{base}-out", f"{base}-status")


def _sock(ctx: zmq.Context, kind: int, addr: str) -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, HWM)
    s.setsockopt(zmq.RCVHWM, HWM)
    if kind == zmq.PULL:
        s.setsockopt(zmq.MAXMSGSIZE, MAX_PDU_BYTES)
    s.connect(addr)
    return s


class EmulatorSenderLink:
    """Sender side of a transfer through the GNU Radio emulator.

    Parameters
    ----------
    uplink, downlink : the emulator's endpoints for the two directions
    src : this sender's id (echoed by the emulator in status reports)
    bitrate_bps : initial airtime estimate until the modem's reports calibrate it
    overhead_bytes : per-burst framing overhead for the estimate
    """

    def __init__(
        self,
        uplink: LinkEndpoints,
        downlink: LinkEndpoints,
        src: str,
        bitrate_bps: float = 1.0e6,
        overhead_bytes: int = 64,
        ctx: zmq.Context | None = None,
    ) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.src = src
        self._push = _sock(self.ctx, zmq.PUSH, uplink.in_addr)
        self._status = _sock(self.ctx, zmq.PULL, uplink.status_addr)
        self._fb = _sock(self.ctx, zmq.PULL, downlink.out_addr)
        self._poller = zmq.Poller()
        self._poller.register(self._status, zmq.POLLIN)
        self._poller.register(self._fb, zmq.POLLIN)
        self._seq = itertools.count(1)
        self._sizes: dict[int, int] = {}
        self._bit_s = 1.0 / bitrate_bps  # seconds per byte·8, calibrated from status
        self._overhead = overhead_bytes
        self._prop = 0.01
        self.counters: Counter[str] = Counter()
        self.last_stats: dict[str, Any] | None = None

    def airtime_s(self, nbytes: int) -> float:
        return (nbytes + self._overhead) * 8.0 * self._bit_s

    def rtt_estimate_s(self) -> float:
        return 2.0 * self._prop + self.airtime_s(1024) + self.airtime_s(64)

    def send(self, data: bytes, tx_time_s: float) -> int:
        seq = next(self._seq)
        self._sizes[seq] = len(data)
        self._push.send(
            encode_pdu({KEY_TX_TIME: float(tx_time_s), KEY_SEQ: seq, KEY_SRC: self.src}, data)
        )
        return seq

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery]:
        out: list[TxReport | Delivery] = []
        events = dict(self._poller.poll(int(wall_timeout_s * 1000)))
        while events:
            if self._status in events:
                self._on_status(self._status.recv(), out)
            if self._fb in events:
                self._on_feedback(self._fb.recv(), out)
            events = dict(self._poller.poll(0))
        return out

    def _on_status(self, buf: bytes, out: list[TxReport | Delivery]) -> None:
        try:
            meta, _ = decode_pdu(buf, MAX_PDU_BYTES)
            if KEY_CMD in meta:
                self.last_stats = meta  # a stats reply, not a burst report
                return
            seq = meta.get(KEY_SEQ)
            start, end = finite_float(meta, KEY_TX_START), finite_float(meta, KEY_TX_END)
        except PduError as e:
            self.counters["bad_status"] += 1
            log.warning("bad status report dropped: %s", e)
            return
        if meta.get(KEY_SRC) != self.src or seq not in self._sizes:
            self.counters["foreign_status"] += 1
            return
        n = self._sizes.pop(seq)
        if end > start and n > 0:  # calibrate the airtime model on the modem's own numbers
            self._bit_s = 0.8 * self._bit_s + 0.2 * (end - start) / ((n + self._overhead) * 8)
        out.append(TxReport(seq, start, end))

    def _on_feedback(self, buf: bytes, out: list[TxReport | Delivery]) -> None:
        try:
            meta, payload = decode_pdu(buf, MAX_PDU_BYTES)
            rx_end = finite_float(meta, KEY_RX_END)
        except PduError as e:
            self.counters["bad_feedback"] += 1
            log.warning("bad feedback PDU dropped: %s", e)
            return
        prop = meta.get(KEY_PROP_DELAY_S)
        if isinstance(prop, float) and math.isfinite(prop) and prop > 0:
            self._prop = prop
        out.append(Delivery(payload, rx_end, meta))

    def request_stats(self) -> None:
        """Ask the emulator for this link's counters (answered on ``status``)."""
        self.last_stats = None
        self._push.send(encode_pdu({KEY_CMD: "stats", KEY_SRC: self.src}, b""))

    def close(self) -> None:
        for s in (self._push, self._status, self._fb):
            s.close(0)


def _serve_one(
    engine: ReceiverEngine,
    buf: bytes,
    push: zmq.Socket,
    seq: Any,
    node_id: str,
    on_delivery: Callable[[dict[str, Any]], None] | None,
    counters: Counter[str],
    where: str,
) -> None:
    try:
        meta, payload = decode_pdu(buf, MAX_PDU_BYTES)
        rx_end = finite_float(meta, KEY_RX_END)
    except PduError as e:
        counters["bad_pdu"] += 1
        log.warning("dropped bad PDU on %s: %s", where, e)
        return
    if on_delivery is not None:
        on_delivery(meta)
    for reply in engine.handle(payload, rx_end):
        meta_out: dict[str, Any] = {KEY_TX_TIME: rx_end, KEY_SEQ: next(seq), KEY_SRC: node_id}
        if isinstance(meta.get(KEY_SRC), str):
            meta_out["dst"] = meta[KEY_SRC]
        push.send(encode_pdu(meta_out, encode(reply)))


def serve_receiver(
    engine: ReceiverEngine,
    uplink_out: str,
    downlink_in: str,
    downlink_status: str | None = None,
    node_id: str = "satellite",
    stop: threading.Event | None = None,
    stats_every_s: float = 10.0,
    ctx: zmq.Context | None = None,
    max_messages: int | None = None,
    on_delivery: Callable[[dict[str, Any]], None] | None = None,
) -> Counter[str]:
    """Run the receiver until ``stop`` is set; returns its counters.

    ``on_delivery`` is called with the metadata of every valid delivered PDU (the emulator's
    link record of that burst: times, SNR, elevation, Doppler, modulation, ...).

    Every PDU from ``uplink_out`` is decoded and validated (bad PDUs are counted and dropped);
    replies are pushed to ``downlink_in`` with ``tx_time`` = the triggering PDU's ``rx_end``.
    """
    ctx = ctx or zmq.Context.instance()
    stop = stop or threading.Event()
    pull = _sock(ctx, zmq.PULL, uplink_out)
    push = _sock(ctx, zmq.PUSH, downlink_in)
    socks = [pull, push]
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    drain = None
    if downlink_status:
        drain = _sock(ctx, zmq.PULL, downlink_status)
        poller.register(drain, zmq.POLLIN)
        socks.append(drain)
    counters = engine.counters
    seq = itertools.count(1)
    last_stats = time.monotonic()
    handled = 0
    try:
        while not stop.is_set():
            events = dict(poller.poll(100))
            if drain is not None and drain in events:
                drain.recv()
            if pull in events:
                buf = pull.recv()
                handled += 1
                try:
                    _serve_one(engine, buf, push, seq, node_id, on_delivery, counters, uplink_out)
                finally:
                    # Counted once the PDU is fully handled (committed, replied): the
                    # satellite's barrier compares this with the emulator's delivered count.
                    counters["pdu_handled"] += 1
                if max_messages is not None and handled >= max_messages:
                    break
            if time.monotonic() - last_stats > stats_every_s:
                last_stats = time.monotonic()
                log.info("receiver stats: %s", dict(counters))
    finally:
        engine.store.close()
        for s in socks:
            s.close(0)
    return counters


class LinkMux:
    """Several concurrent transfers over one :class:`EmulatorSenderLink`.

    Each transfer gets a view (:meth:`view`) that behaves as a whole
    :class:`nodes.sender.SenderLink`; status reports are routed by sequence number and feedback
    by transfer id, so one transfer never consumes another's events.
    """

    def __init__(self, link: EmulatorSenderLink) -> None:
        self.link = link
        self._owner: dict[int, bytes] = {}
        self._queues: dict[bytes, list[TxReport | Delivery]] = {}

    def barrier(self, timeout_s: float = 60.0) -> int | None:
        """Wait until the emulator has no burst of this uplink in flight.

        Returns the number of PDUs the emulator has delivered on the link's ``out`` so far
        (``out_sent``), or None on timeout. A receiver that has handled that many PDUs has
        seen everything this sender's bursts will ever deliver — the satellite's barrier
        before it decides what had arrived by an aggregation time.
        """
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.link.request_stats()
            ask_end = time.monotonic() + 2.0
            while self.link.last_stats is None and time.monotonic() < ask_end:
                self._pump(0.05)
            st = self.link.last_stats
            if st is not None and int(st.get("in_flight", 1)) == 0:
                return int(st.get("out_sent", 0))
            time.sleep(0.05)
        log.warning("emulator still had bursts in flight after %.0f s", timeout_s)
        return None

    def view(self, tid: bytes) -> _MuxView:
        self._queues.setdefault(tid, [])
        return _MuxView(self, tid)

    def _pump(self, wall_timeout_s: float) -> None:
        from nodes.wire import HEADER_SIZE

        for ev in self.link.poll(wall_timeout_s):
            if isinstance(ev, TxReport):
                tid = self._owner.pop(ev.seq, None)
            else:
                tid = ev.data[4:HEADER_SIZE] if len(ev.data) >= HEADER_SIZE else None
            if tid in self._queues:
                self._queues[tid].append(ev)  # type: ignore[index]
            else:
                self.link.counters["unrouted_event"] += 1


class _MuxView:
    def __init__(self, mux: LinkMux, tid: bytes) -> None:
        self.mux = mux
        self.tid = tid

    def send(self, data: bytes, tx_time_s: float) -> int:
        seq = self.mux.link.send(data, tx_time_s)
        self.mux._owner[seq] = self.tid
        return seq

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery]:
        q = self.mux._queues[self.tid]
        end = time.monotonic() + wall_timeout_s
        while not q:
            left = end - time.monotonic()
            self.mux._pump(max(0.0, left))
            if left <= 0:
                break
        out, q[:] = list(q), []
        return out

    def airtime_s(self, nbytes: int) -> float:
        return self.mux.link.airtime_s(nbytes)

    def rtt_estimate_s(self) -> float:
        return self.mux.link.rtt_estimate_s()

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
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from flowgraphs.keys import Keyring, curve_client
from flowgraphs.pdu import (
    KEY_CMD,
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
from nodes.receiver import ReceiverEngine
from nodes.sender import Delivery, Horizon, TxReport
from nodes.wire import encode

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


def _sock(
    ctx: zmq.Context, kind: int, addr: str, keys: Keyring | None = None, server: str = "channel"
) -> zmq.Socket:
    """A connected socket; with ``keys`` a CURVE client pinned to the node ``server``."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        curve_client(s, keys, server)
    s.setsockopt(zmq.SNDHWM, HWM)
    s.setsockopt(zmq.RCVHWM, HWM)
    if kind == zmq.PULL:
        s.setsockopt(zmq.MAXMSGSIZE, MAX_PDU_BYTES)
    s.connect(addr)
    return s


class EmulatorSenderLink:
    """Sender side of a transfer through the GNU Radio emulator.

    PDUs go to the uplink's ``in``; the modem's frame reports and clock markers come from the
    uplink's ``status`` (as :class:`nodes.sender.TxReport` per completed PDU and
    :class:`nodes.sender.Horizon` ``"status"``); the receiver's feedback and the downlink's
    safe-time markers come from the downlink's ``out`` (:class:`nodes.sender.Delivery`,
    :class:`nodes.sender.Horizon` ``"feedback"``). :meth:`advance` sends the sender's promise.

    Parameters
    ----------
    uplink, downlink : the emulator's endpoints for the two directions
    src : this sender's id (echoed by the emulator)
    keys, emulator : CURVE: this node's keyring and the emulator's node name (None: plain)
    """

    def __init__(
        self,
        uplink: LinkEndpoints,
        downlink: LinkEndpoints,
        src: str,
        ctx: zmq.Context | None = None,
        keys: Keyring | None = None,
        emulator: str = "channel",
    ) -> None:
        self.ctx = ctx or zmq.Context.instance()
        self.src = src
        self._push = _sock(self.ctx, zmq.PUSH, uplink.in_addr, keys, emulator)
        self._status = _sock(self.ctx, zmq.PULL, uplink.status_addr, keys, emulator)
        self._fb = _sock(self.ctx, zmq.PULL, downlink.out_addr, keys, emulator)
        self._poller = zmq.Poller()
        self._poller.register(self._status, zmq.POLLIN)
        self._poller.register(self._fb, zmq.POLLIN)
        # Sequence numbers from a random base: reports of an earlier session's PDUs still in
        # the modem (an interrupted transfer) never match this session's
        self._seq = itertools.count(1 + (secrets.randbits(31) << 16))
        self._frames: dict[int, tuple[str, float, float, int]] = {}
        self.promised_s = -math.inf
        self.counters: Counter[str] = Counter()
        self.last_stats: dict[str, Any] | None = None
        self._injected: list[TxReport | Delivery | Horizon] = []

    def send(self, data: bytes, tx_time_s: float) -> int:
        seq = next(self._seq)
        self._push.send(
            encode_pdu({KEY_TX_TIME: float(tx_time_s), KEY_SEQ: seq, KEY_SRC: self.src}, data)
        )
        self.promised_s = max(self.promised_s, float(tx_time_s))
        return seq

    def advance(self, t_s: float) -> None:
        """Promise the emulator: no PDU with ``tx_time`` < ``t_s`` follows."""
        if t_s > self.promised_s:
            self.promised_s = float(t_s)
            self._push.send(encode_pdu({KEY_CMD: "advance", KEY_TX_TIME: float(t_s)}, b""))

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery | Horizon]:
        out: list[TxReport | Delivery | Horizon] = self._injected
        self._injected = []
        if out:
            wall_timeout_s = 0.0
        events = dict(self._poller.poll(int(wall_timeout_s * 1000)))
        while events:
            if self._status in events:
                self._on_status(self._status.recv(), out)
            if self._fb in events:
                self._on_feedback(self._fb.recv(), out)
            events = dict(self._poller.poll(0))
        return out

    def _on_status(self, buf: bytes, out: list[TxReport | Delivery | Horizon]) -> None:
        try:
            meta, _ = decode_pdu(buf, MAX_PDU_BYTES)
            if KEY_CMD in meta:
                self.last_stats = meta  # a stats reply, not a report
                return
            kind = meta.get("status")
            if kind == "clock":
                out.append(Horizon("status", finite_float(meta, "t")))
                return
            if kind != "frame":
                raise PduError(f"unknown status report {kind!r}")
            fid = int(meta["frame_id"])
            start, end = finite_float(meta, KEY_TX_START), finite_float(meta, KEY_TX_END)
            info = (
                str(meta.get("modcod", "")),
                start,
                end,
                int(meta.get("info_bits", 0)),
                float(meta.get("modcod_rate_bps", 0.0)),
            )
            pdus = [(int(a), float(b), [int(f) for f in c]) for a, b, c in meta["pdus"]]
        except (PduError, KeyError, TypeError, ValueError) as e:
            self.counters["bad_status"] += 1
            log.warning("bad status report dropped: %s", e)
            return
        self._frames[fid] = info
        # every frame starting before this one has been reported (frames are reported in order)
        out.append(Horizon("status", start))
        for seq, first, fids in pdus:
            frames = tuple((f, *self._frames[f]) for f in fids if f in self._frames)
            out.append(TxReport(seq, first, end, start, frames))  # type: ignore[arg-type]
            for f in fids[:-1]:
                self._frames.pop(f, None)
        if len(self._frames) > 4096:
            self._frames.pop(next(iter(self._frames)))

    def _on_feedback(self, buf: bytes, out: list[TxReport | Delivery | Horizon]) -> None:
        try:
            meta, payload = decode_pdu(buf, MAX_PDU_BYTES)
            if meta.get(KEY_CMD) == "safe":
                out.append(Horizon("feedback", finite_float(meta, "t")))
                return
            rx_end = finite_float(meta, KEY_RX_END)
        except PduError as e:
            self.counters["bad_feedback"] += 1
            log.warning("bad feedback PDU dropped: %s", e)
            return
        out.append(Delivery(payload, rx_end, meta))

    def request_stats(self) -> None:
        """Ask the emulator for this link's counters (answered on ``status``)."""
        self.last_stats = None
        self._push.send(encode_pdu({KEY_CMD: "stats", KEY_SRC: self.src}, b""))

    def link_clock(self, timeout_wall_s: float = 10.0) -> float:
        """The emulated time this link has reached [s]: the later of when its modem is next
        free and what its senders promised (a transfer joining a running emulator starts
        there). Asks the emulator for its counters; events that arrive meanwhile belong to
        earlier transfers and are dropped. Raises :class:`TimeoutError` without an answer."""
        self.request_stats()
        end = time.monotonic() + timeout_wall_s
        while self.last_stats is None:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no answer from the emulator's link within {timeout_wall_s:g} s (wall); "
                    "is `testbed channel serve` running with this link, and do both sides "
                    "use the same keys (--keys)?"
                )
            stale = self.poll(min(left, 0.5))
            self.counters["stale_event"] += sum(1 for e in stale if not isinstance(e, Horizon))
        st = self.last_stats
        clock = st.get("clock_s")
        if isinstance(clock, int | float) and math.isfinite(clock):
            # the clock marker the emulator published before this session (to the earlier
            # senders): a marker comes only when the clock advances, so it is handed on here
            self._injected.append(Horizon("status", float(clock)))
        vals = [st.get("link_free_s"), st.get("promise_s")]
        return max((float(v) for v in vals if isinstance(v, int | float)), default=0.0)

    def close(self) -> None:
        for s in (self._push, self._status, self._fb):
            s.close(0)


def send_until(sock: zmq.Socket, buf: bytes, stop: threading.Event | None) -> bool:
    """Send ``buf``, waiting while the peer does not take it, until ``stop`` is set; returns
    whether it was sent (a stopped process never hangs in a blocked send)."""
    while True:
        try:
            sock.send(buf, zmq.NOBLOCK)
            return True
        except zmq.Again:
            if stop is not None and stop.is_set():
                return False
            sock.poll(100, zmq.POLLOUT)


def _serve_one(
    engine: ReceiverEngine,
    buf: bytes,
    push: zmq.Socket,
    seq: Any,
    node_id: str,
    on_delivery: Callable[[dict[str, Any]], None] | None,
    counters: Counter[str],
    where: str,
    stop: threading.Event | None = None,
) -> float | None:
    """Handle one PDU from the uplink's ``out``; returns the safe time of a marker."""
    try:
        meta, payload = decode_pdu(buf, MAX_PDU_BYTES)
        if meta.get(KEY_CMD) == "safe":
            t = finite_float(meta, "t")
            # Conservative synchronisation: every reply from now on answers a PDU with
            # rx_end >= t, so promise the downlink that (docs/protocol.md §3).
            if not send_until(push, encode_pdu({KEY_CMD: "advance", KEY_TX_TIME: t}, b""), stop):
                return None
            engine.safe_time_s = max(engine.safe_time_s, t)
            counters["safe_markers"] += 1
            return t
        rx_end = finite_float(meta, KEY_RX_END)
    except PduError as e:
        counters["bad_pdu"] += 1
        log.warning("dropped bad PDU on %s: %s", where, e)
        return None
    if on_delivery is not None:
        on_delivery(meta)
    for reply in engine.handle(payload, rx_end):
        meta_out: dict[str, Any] = {KEY_TX_TIME: rx_end, KEY_SEQ: next(seq), KEY_SRC: node_id}
        if isinstance(meta.get(KEY_SRC), str):
            meta_out["dst"] = meta[KEY_SRC]
        if not send_until(push, encode_pdu(meta_out, encode(reply)), stop):
            counters["reply_unsent_at_stop"] += 1
            break
    return None


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
    keys: Keyring | None = None,
    emulator: str = "channel",
) -> Counter[str]:
    """Run the receiver until ``stop`` is set; returns its counters.

    ``on_delivery`` is called with the metadata of every valid delivered PDU (the emulator's
    link record of that frame: times, SNR, elevation, Doppler, MODCOD, ...). With ``keys``
    every socket is a CURVE client of the emulator node ``emulator``.

    Every PDU from ``uplink_out`` is decoded and validated (bad PDUs are counted and dropped);
    replies are pushed to ``downlink_in`` with ``tx_time`` = the triggering PDU's ``rx_end``.
    The uplink's safe-time markers are forwarded as promises to the downlink, in order, after
    everything delivered before them was handled; ``engine.safe_time_s`` is the latest.
    """
    ctx = ctx or zmq.Context.instance()
    stop = stop or threading.Event()
    pull = _sock(ctx, zmq.PULL, uplink_out, keys, emulator)
    push = _sock(ctx, zmq.PUSH, downlink_in, keys, emulator)
    socks = [pull, push]
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    drain = None
    if downlink_status:
        drain = _sock(ctx, zmq.PULL, downlink_status, keys, emulator)
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
                while drain.poll(0):
                    drain.recv()
            if pull in events:
                buf = pull.recv()
                handled += 1
                try:
                    _serve_one(
                        engine, buf, push, seq, node_id, on_delivery, counters, uplink_out, stop
                    )
                finally:
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
    """Several transfers, one after another or interleaved, over one
    :class:`EmulatorSenderLink`.

    Each transfer gets a view (:meth:`view`) that behaves as a whole
    :class:`nodes.sender.SenderLink`: reports are routed by sequence number, feedback by
    transfer id, and the link's horizons go to every view. Promises are the link's: a view's
    promise never lowers what another promised.
    """

    def __init__(self, link: EmulatorSenderLink) -> None:
        self.link = link
        self._owner: dict[int, bytes] = {}
        self._queues: dict[bytes, list[TxReport | Delivery | Horizon]] = {}
        self.fb_horizon_s = -math.inf
        self.status_horizon_s = -math.inf

    @property
    def promised_s(self) -> float:
        """The latest promise sent on the link [emulated s]."""
        return self.link.promised_s

    def view(self, tid: bytes) -> _MuxView:
        q = self._queues.setdefault(tid, [])
        if math.isfinite(self.fb_horizon_s):
            q.append(Horizon("feedback", self.fb_horizon_s))
        if math.isfinite(self.status_horizon_s):
            q.append(Horizon("status", self.status_horizon_s))
        return _MuxView(self, tid)

    def close_view(self, tid: bytes) -> None:
        """Forget a finished transfer's queue."""
        self._queues.pop(tid, None)

    def _pump(self, wall_timeout_s: float) -> bool:
        from nodes.wire import HEADER_SIZE

        evs = self.link.poll(wall_timeout_s)
        for ev in evs:
            if isinstance(ev, Horizon):
                if ev.kind == "feedback":
                    self.fb_horizon_s = max(self.fb_horizon_s, ev.t_s)
                else:
                    self.status_horizon_s = max(self.status_horizon_s, ev.t_s)
                for q in self._queues.values():
                    q.append(ev)
                continue
            if isinstance(ev, TxReport):
                tid = self._owner.pop(ev.seq, None)
            else:
                tid = ev.data[4:HEADER_SIZE] if len(ev.data) >= HEADER_SIZE else None
            if tid in self._queues:
                self._queues[tid].append(ev)  # type: ignore[index]
            else:
                self.link.counters["unrouted_event"] += 1
        return bool(evs)

    def wait_safe(self, t_s: float, timeout_wall_s: float = 120.0) -> None:
        """Promise ``t_s`` and wait until the downlink's feedback horizon passes it: then
        every consequence of this link's PDUs up to ``t_s`` has been handled by the
        receiver (its safe time is beyond ``t_s``)."""
        self.link.advance(t_s)
        end = time.monotonic() + timeout_wall_s
        while self.fb_horizon_s <= t_s:
            if time.monotonic() > end:
                raise TimeoutError(
                    f"the link's feedback horizon stayed at {self.fb_horizon_s:.3f} s, below "
                    f"{t_s:.3f} s, for {timeout_wall_s:g} s (wall); is the receiver running?"
                )
            self._pump(0.2)


class _MuxView:
    def __init__(self, mux: LinkMux, tid: bytes) -> None:
        self.mux = mux
        self.tid = tid

    def send(self, data: bytes, tx_time_s: float) -> int:
        seq = self.mux.link.send(data, tx_time_s)
        self.mux._owner[seq] = self.tid
        return seq

    def advance(self, t_s: float) -> None:
        self.mux.link.advance(t_s)

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery | Horizon]:
        q = self.mux._queues[self.tid]
        end = time.monotonic() + wall_timeout_s
        while not q:
            left = end - time.monotonic()
            self.mux._pump(max(0.0, left))
            if left <= 0:
                break
        out, q[:] = list(q), []
        return out

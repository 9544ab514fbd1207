"""Sender side of the payload transfer: a sans-IO engine and the driver that runs it.

The engine decides *what* to send next; the driver decides *when*, in emulated time: it
keeps at most ``credit`` bursts in the modem, sends only inside contact windows (a burst
that would not finish before LOS waits for the next AOS), freezes all timers and retry
counters outside windows, and prompts the receiver for its gap list at each new pass. A
transfer therefore resumes from its gaps on any later pass and never restarts from zero.

Emulated time comes only from the link: the modem's status reports (``tx_end``) and the
``rx_end`` of delivered feedback. A timeout is charged at its emulated deadline; the wall
clock is used only to notice that nothing more is coming.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from nodes.wire import (
    HEADER_SIZE,
    Cancel,
    Eof,
    Finished,
    FinishedStatus,
    Fragment,
    Manifest,
    Message,
    MetadataMsg,
    Nak,
    NakKind,
    Prompt,
    WireError,
    decode,
    encode,
)

__all__ = [
    "Delivery",
    "SenderConfig",
    "SenderDriver",
    "SenderEngine",
    "SenderLink",
    "TransferError",
    "TxReport",
    "UploadRecord",
]

log = logging.getLogger(__name__)


class TransferError(RuntimeError):
    """The transfer ended without the receiver accepting the payload."""


@dataclass(frozen=True)
class TxReport:
    """The modem's own view of a sent burst (no channel outcome)."""

    seq: int
    tx_start_s: float
    tx_end_s: float


@dataclass(frozen=True)
class Delivery:
    """A message delivered to this node by the link, with its emulated arrival time."""

    data: bytes
    rx_end_s: float
    meta: dict[str, Any] = field(default_factory=dict)


class SenderLink(Protocol):
    """What the driver needs from a link (emulator over ZeroMQ, or the in-process model)."""

    def send(self, data: bytes, tx_time_s: float) -> int:
        """Queue one burst at emulated time ``tx_time_s``; returns its sequence number."""
        ...

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery]:
        """Events that arrived (status of own bursts, deliveries from the receiver)."""
        ...

    def airtime_s(self, nbytes: int) -> float:
        """Expected airtime of a burst of ``nbytes`` message bytes [s]."""
        ...

    def rtt_estimate_s(self) -> float:
        """Round trip: one fragment up, one NAK down, both propagation delays [s]."""
        ...


@dataclass(frozen=True)
class SenderConfig:
    """Sender timers and limits (emulated seconds).

    credit : bursts outstanding in the modem at most (bounded queues everywhere)
    ack_timer_s : time to wait for an answer to EOF/PROMPT before asking again; None:
        ``ack_timer_rtts`` × the link's round-trip estimate
    max_timeouts : timeouts inside windows before the transfer fails (paused in outages)
    quiet_wall_s : wall time without any event after which nothing more is expected
    """

    credit: int = 8
    ack_timer_s: float | None = None
    ack_timer_rtts: float = 4.0
    max_timeouts: int = 50
    quiet_wall_s: float = 1.0


class SenderEngine:
    """Protocol logic of the sender (what to send, how to react)."""

    def __init__(self, tid: bytes, manifest: Manifest, data: bytes) -> None:
        if len(data) != manifest.size:
            raise ValueError("payload size does not match its manifest")
        self.tid = tid
        self.m = manifest
        self.data = data
        self.n = manifest.n_fragments
        self._need_meta = True
        self._next_new = 0
        self._retx: list[int] = []  # sorted fragment indices to resend
        self._retx_set: set[int] = set()
        self._last_sent: dict[int, float] = {}
        self._eof_due = False
        self._prompt_due = False
        self.awaiting_since: float | None = None
        self.result: Finished | None = None
        self.stats = {
            "fragments_sent": 0,
            "fragments_retransmitted": 0,
            "metadata_sent": 0,
            "eof_sent": 0,
            "prompts_sent": 0,
            "naks_received": 0,
            "timeouts": 0,
        }

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def started(self) -> bool:
        return self.stats["metadata_sent"] > 0

    def fragment(self, i: int) -> Fragment:
        fs = self.m.fragment_size
        return Fragment(self.tid, i, self.n, i * fs, self.data[i * fs : (i + 1) * fs])

    def has_work(self) -> bool:
        return not self.done and (
            self._need_meta
            or bool(self._retx)
            or self._next_new < self.n
            or self._eof_due
            or self._prompt_due
        )

    def next_message(self, now_s: float) -> Message | None:
        """The next message to send at ``now_s``, or None (then wait for feedback)."""
        if self.done:
            return None
        if self._need_meta:
            self._need_meta = False
            self.stats["metadata_sent"] += 1
            self._eof_due = self._eof_due or self._next_new >= self.n
            return MetadataMsg(self.tid, self.m)
        if self._prompt_due:
            self._prompt_due = False
            self.stats["prompts_sent"] += 1
            self.awaiting_since = now_s
            return Prompt(self.tid)
        if self._retx:
            i = self._retx.pop(0)
            self._retx_set.discard(i)
            self._last_sent[i] = now_s
            self.stats["fragments_retransmitted"] += 1
            self.stats["fragments_sent"] += 1
            if not self._retx and self._next_new >= self.n:
                self._eof_due = True
            return self.fragment(i)
        if self._next_new < self.n:
            i = self._next_new
            self._next_new += 1
            self._last_sent[i] = now_s
            self.stats["fragments_sent"] += 1
            if self._next_new >= self.n:
                self._eof_due = True
            return self.fragment(i)
        if self._eof_due:
            self._eof_due = False
            self.stats["eof_sent"] += 1
            self.awaiting_since = now_s
            return Eof(self.tid, self.n, self.m.size, bytes.fromhex(self.m.sha256))
        return None

    def on_reply(self, msg: Message, rx_end_s: float, rtt_s: float) -> None:
        """React to a message from the receiver that arrived at ``rx_end_s``."""
        if getattr(msg, "transfer_id", None) != self.tid or self.done:
            return
        if isinstance(msg, Finished):
            self.result = msg
            self.awaiting_since = None
            return
        if not isinstance(msg, Nak):
            return
        self.stats["naks_received"] += 1
        if msg.kind is NakKind.NEED_METADATA:
            self._need_meta = True
            return
        full = msg.kind in (NakKind.EOF_GAPS, NakKind.PROMPT_GAPS)
        if full:
            self.awaiting_since = None
        added = 0
        for a, b in msg.ranges:
            for i in range(a, min(b, self.n)):
                if i >= self._next_new or i in self._retx_set:
                    continue  # not sent yet, or already queued
                # Sent again after this NAK was generated: the resend is still in flight.
                if self._last_sent.get(i, -1.0) > rx_end_s - rtt_s:
                    continue
                bisect.insort(self._retx, i)
                self._retx_set.add(i)
                added += 1
        if full and (added == 0 or msg.more) and not self._retx:
            self._eof_due = True  # nothing to resend now: ask again for the (rest of the) list
        elif full and msg.more:
            self._eof_due = True

    def on_timeout(self) -> None:
        """No answer to EOF/PROMPT by the deadline: ask again."""
        self.stats["timeouts"] += 1
        self.awaiting_since = None
        self._eof_due = True

    def on_pass_start(self) -> None:
        """A new contact begins: prompt for the full gap list (if the receiver knows us)."""
        if self.started and not self.done:
            self._prompt_due = True
            self._eof_due = False
            self.awaiting_since = None

    def cancel_message(self) -> Cancel:
        return Cancel(self.tid, 0)


@dataclass
class UploadRecord:
    """Measured upload of one payload (emulated times in s since the scenario epoch)."""

    transfer_id: str
    sender: str
    round: int
    kind: str
    size_bytes: int
    sha256: str
    status: str
    first_tx_s: float
    accepted_s: float | None
    confirmed_s: float | None
    upload_time_s: float | None
    wall_s: float
    passes_used: int
    fragments: int
    fragments_sent: int
    fragments_retransmitted: int
    goodput_bps: float | None
    airtime_s: float
    predicted_shannon_s: float | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SenderDriver:
    """Runs one :class:`SenderEngine` over a :class:`SenderLink` inside contact windows.

    Parameters
    ----------
    windows : sorted (aos_s, los_s) contact windows in emulated time; None = always on
    start_s : emulated time the payload is ready to send
    """

    def __init__(
        self,
        engine: SenderEngine,
        link: SenderLink,
        cfg: SenderConfig | None = None,
        windows: list[tuple[float, float]] | None = None,
        start_s: float = 0.0,
    ) -> None:
        self.e = engine
        self.link = link
        self.cfg = cfg or SenderConfig()
        self.windows = sorted(windows) if windows is not None else None
        self.now = start_s
        self.inflight: dict[int, float] = {}  # seq → expected airtime
        self.first_tx: float | None = None
        self.confirmed_s: float | None = None
        self.passes: set[int] = set()
        self.airtime = 0.0
        self.malformed_feedback = 0
        # Bytes of the largest message the engine can send (METADATA or a full fragment),
        # for the "does the burst end before LOS" check.
        self._max_msg_bytes = max(
            len(encode(MetadataMsg(engine.tid, engine.m))),
            engine.m.fragment_size + HEADER_SIZE + 16,
        )

    # -- contact windows --------------------------------------------------------------
    def _window(self, t: float) -> int | None:
        if self.windows is None:
            return 0
        for i, (a, b) in enumerate(self.windows):
            if a <= t < b:
                return i
        return None

    def _fits(self, t: float, airtime: float) -> bool:
        if self.windows is None:
            return True
        i = self._window(t)
        return i is not None and t + airtime <= self.windows[i][1]

    def _next_aos(self, t: float) -> float | None:
        if self.windows is None:
            return t
        for a, b in self.windows:
            if a > t or (a <= t < b):
                return max(a, t)
        return None

    # -- main loop --------------------------------------------------------------------
    def _pending_airtime(self) -> float:
        return sum(self.inflight.values())

    def _handle(self, ev: TxReport | Delivery) -> None:
        if isinstance(ev, TxReport):
            self.inflight.pop(ev.seq, None)
            self.now = max(self.now, ev.tx_end_s)
            self.airtime += ev.tx_end_s - ev.tx_start_s
            return
        # Causality: whatever the sender does about this message happens after it arrived.
        self.now = max(self.now, ev.rx_end_s)
        try:
            msg = decode(ev.data)
        except WireError:
            self.malformed_feedback += 1
            return
        self.e.on_reply(msg, ev.rx_end_s, self._rtt())
        if self.e.done:
            self.confirmed_s = ev.rx_end_s

    def _rtt(self) -> float:
        return self.link.rtt_estimate_s()

    def _ack_timer(self) -> float:
        """EOF/PROMPT answer timer: fixed, or a multiple of the link's current RTT estimate."""
        if self.cfg.ack_timer_s is not None:
            return self.cfg.ack_timer_s
        return self.cfg.ack_timer_rtts * self._rtt()

    def run(self, deadline_s: float | None = None) -> UploadRecord:
        """Send until the receiver confirms, the windows run out, or ``deadline_s``."""
        wall0 = time.monotonic()
        while not self.e.done:
            if deadline_s is not None and self.now >= deadline_s:
                break
            sent = self._send_some()
            if self.e.done:
                break
            events = self.link.poll(0.0 if sent else self.cfg.quiet_wall_s)
            for ev in events:
                self._handle(ev)
            if events or sent:
                continue
            if self.inflight:
                # The modem owes us status reports; keep waiting for them.
                events = self.link.poll(self.cfg.quiet_wall_s * 10)
                if not events:
                    raise TransferError("the link stopped reporting sent bursts")
                for ev in events:
                    self._handle(ev)
                continue
            # Quiet: nothing in the modem, nothing delivered. Advance emulated time.
            if not self._advance_quiet():
                break
        return self._record(time.monotonic() - wall0)

    def _send_some(self) -> bool:
        sent = False
        while len(self.inflight) < self.cfg.credit and self.e.has_work():
            t = self.now + self._pending_airtime()
            est = self.link.airtime_s(self._max_msg_bytes)  # the largest message it may send
            if not self._fits(t, est):
                if not self.inflight:
                    self._freeze(t)
                break
            msg = self.e.next_message(t)
            if msg is None:
                break
            data = encode(msg)
            seq = self.link.send(data, t)
            self.inflight[seq] = self.link.airtime_s(len(data))
            w = self._window(t)
            if w is not None:
                self.passes.add(w)  # a pass counts once something was sent in it
            if self.first_tx is None and isinstance(msg, Fragment | MetadataMsg):
                self.first_tx = t
            sent = True
        return sent

    def _freeze(self, t: float) -> None:
        """Outside a window, or a burst would cross LOS: jump to the next window's AOS.

        Timers and retry counters do not run while frozen; the receiver is prompted for its
        gap list at the new AOS.
        """
        i = self._window(t)
        # Inside a window the burst did not fit: the next usable window starts after its LOS.
        start = self.windows[i][1] if (i is not None and self.windows is not None) else t
        nxt = self._next_aos(start)
        if nxt is None or (
            self.windows is not None
            and nxt == start
            and i is not None
            and self._window(nxt) is None
        ):
            self.now = float("inf")  # past the last window: nothing more can be sent
            return
        if nxt <= t:
            raise RuntimeError(f"freeze at t={t} made no progress (next AOS {nxt})")
        log.debug("transfer %s frozen at t=%.3f; resumes at AOS %.3f", self.e.tid.hex(), t, nxt)
        self.now = nxt
        self.e.on_pass_start()

    def _advance_quiet(self) -> bool:
        """Nothing is pending: charge the timer in emulated time, or move to the next pass."""
        if self.now == float("inf"):
            return False
        if self.e.awaiting_since is not None:
            deadline = max(self.now, self.e.awaiting_since + self._ack_timer())
            i = self._window(self.e.awaiting_since)
            if self.windows is not None and (i is None or deadline >= self.windows[i][1]):
                self._freeze(deadline if i is None else self.windows[i][1])  # timer paused
                return self.now != float("inf")
            self.now = deadline
            self.e.on_timeout()
            if self.e.stats["timeouts"] > self.cfg.max_timeouts:
                log.warning(
                    "transfer %s: %d timeouts; giving up",
                    self.e.tid.hex(),
                    self.e.stats["timeouts"],
                )
                return False
            return True
        if not self.e.has_work():
            # Waiting for a reply that was not asked for: ask (EOF) after the timer.
            self.e.on_timeout()
            return True
        # Work is queued but nothing was sent: freeze unless a freeze just moved us to an AOS.
        if self._fits(self.now, self.link.airtime_s(self._max_msg_bytes)):
            return True
        self._freeze(self.now)
        return self.now != float("inf")

    def _record(self, wall_s: float) -> UploadRecord:
        m, res = self.e.m, self.e.result
        status = "incomplete" if res is None else res.status.name.lower()
        accepted = (
            res.accepted_s if res is not None and res.status is FinishedStatus.ACCEPTED else None
        )
        first = self.first_tx if self.first_tx is not None else self.now
        up = (accepted - first) if accepted is not None and accepted == accepted else None
        return UploadRecord(
            transfer_id=self.e.tid.hex(),
            sender=m.sender,
            round=m.round,
            kind=m.kind,
            size_bytes=m.size,
            sha256=m.sha256,
            status=status,
            first_tx_s=first,
            accepted_s=accepted,
            confirmed_s=self.confirmed_s,
            upload_time_s=up,
            wall_s=wall_s,
            passes_used=len(self.passes),
            fragments=self.e.n,
            fragments_sent=self.e.stats["fragments_sent"],
            fragments_retransmitted=self.e.stats["fragments_retransmitted"],
            goodput_bps=(m.size * 8 / up) if up else None,
            airtime_s=self.airtime,
            stats=dict(self.e.stats, malformed_feedback=self.malformed_feedback),
        )

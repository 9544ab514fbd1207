"""Sender side of the payload transfer: a sans-IO engine and the driver that runs it.

The engine decides *what* to send next; the driver decides *when*, in emulated time. The
driver is a small discrete-event simulation of the ground terminal that advances only as far
as it *knows* the link (conservative synchronisation, docs/protocol.md §3):

* it acts at emulated time t only once every feedback message that could arrive by t has
  arrived — the link's **feedback horizon** (the emulator's safe-time markers) is beyond t;
* it learns when its PDUs go on the air from the modem's reports, which it applies at the
  emulated time the modem started the frame; while PDUs are unreported it uses them only up
  to the link's **status horizon**;
* when it cannot act yet, it **promises** the link the earliest time it could send again
  (``advance``), which lets the emulator build frames and advance its own horizons.

So every decision at emulated time t uses exactly the feedback that had reached the terminal
by t, whatever the wall-clock order of messages, process scheduling or CPU load. Wall time is
used only to notice a dead peer. The driver keeps at most ``credit`` PDUs in the modem (from
sending until the end of the frame that carries the PDU's last byte), sends only inside contact
windows, freezes all timers outside them, and prompts the receiver for its gap list at each
new pass, so a transfer resumes from its gaps on a later pass and never restarts from zero.
"""

from __future__ import annotations

import bisect
import heapq
import logging
import math
import time
from collections.abc import Callable
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
    "Horizon",
    "SenderConfig",
    "SenderDriver",
    "SenderEngine",
    "SenderLink",
    "TransferError",
    "TxReport",
    "UploadRecord",
]

log = logging.getLogger(__name__)
INF = math.inf


class TransferError(RuntimeError):
    """The transfer could not go on (a peer stopped answering)."""


@dataclass(frozen=True)
class TxReport:
    """The modem's own view of a sent PDU (no channel outcome).

    Attributes
    ----------
    seq : the link's sequence number of the PDU
    tx_start_s : start of the first frame that carried part of it [emulated s]
    tx_end_s : end of the frame that carried its last byte [emulated s]
    known_s : when the terminal knows this: the start of that last frame [emulated s]
    frames : ``(frame_id, modcod, tx_start, tx_end, info_bits, modcod_rate_bps)`` of the
        frames it rode in (the last: the MODCOD's information rate with full frames)
    """

    seq: int
    tx_start_s: float
    tx_end_s: float
    known_s: float | None = None
    frames: tuple[tuple[Any, ...], ...] = ()

    @property
    def at(self) -> float:
        """Emulated time at which the report is applied."""
        return self.tx_start_s if self.known_s is None else self.known_s


@dataclass(frozen=True)
class Delivery:
    """A message delivered to this node by the link, with its emulated arrival time."""

    data: bytes
    rx_end_s: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Horizon:
    """What the link guarantees: no ``kind`` event before ``t_s`` will come any more.

    ``kind`` is ``"feedback"`` (deliveries: none with ``rx_end`` < t) or ``"status"`` (modem
    reports: every frame starting before t has been reported).
    """

    kind: str
    t_s: float


class SenderLink(Protocol):
    """What the driver needs from a link (emulator over ZeroMQ, or the in-process model)."""

    def send(self, data: bytes, tx_time_s: float) -> int:
        """Queue one PDU at emulated time ``tx_time_s``; returns its sequence number."""
        ...

    def advance(self, t_s: float) -> None:
        """Promise: no PDU with ``tx_time`` < ``t_s`` will follow."""
        ...

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery | Horizon]:
        """Events that arrived (reports of own PDUs, deliveries, horizons)."""
        ...


@dataclass(frozen=True)
class SenderConfig:
    """Sender timers and limits (emulated seconds unless stated).

    credit : PDUs in the modem at most (sent, and not yet wholly on the air)
    ack_timer_s : time to wait for an answer to EOF/PROMPT, from the end of its
        transmission, before asking again
    rtt_s : round-trip bound (a PDU up, the answer down, queueing included) used to tell a
        NAK that predates a resend from a new one
    min_rate_bps : the slowest information rate of the link [bit/s] (the most robust
        MODCOD): a PDU is sent only if, behind what is queued, it ends before LOS at the rate
        of the modem's latest frame (this one until a frame was reported)
    give_up_after_s : emulated time after the first transmission after which the transfer is
        abandoned (None: never while windows last); timers pause outside windows
    predicted_rate : ``t → bit/s``, the information rate the terminal expects of its modem at
        emulated time t without any report (the MODCOD its link budget and orbit predict);
        used for the end-before-LOS check until the modem reported a frame in this window
    peer_timeout_wall_s : wall seconds without any event from the link after which the peer
        is taken for dead (``TransferError`` naming it)
    """

    credit: int = 32
    ack_timer_s: float = 0.5
    rtt_s: float = 0.25
    min_rate_bps: float = 1.0e6
    give_up_after_s: float | None = None
    peer_timeout_wall_s: float = 120.0
    predicted_rate: Callable[[float], float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.credit < 1:
            raise ValueError("credit must be >= 1")
        for name in ("ack_timer_s", "rtt_s", "min_rate_bps", "peer_timeout_wall_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


class SenderEngine:
    """Protocol logic of the sender (what to send, how to react)."""

    def __init__(
        self,
        tid: bytes,
        manifest: Manifest,
        data: bytes,
        cancel_signer: Callable[[bytes, int], bytes] | None = None,
    ) -> None:
        if len(data) != manifest.size:
            raise ValueError("payload size does not match its manifest")
        self.cancel_signer = cancel_signer  # (tid, reason) → signature (nodes.signing)
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
        sig = self.cancel_signer(self.tid, 0) if self.cancel_signer is not None else b""
        return Cancel(self.tid, 0, sig)


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
    frames: int = 0
    modcod_info_bits: int = 0
    modcod_rate_bps: float | None = None
    modcods: dict[str, int] = field(default_factory=dict)
    predicted_shannon_s: float | None = None
    stats: dict[str, int] = field(default_factory=dict)
    already_accepted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SenderDriver:
    """Runs one :class:`SenderEngine` over a :class:`SenderLink` inside contact windows.

    Parameters
    ----------
    windows : sorted (aos_s, los_s) contact windows in emulated time; None = always on
    start_s : emulated time the payload is ready to send
    on_wait : called with (t_from, aos) when the transfer freezes until a later AOS
    hint : ``(rate_bps, link_free_s)`` the previous transfer on this link knew (its
        :meth:`hint`), so a new transfer does not start from the slowest rate
    """

    def __init__(
        self,
        engine: SenderEngine,
        link: SenderLink,
        cfg: SenderConfig | None = None,
        windows: list[tuple[float, float]] | None = None,
        start_s: float = 0.0,
        on_wait: Any = None,
        hint: tuple[float, float] | None = None,
    ) -> None:
        self.e = engine
        self.link = link
        self.cfg = cfg or SenderConfig()
        self.windows = sorted(windows) if windows is not None else None
        self.now = float(start_s)
        self.on_wait = on_wait
        self.first_tx: float | None = None
        self.confirmed_s: float | None = None
        self.passes: set[int] = set()
        self.malformed_feedback = 0
        self._unreported: dict[int, tuple[float, int]] = {}  # seq → (tx_time, bytes)
        self._reports: list[tuple[float, int, TxReport]] = []  # heap by known time
        self._in_modem: list[float] = []  # sorted tx_end of reported PDUs still counted
        self._feedback: list[tuple[float, int, Delivery]] = []  # heap by rx_end
        self._order = 0
        self._fb_horizon = -INF
        self._status_horizon = -INF
        self._link_free = -INF  # latest tx_end the modem reported [s]
        self._queued_bytes = 0  # bytes sent and not yet reported
        self._awaiting_seq: int | None = None  # the EOF/PROMPT whose report starts the timer
        self._rate_bps = self.cfg.min_rate_bps  # the modem's latest information rate [bit/s]
        self._rate_at = -INF
        if hint is not None:
            self._rate_bps = max(self.cfg.min_rate_bps, float(hint[0]))
            self._link_free = float(hint[1])
            self._rate_at = self._link_free  # (about) when that rate was on the air
        self._promised = -INF
        self._frames: dict[int, tuple[str, float, float, int]] = {}
        self._wall_last_event = time.monotonic()
        # Bytes of the largest message the engine can send (METADATA or a full fragment).
        self._max_msg_bytes = max(
            len(encode(MetadataMsg(engine.tid, engine.m))),
            engine.m.fragment_size + HEADER_SIZE + 16,
        )

    # -- contact windows --------------------------------------------------------------
    def _window(self, t: float) -> int | None:
        if self.windows is None:
            return 0
        i = bisect.bisect_right(self.windows, (t, INF)) - 1
        if i >= 0 and self.windows[i][0] <= t < self.windows[i][1]:
            return i
        return None

    def _last_los(self) -> float:
        """The end of the last contact window (∞ without windows)."""
        return self.windows[-1][1] if self.windows else INF

    def _next_aos(self, t: float) -> float | None:
        """The earliest time ≥ t inside a window (None: past the last window)."""
        if self.windows is None:
            return t
        for a, b in self.windows:
            if b > t:
                return max(a, t)
        return None

    def _fits(self, t: float, nbytes: int) -> bool:
        """Would a PDU of ``nbytes`` sent at t end before LOS at the link's slowest rate?"""
        if self.windows is None:
            return True
        i = self._window(t)
        if i is None:
            return False
        start = max(t, self._link_free)
        # queued bytes, with an allowance of 64 bytes of framing per PDU, at the latest rate
        pending = self._queued_bytes + 64 * (len(self._unreported) + 1) + nbytes
        end = start + 8.0 * pending / self._rate_for(t, self.windows[i][0])
        return end <= self.windows[i][1]

    def _rate_for(self, t: float, aos: float) -> float:
        """The rate the queue drains at: the modem's latest reported MODCOD if it reported one
        in this window, else what the link budget predicts at t (else the slowest)."""
        if self._rate_at >= aos or self.cfg.predicted_rate is None:
            return self._rate_bps
        return max(self.cfg.min_rate_bps, float(self.cfg.predicted_rate(t)))

    # -- knowledge ----------------------------------------------------------------------
    def _pump(self, wall_timeout_s: float) -> bool:
        """Move the link's events into the local queues; True if any arrived."""
        events = self.link.poll(wall_timeout_s)
        for ev in events:
            if isinstance(ev, Horizon):
                if ev.kind == "feedback":
                    self._fb_horizon = max(self._fb_horizon, ev.t_s)
                elif ev.kind == "status":
                    self._status_horizon = max(self._status_horizon, ev.t_s)
            elif isinstance(ev, TxReport):
                if ev.seq in self._unreported:
                    self._order += 1
                    heapq.heappush(self._reports, (ev.at, self._order, ev))
            elif isinstance(ev, Delivery):
                self._order += 1
                heapq.heappush(self._feedback, (ev.rx_end_s, self._order, ev))
        if events:
            self._wall_last_event = time.monotonic()
        return bool(events)

    def _status_known(self, t: float) -> bool:
        """Every modem report of an own PDU that applies before t has arrived.

        A report applies just after its frame's start (the terminal learns what a frame holds
        as it goes out), so a decision at t can use the reports of frames that started before
        t — and what it sends at t may still ride in a frame starting at t.
        """
        if not self._unreported or t <= self._status_horizon:
            return True
        # every unreported PDU's report has arrived (and waits in the queue to be applied)
        return sum(1 for r in self._reports if r[2].seq in self._unreported) == len(
            self._unreported
        )

    def _feedback_known(self, t: float) -> bool:
        return t < self._fb_horizon or not self._sent_anything

    @property
    def _sent_anything(self) -> bool:
        return self.e.stats["metadata_sent"] + self.e.stats["fragments_sent"] > 0 or bool(
            self.e.stats.get("other_sent", 0)
        )

    # -- events ---------------------------------------------------------------------------
    def _apply_report(self, rep: TxReport) -> None:
        if rep.seq == self._awaiting_seq:
            self._awaiting_seq = None
            if self.e.awaiting_since is not None:
                self.e.awaiting_since = max(self.e.awaiting_since, rep.tx_end_s)
        tx_bytes = self._unreported.pop(rep.seq, (0.0, 0))[1]
        self._queued_bytes = max(0, self._queued_bytes - tx_bytes)
        self._link_free = max(self._link_free, rep.tx_end_s)
        bisect.insort(self._in_modem, rep.tx_end_s)
        if self.first_tx is None or rep.tx_start_s < self.first_tx:
            self.first_tx = rep.tx_start_s
        for f in rep.frames:
            fid, mc, a, b, bits = f[:5]
            rate = float(f[5]) if len(f) > 5 else 0.0
            if rate > 0 and a >= self._rate_at:
                # the rate of the modem's latest MODCOD: what the queue ahead drains at, for
                # the end-before-LOS check
                self._rate_at = a
                self._rate_bps = max(self.cfg.min_rate_bps, rate)
            if fid not in self._frames:
                self._frames[int(fid)] = (str(mc), float(a), float(b), int(bits), rate)
                w = self._window(float(a))
                if w is not None:
                    self.passes.add(w)
        if not rep.frames:  # a link without frame detail (the in-process model)
            w = self._window(rep.tx_start_s)
            if w is not None:
                self.passes.add(w)

    def _apply_delivery(self, ev: Delivery) -> None:
        try:
            msg = decode(ev.data)
        except WireError:
            self.malformed_feedback += 1
            return
        self.e.on_reply(msg, ev.rx_end_s, self.cfg.rtt_s)
        if self.e.done:
            self.confirmed_s = ev.rx_end_s

    def _in_modem_at(self, t: float) -> int:
        """PDUs occupying credit at t: unreported ones, and reported ones not yet ended."""
        i = bisect.bisect_right(self._in_modem, t)
        del self._in_modem[:i]
        return len(self._unreported) + len(self._in_modem)

    def _credit_time(self) -> float | None:
        """Earliest time ≥ now at which credit is free (None: unknown yet)."""
        if self._in_modem_at(self.now) < self.cfg.credit:
            return self.now
        need = self._in_modem_at(self.now) - self.cfg.credit + 1
        ends = list(self._in_modem)
        if len(ends) >= need:
            return max(self.now, ends[need - 1])
        return None

    def _credit_bound(self) -> float:
        """A lower bound on when credit is free, valid before the reports have arrived.

        Unreported PDUs hold credit; each ends after the status horizon (its last frame starts
        at or after it), so the ``need``-th frame end is at least
        :math:`\\min(e_{need}, T^{status})` over the known ends :math:`e`.
        """
        n = self._in_modem_at(self.now)
        if n < self.cfg.credit:
            return self.now
        need = n - self.cfg.credit + 1
        # ends known: applied reports, and reports that arrived but wait to be applied
        waiting = (r[2].tx_end_s for r in self._reports if r[2].seq in self._unreported)
        ends = sorted([*self._in_modem, *waiting])
        known = ends[need - 1] if len(ends) >= need else INF
        return max(self.now, min(known, self._status_horizon))

    def _timer_bound(self) -> float | None:
        """A lower bound on the answer timer's deadline while the EOF/PROMPT is unreported."""
        if self.e.awaiting_since is None or self._awaiting_seq is None:
            return None
        for r in self._reports:
            if r[2].seq == self._awaiting_seq:
                return max(self.e.awaiting_since, r[2].tx_end_s) + self.cfg.ack_timer_s
        return max(self.now, self._status_horizon) + self.cfg.ack_timer_s

    def _timer_deadline(self) -> float | None:
        """When to ask again: ``ack_timer_s`` after the EOF/PROMPT left the modem (unknown,
        so no deadline, until the modem reported it)."""
        if self.e.awaiting_since is None or self._awaiting_seq is not None:
            return None
        return self.e.awaiting_since + self.cfg.ack_timer_s

    # -- the loop ---------------------------------------------------------------------------
    def run(self, deadline_s: float | None = None) -> UploadRecord:
        """Send until the receiver confirms, the windows run out, or ``deadline_s``."""
        wall0 = time.monotonic()
        self._wall_last_event = wall0
        end = INF if deadline_s is None else float(deadline_s)
        while not self.e.done:
            self._pump(0.0)
            # Past the last window nothing more is sent: what happened up to its LOS settles
            settle = end if self.now != INF else min(end, self._last_los())
            if self._step(settle):
                continue
            if self.now >= settle and self._feedback_known(settle) and self._status_known(settle):
                # every event up to the deadline has arrived and been applied: the record
                # taken now does not depend on how fast the link's events came in
                break
            if self._fb_horizon > end and self._status_known(end):
                # nothing can happen before the deadline any more
                self.now = max(self.now, end)
                break
            if (
                self.cfg.give_up_after_s is not None
                and self.first_tx is not None
                and (self.now - self.first_tx > self.cfg.give_up_after_s)
            ):
                log.warning(
                    "transfer %s: giving up after %.1f s", self.e.tid.hex(),
                    self.now - self.first_tx,
                )  # fmt: skip
                break
            self._promise(settle)
            if not self._pump(1.0):
                idle = time.monotonic() - self._wall_last_event
                if idle > self.cfg.peer_timeout_wall_s:
                    raise TransferError(
                        f"no report, delivery or safe time from the link for {idle:.0f} s "
                        f"(wall) at emulated t = {self.now:.3f} s; is the emulator (and a "
                        "receiver) running?"
                    )
        if self.now != INF:
            self.now = min(max(self.now, self._promised), max(end, self.now))
        return self._record(time.monotonic() - wall0)

    def _candidates(self, end: float) -> list[tuple[float, int, str]]:
        out: list[tuple[float, int, str]] = []
        if self._reports:
            # after everything else at the same instant: a report applies just after its
            # frame's start (see _status_known)
            out.append((self._reports[0][0], 4, "report"))
        if self._feedback:
            out.append((max(self.now, self._feedback[0][0]), 1, "feedback"))
        dl = self._timer_deadline()
        if dl is not None:
            out.append((max(self.now, dl), 2, "timer"))
        if self.e.has_work():
            tc = self._credit_time() if self._status_known(self.now) else None
            if tc is not None:
                out.append((tc, 3, "send"))
        return out

    def _step(self, end: float) -> bool:
        """Process the earliest event if the link's horizons allow; True if one was."""
        cands = self._candidates(end)
        if not cands:
            return False
        t, _, kind = min(cands)
        # Every event is applied in emulated-time order, and only once everything that could
        # precede it has arrived: what the sender knows at t never depends on wall timing.
        # (A report is itself the status up to its time: reports arrive in frame order.)
        if not self._feedback_known(t) or (kind != "report" and not self._status_known(t)):
            return False
        if t >= end:
            # events at the deadline itself belong to the next run: whether an event exactly at
            # it has arrived yet is a matter of wall timing, so a record at the deadline holds
            # exactly the events before it
            return False
        if kind == "report":
            _, _, rep = heapq.heappop(self._reports)
            self.now = max(self.now, t)
            self._apply_report(rep)
            log.debug("t=%r report seq=%d end=%r", t, rep.seq, rep.tx_end_s)
            return True
        if kind == "feedback":
            _, _, ev = heapq.heappop(self._feedback)
            self.now = max(self.now, ev.rx_end_s)
            self._apply_delivery(ev)
            log.debug("t=%r feedback %r", t, ev.data[:24].hex())
            return True
        if kind == "timer":
            i = self._window(self.e.awaiting_since) if self.e.awaiting_since is not None else None
            if self.windows is not None and (i is None or t >= self.windows[i][1]):
                # the window closed while waiting: the timer is frozen until the next AOS
                self._freeze(self.windows[i][1] if i is not None else t)
                return True
            self.now = t
            self.e.on_timeout()
            log.debug("t=%r timeout", t)
            return True
        # send
        self.now = t
        if not self._fits(self.now, self._max_msg_bytes):
            self._freeze(self.now)
            return True
        msg = self.e.next_message(self.now)
        if msg is None:
            return False
        data = encode(msg)
        seq = self.link.send(data, self.now)
        log.debug("t=%r send seq=%d %s %d B", self.now, seq, type(msg).__name__, len(data))
        self._promised = max(self._promised, self.now)
        self._unreported[seq] = (self.now, len(data))
        self._queued_bytes += len(data)
        if isinstance(msg, Eof | Prompt):
            # the answer timer runs from the end of this PDU's transmission (its report)
            self._awaiting_seq = seq
        return True

    def _promise(self, end: float) -> None:
        """Tell the link the earliest time this sender could send again."""
        bounds = [end, self._fb_horizon if self._sent_anything else INF]
        if self._feedback:
            bounds.append(self._feedback[0][0])
        dl = self._timer_deadline()
        if dl is None:
            dl = self._timer_bound()  # the EOF/PROMPT is not reported yet
        if dl is not None:
            bounds.append(dl)
        if self.e.has_work():
            bounds.append(self._credit_bound())
        # past the last window (now = ∞) nothing is sent again: promise up to the settle point
        p = max(self.now, min(bounds)) if self.now != INF else end
        if math.isfinite(p) and p > self._promised:
            self._promised = p
            self.link.advance(p)

    def _freeze(self, t: float) -> None:
        """Outside a window, or a PDU would cross LOS: jump to the next window's AOS.

        Timers do not run while frozen; the receiver is prompted for its gap list at AOS.
        """
        i = self._window(t)
        start = self.windows[i][1] if (i is not None and self.windows is not None) else t
        nxt = self._next_aos(start)
        if nxt is None:
            self.now = INF  # past the last window: nothing more can be sent
            return
        if nxt <= self.now and i is not None:
            nxt = self._next_aos(self.windows[i][1])  # type: ignore[index]
            if nxt is None:
                self.now = INF
                return
        log.debug("transfer %s frozen at t=%.3f; resumes at AOS %.3f", self.e.tid.hex(), t, nxt)
        if self.on_wait is not None:
            self.on_wait(t, nxt)
        self.now = max(self.now, nxt)
        self.e.on_pass_start()

    def hint(self) -> tuple[float, float]:
        """``(rate_bps, link_free_s)``: what this transfer knew of the link at its end (all
        from reports applied by then), to seed the next transfer on the same link."""
        return self._rate_bps, self._link_free

    def cancel(self, t_s: float, wait_s: float) -> Finished | None:
        """Send CANCEL at ``t_s`` and wait up to ``wait_s`` (emulated) for the answer.

        The receiver answers from its record, so a payload it had accepted (FINISHED lost
        on the way back) comes back as accepted. Deterministic: the wait ends at the first
        answer or when the feedback horizon passes ``t_s + wait_s``.
        """
        self.now = max(self.now, t_s)
        seq = self.link.send(encode(self.e.cancel_message()), self.now)
        self._unreported[seq] = (self.now, 0)
        self.e.stats["other_sent"] = self.e.stats.get("other_sent", 0) + 1
        limit = self.now + wait_s
        wall_last = time.monotonic()
        while True:
            if self._pump(0.0):
                wall_last = time.monotonic()
            while self._reports:
                self._apply_report(heapq.heappop(self._reports)[2])
            while self._feedback and self._feedback[0][0] < min(self._fb_horizon, limit):
                _, _, ev = heapq.heappop(self._feedback)
                self.now = max(self.now, ev.rx_end_s)
                try:
                    msg = decode(ev.data)
                except WireError:
                    continue
                if isinstance(msg, Finished) and msg.transfer_id == self.e.tid:
                    return msg
            if self._fb_horizon > limit:
                self.now = max(self.now, limit)
                return None
            if limit > self._promised:
                self._promised = min(limit, max(self._promised, self._fb_horizon))
                self.link.advance(self._promised)
            if not self._pump(1.0) and time.monotonic() - wall_last > self.cfg.peer_timeout_wall_s:
                raise TransferError("no answer from the link to CANCEL (wall timeout)")

    def _record(self, wall_s: float) -> UploadRecord:
        m, res = self.e.m, self.e.result
        status = "incomplete" if res is None else res.status.name.lower()
        accepted = (
            res.accepted_s if res is not None and res.status is FinishedStatus.ACCEPTED else None
        )
        first = self.first_tx if self.first_tx is not None else self.now
        # the receiver had committed this transfer before it began (the same file sent
        # again): accepted, but nothing was uploaded, so there is no upload time
        already = accepted is not None and accepted < first
        up = (accepted - first) if accepted is not None and not already else None
        mods: dict[str, int] = {}
        bits = 0
        air = 0.0
        rate_air = 0.0  # Σ full-frame MODCOD rate × airtime [bit]
        for mc, a, b, nb, rate in self._frames.values():
            mods[mc] = mods.get(mc, 0) + 1
            bits += nb
            air += b - a
            rate_air += rate * (b - a)
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
            airtime_s=air,
            frames=len(self._frames),
            modcod_info_bits=bits,
            modcod_rate_bps=rate_air / air if rate_air > 0 and air > 0 else None,
            modcods=mods,
            stats=dict(self.e.stats, malformed_feedback=self.malformed_feedback),
            already_accepted=already,
        )

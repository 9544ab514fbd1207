"""An in-process discrete-event model of the up/down link, for protocol tests and what-ifs.

It is *not* the emulator: there is no modem, only the link's timing and loss behaviour —
serialised bursts (airtime = (overhead + bytes)·8 / rate), propagation delay, independent
frame loss, duplication, reordering jitter, and the elevation gate (a burst not wholly
inside a contact window is lost, as when the emulator zeroes its samples). It lets the
Hypothesis state-machine test and the efficiency benchmark run thousands of transfers;
the GNU Radio emulator runs the same sender and receiver code over ZeroMQ.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

import numpy as np

from nodes.receiver import ReceiverEngine
from nodes.sender import Delivery, Horizon, SenderConfig, TxReport
from nodes.wire import encode

__all__ = ["SimLinkParams", "SimulatedLink"]


@dataclass(frozen=True)
class SimLinkParams:
    """Link model parameters (rates in bit/s, times in emulated s, probabilities 0..1)."""

    up_rate_bps: float = 2.0e6
    down_rate_bps: float = 2.0e6
    overhead_bytes: int = 32  # preamble, access code, header, CRC
    prop_delay_s: float = 0.003
    loss: float = 0.0
    down_loss: float = 0.0
    duplicate: float = 0.0
    reorder_jitter_s: float = 0.0
    windows: tuple[tuple[float, float], ...] | None = None
    seed: int = 0


class SimulatedLink:
    """A :class:`nodes.sender.SenderLink` whose far end is a :class:`ReceiverEngine`.

    It speaks the emulator's synchronisation contract: each PDU is reported at once (the
    model builds no frames), and the feedback horizon is the earliest time any feedback not
    yet returned could still arrive, given the sender's promise (:meth:`advance`).
    """

    def __init__(self, receiver: ReceiverEngine, params: SimLinkParams) -> None:
        self.rx = receiver
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self._heap: list[tuple[float, int, str, object]] = []
        self._order = itertools.count()
        self._seq = itertools.count()
        self._up_free = -np.inf
        self._down_free = -np.inf
        self._promise = -np.inf
        self._out: list[TxReport | Delivery | Horizon] = []
        self.counters = {
            "up_sent": 0,
            "up_lost": 0,
            "up_gated": 0,
            "down_sent": 0,
            "down_lost": 0,
            "down_gated": 0,
            "duplicated": 0,
        }

    def airtime_s(self, nbytes: int) -> float:
        return (self.p.overhead_bytes + nbytes) * 8.0 / self.p.up_rate_bps

    def _down_air(self, nbytes: int) -> float:
        return (self.p.overhead_bytes + nbytes) * 8.0 / self.p.down_rate_bps

    def rtt_estimate_s(self) -> float:
        return 2.0 * self.p.prop_delay_s + self.airtime_s(1024) + self._down_air(64)

    def sender_config(self, credit: int = 32, **kw: float) -> SenderConfig:
        """Sender timers that fit this model (ack timer 4 × RTT, its rate as the minimum)."""
        rtt = self.rtt_estimate_s()
        return SenderConfig(
            credit=credit,
            ack_timer_s=4 * rtt,
            rtt_s=rtt + credit * self.airtime_s(1024),  # a resend may queue behind credit
            min_rate_bps=self.p.up_rate_bps,
            **kw,
        )

    def _inside(self, a: float, b: float) -> bool:
        if self.p.windows is None:
            return True
        return any(w0 <= a and b <= w1 for w0, w1 in self.p.windows)

    def _push(self, t: float, kind: str, obj: object) -> None:
        heapq.heappush(self._heap, (t, next(self._order), kind, obj))

    def send(self, data: bytes, tx_time_s: float) -> int:
        seq = next(self._seq)
        start = max(tx_time_s, self._up_free, self._promise)
        end = start + self.airtime_s(len(data))
        self._up_free = end
        self._promise = max(self._promise, tx_time_s)
        frame = (seq, "sim", start, end, 8 * len(data), self.p.up_rate_bps)
        self._out.append(TxReport(seq, start, end, start, (frame,)))
        self.counters["up_sent"] += 1
        self._deliver(data, start, end, "rx", self.p.loss, "up")
        return seq

    def advance(self, t_s: float) -> None:
        self._promise = max(self._promise, t_s)

    def _deliver(
        self, data: bytes, start: float, end: float, kind: str, loss: float, d: str
    ) -> None:
        if not self._inside(start, end):
            self.counters[f"{d}_gated"] += 1
            return
        if self.rng.random() < loss:
            self.counters[f"{d}_lost"] += 1
            return
        copies = 2 if self.rng.random() < self.p.duplicate else 1
        self.counters["duplicated"] += copies - 1
        for _ in range(copies):
            jitter = (
                self.rng.uniform(0.0, self.p.reorder_jitter_s) if self.p.reorder_jitter_s else 0
            )
            self._push(end + self.p.prop_delay_s + jitter, kind, data)

    def _send_down(self, data: bytes, t: float) -> None:
        start = max(t, self._down_free)
        end = start + self._down_air(len(data))
        self._down_free = end
        self.counters["down_sent"] += 1
        self._deliver(data, start, end, "fb", self.p.down_loss, "down")

    def poll(self, wall_timeout_s: float) -> list[TxReport | Delivery | Horizon]:
        """Reports, the deliveries now certain, and the feedback horizon (never blocks: the
        model knows exactly what is pending)."""
        del wall_timeout_s
        up_min = self.p.prop_delay_s + self.airtime_s(0)
        down_min = self.p.prop_delay_s + self._down_air(0)
        rx_bound = max(self._promise, self._up_free) + up_min  # no later send arrives earlier
        out = self._out
        self._out = []
        while self._heap:
            t, _, kind, obj = self._heap[0]
            if kind == "rx":
                if t >= rx_bound:
                    break
                heapq.heappop(self._heap)
                for reply in self.rx.handle(obj, t):  # type: ignore[arg-type]
                    self._send_down(encode(reply), t)
                continue
            # feedback: certain once nothing earlier can still be generated
            if t >= rx_bound + down_min:
                break
            heapq.heappop(self._heap)
            out.append(Delivery(obj, t))  # type: ignore[arg-type]
        horizon = rx_bound + down_min
        pending = [t for t, _, k, _ in self._heap if k == "fb"]
        if pending:
            horizon = min(horizon, min(pending))
        horizon = min(horizon, self._earliest_rx() + down_min)
        out.append(Horizon("feedback", horizon))
        out.append(Horizon("status", np.inf))
        return out

    def _earliest_rx(self) -> float:
        rx = [t for t, _, k, _ in self._heap if k == "rx"]
        return min(rx) if rx else np.inf

    def inject(self, data: bytes, t: float) -> None:
        """Deliver raw bytes to the receiver at emulated time ``t`` (fuzzing, forgery)."""
        self._push(t, "rx", data)

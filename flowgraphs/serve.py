"""The emulator process: one GNU Radio top block with every configured link.

Per link::

    ZmqPduSource(in) ──► LinkChannel ──out──► ZmqPduSink(out)
          │ status (stats replies)   └─status─► ZmqPduSink(status)
          └──────────────────────────────────►

``run`` starts the flowgraph, logs a stats line every ``stats_interval_s`` and stops cleanly
on SIGTERM/SIGINT (or when ``stop_event`` is set).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq
from gnuradio import gr

from flowgraphs.config import EmulatorConfig, LinkConfig
from flowgraphs.keys import Keyring, ZapGuard
from flowgraphs.zmq_pdu import ZmqPduSink, ZmqPduSource

if TYPE_CHECKING:
    from flowgraphs.link_channel import LinkChannel

__all__ = ["Emulator", "run"]

log = logging.getLogger("flowgraphs")


@dataclass
class _LinkParts:
    cfg: LinkConfig
    source: ZmqPduSource
    channel: LinkChannel
    out: ZmqPduSink
    status: ZmqPduSink


class Emulator:
    """Builds the top block for ``config`` (binds every endpoint; raises ValueError if one is
    taken)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.tb = gr.top_block("satfl_channel_emulator")
        self.links: list[_LinkParts] = []
        self.guard: ZapGuard | None = None
        self._ctx: zmq.Context | None = None
        try:
            if config.keys is not None:
                # CURVE on every endpoint: one context, one ZAP guard (flowgraphs.keys)
                keys = Keyring(config.keys, config.node)
                self._ctx = zmq.Context()
                self.guard = ZapGuard(self._ctx, keys)
            else:
                log.warning(
                    "no keys configured: the endpoints are not authenticated (anyone who can "
                    "reach them can connect; docs/security.md)"
                )
            for lc in config.links:
                self.links.append(self._build(lc))
        except BaseException:
            self.close()
            raise

    def _build(self, lc: LinkConfig) -> _LinkParts:
        chan = lc.channel()
        parts: list[Any] = []
        g = self.guard
        tx = (lc.tx_node,) if lc.tx_node else ()
        rx = (lc.rx_node,) if lc.rx_node else ()
        try:
            out = ZmqPduSink(lc.out_addr, guard=g, clients=rx)
            parts.append(out)
            status = ZmqPduSink(lc.status_addr, guard=g, clients=tx)
            parts.append(status)
            src = ZmqPduSource(
                lc.in_addr,
                self.config.max_payload_bytes,
                max_tx_time_s=self.config.max_tx_time_s,
                max_in_flight=self.config.max_bursts_in_flight,
                guard=g,
                clients=tx,
            )
        except ValueError:
            for p in parts:
                p.close()
            raise
        lp = _LinkParts(lc, src, chan, out, status)
        src.stats_fn = lambda: self.link_stats(lp)
        src.in_flight_fn = lambda: self.in_flight(lp)
        src.waiting_fn = lambda: chan.scheduler.waiting_for_promise
        self.tb.msg_connect(src, "out", chan, "in")
        self.tb.msg_connect(chan, "out", out, "in")
        self.tb.msg_connect(chan, "status", status, "in")
        self.tb.msg_connect(src, "status", status, "in")
        return lp

    @staticmethod
    def in_flight(lp: _LinkParts) -> int:
        """Bursts the link's input accepted that were neither delivered nor lost yet."""
        return lp.source.stats()["accepted"] - lp.channel.finished()

    @classmethod
    def link_stats(cls, lp: _LinkParts) -> dict[str, Any]:
        """Flat counters of one link (the reply to a ``stats`` request)."""
        s: dict[str, Any] = {"link": lp.cfg.id}
        s.update({f"in_{k}": v for k, v in lp.source.stats().items()})
        s.update(lp.channel.summary())
        s["in_flight"] = cls.in_flight(lp)
        free = lp.channel.scheduler.free_time_s
        s["link_free_s"] = free if math.isfinite(free) else 0.0
        promise = lp.channel.scheduler.promise_s
        s["promise_s"] = promise if math.isfinite(promise) else 0.0
        clock = lp.channel.scheduler.clock_s
        s["clock_s"] = clock if math.isfinite(clock) else 0.0
        s.update({f"out_{k}": v for k, v in lp.out.stats().items()})
        s.update({f"status_{k}": v for k, v in lp.status.stats().items()})
        return s

    def stats(self) -> dict[str, dict[str, Any]]:
        """Counters of every link."""
        return {lp.cfg.id: self.link_stats(lp) for lp in self.links}

    def start(self) -> None:
        self.tb.start()
        for lp in self.links:
            log.info(
                "link %s: in=%s out=%s status=%s (%s, %.4g MBd, %g Msps)",
                lp.cfg.id,
                lp.cfg.in_addr,
                lp.cfg.out_addr,
                lp.cfg.status_addr,
                lp.cfg.modcod,
                lp.cfg.symbol_rate_hz / 1e6,
                lp.cfg.sample_rate_hz / 1e6,
            )

    def stop(self) -> None:
        # wake every wait first (real-time pacing, sends), so the message threads end at once
        for lp in self.links:
            lp.channel.request_stop()
            lp.out.request_stop()
            lp.status.request_stop()
        self.tb.stop()
        self.tb.wait()

    def close(self) -> None:
        for lp in self.links:
            for b in (lp.source, lp.out, lp.status):
                b.close()
        if self.guard is not None:
            self.guard.close()
            self.guard = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None


def run(
    config: EmulatorConfig,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[Emulator], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Serve until SIGTERM/SIGINT or ``stop_event``; return the final stats."""
    stop = stop_event or threading.Event()
    emu = Emulator(config)
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        emu.start()
        if on_ready is not None:
            on_ready(emu)
        interval = config.stats_interval_s
        while not stop.wait(interval if interval > 0 else 1.0):
            if interval > 0:
                log.info("stats %s", json.dumps(emu.stats(), sort_keys=True))
        emu.stop()
        final = emu.stats()
        log.info("final stats %s", json.dumps(final, sort_keys=True))
        return final
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        emu.close()

"""Base class of the burst-oriented stages: one PDU = one burst, processed vectorised.

A burst PDU is ``(meta . vector)``: ``c32vector`` samples, ``u8vector`` bytes or
``f32vector`` soft values. Each stage receives it on message port ``in``, works on the whole
burst as a NumPy array, and publishes the result on ``out``. Following the house rule
"construct loudly, run quietly", a stage raises on bad construction arguments, while a bad
PDU at run time is logged, counted in :attr:`BurstStage.counters` and dropped.

**Control messages** travel the same path, in order with the bursts: a PDU whose metadata has
the key ``_ctl`` (e.g. the link clock's safe-time markers, docs/emulator.md) is handed to
:meth:`BurstStage.control`, which by default forwards it unchanged. Because every stage is a
FIFO, a marker leaves the chain only after every burst that entered before it.

The internal metadata key ``_pdus`` lists the PDUs a frame completes; when a stage drops a
frame, they are counted as lost (``pdus_lost``), so the emulator knows when every accepted
PDU has been delivered or lost.

**By reference.** Between the emulator's own stages a burst travels *by reference*: the PMT
message carries ``{"_ref": n}`` and the NumPy array and the Python metadata dict wait in a
process-local table (:class:`_Store`). Converting the metadata to PMT and back costs ≈ 0.9 ms
per hop for a frame's link record (≈ 25 ns per sample of a 36 000-sample burst) and copying
the samples ≈ 5 ns per sample — more than most stages' own work. A stage with
``out_by_ref = False`` publishes ordinary PMT dicts and uniform vectors, which stock blocks
(``pdu.pdu_to_tagged_stream``, a QT sink, an SDR sink) accept; every stage accepts both.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from flowgraphs.pmt_numpy import (
    c32_to_pmt,
    f32_to_pmt,
    meta_to_pmt,
    pmt_to_c32,
    pmt_to_f32,
    pmt_to_u8,
    u8_to_pmt,
)

__all__ = ["CTL", "BurstStage", "Dropped"]

log = logging.getLogger("flowgraphs")
_REF = "_ref"


class _Store:
    """Bursts in flight between stages of this process, keyed by an integer handle."""

    LIMIT = 100_000  # entries; beyond it the oldest are evicted (a stock block ate them)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[int, tuple[dict[str, Any], Any]] = {}
        self._next = 1
        self.evicted = 0

    def put(self, meta: dict[str, Any], data: Any) -> int:
        with self._lock:
            ref = self._next
            self._next += 1
            self._items[ref] = (meta, data)
            if len(self._items) > self.LIMIT:
                self._items.pop(next(iter(self._items)))
                self.evicted += 1
                if self.evicted in (1, 10, 100, 1000):
                    log.warning(
                        "burst store: %d entries evicted (a consumer drops them)", self.evicted
                    )
            return ref

    def take(self, ref: int) -> tuple[dict[str, Any], Any]:
        with self._lock:
            return self._items.pop(ref)


_STORE = _Store()

CTL = "_ctl"  # metadata key of control messages
_KINDS = ("c32", "u8", "f32")
_FROM_PMT = {"c32": pmt_to_c32, "u8": pmt_to_u8, "f32": pmt_to_f32}
_EMPTY = {
    "c32": lambda: pmt.make_c32vector(0, 0),
    "u8": lambda: pmt.make_u8vector(0, 0),
    "f32": lambda: pmt.make_f32vector(0, 0.0),
}


def _to_pmt(kind: str, data: Any) -> pmt.pmt_base:
    if kind == "c32":
        return c32_to_pmt(np.asarray(data))
    if kind == "f32":
        return f32_to_pmt(np.asarray(data))
    return u8_to_pmt(bytes(data))


class Dropped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by :meth:`BurstStage.process` to drop a burst; the message names the counter."""


class BurstStage(gr.basic_block):
    """A message-port block that applies :meth:`process` to each burst.

    Parameters
    ----------
    name : block name
    in_kind, out_kind : "c32", "u8" or "f32", the vector type on ``in`` / ``out``
    """

    def __init__(self, name: str, in_kind: str = "c32", out_kind: str = "c32") -> None:
        gr.basic_block.__init__(self, name=name, in_sig=None, out_sig=None)
        if in_kind not in _KINDS or out_kind not in _KINDS:
            raise ValueError(f"vector kinds must be one of {_KINDS}")
        self._in_kind, self._out_kind = in_kind, out_kind
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "in": 0,
            "out": 0,
            "dropped": 0,
            "bad_input": 0,
            "pdus_lost": 0,
        }
        self.busy_s = 0.0  # wall-clock seconds spent in process() [s]
        self.cpu_s = 0.0  # thread CPU seconds spent in process() [s]
        self.samples = 0  # samples processed (input vector lengths)
        self._pmt_out = pmt.intern("out")
        #: publish bursts by reference (to another stage of this process) or as plain PMT
        self.out_by_ref = False

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def stats(self) -> dict[str, Any]:
        """Counters, busy wall and CPU time [s] and samples processed."""
        with self._lock:
            return {
                **self.counters,
                "busy_s": self.busy_s,
                "cpu_s": self.cpu_s,
                "samples": self.samples,
            }

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any] | None:
        """Transform one burst; return ``(meta, data)`` to publish, or None (nothing, or the
        stage published by itself with :meth:`publish`)."""
        raise NotImplementedError

    def control(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        """Handle a control message; returns the control messages to forward (default: it)."""
        return [meta]

    def _message(self, meta: dict[str, Any], data: Any, kind: str) -> pmt.pmt_base:
        if self.out_by_ref:
            ref = _STORE.put(meta, data)
            handle = pmt.dict_add(pmt.make_dict(), pmt.intern(_REF), pmt.from_long(ref))
            return pmt.cons(handle, _EMPTY[kind]())
        return pmt.cons(meta_to_pmt(meta), _to_pmt(kind, data))

    def publish(self, meta: dict[str, Any], data: Any, kind: str | None = None) -> None:
        """Publish ``(meta . data)`` on ``out`` (``kind`` defaults to the stage's out kind)."""
        self.message_port_pub(self._pmt_out, self._message(meta, data, kind or self._out_kind))
        self.count("out")

    def publish_control(self, meta: dict[str, Any]) -> None:
        """Publish a control message (empty vector of the out kind) on ``out``."""
        if self.out_by_ref:
            self.message_port_pub(self._pmt_out, self._message(meta, None, self._out_kind))
        else:
            self.message_port_pub(
                self._pmt_out, pmt.cons(meta_to_pmt(meta), _EMPTY[self._out_kind]())
            )

    def _decode(self, msg: pmt.pmt_base) -> tuple[dict[str, Any], Any, bool]:
        """(meta, data or None for control, by_ref) of an input message; raises on bad input."""
        if not pmt.is_pair(msg) or not pmt.is_dict(pmt.car(msg)):
            raise TypeError("PDU is not a (dict . vector) pair")
        car = pmt.car(msg)
        ref = pmt.dict_ref(car, pmt.intern(_REF), pmt.PMT_NIL)
        if not pmt.is_null(ref):
            meta, data = _STORE.take(pmt.to_long(ref))
            return meta, data, True
        meta = pmt.to_python(car) or {}
        if not isinstance(meta, dict):
            raise TypeError("PDU metadata is not a dict")
        if CTL in meta:
            return meta, None, False
        return meta, _FROM_PMT[self._in_kind](pmt.cdr(msg)), False

    def _handle(self, msg: pmt.pmt_base) -> None:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        try:
            meta, data, _ = self._decode(msg)
        except (TypeError, ValueError, RuntimeError, OverflowError, KeyError) as e:
            self.count("in")
            self._drop("bad_input", f"dropped a bad PDU: {e}")
            return
        if CTL in meta:
            try:
                fwd = self.control(meta)
            except Exception:  # a bug must not stop the flowgraph
                self.count("internal_error")
                log.exception("%s: internal error on a control message; dropped", self.name())
                return
            for m in fwd:
                self.publish_control(m)
            return
        self.count("in")
        n = len(data) if data is not None else 0
        out = None
        dropped = False
        try:
            out = self.process(meta, data)
        except Dropped as e:
            self.count(str(e))
            dropped = True
        except (ValueError, KeyError, TypeError, FloatingPointError, OverflowError) as e:
            self.count("bad_input")
            log.warning("%s: dropped a burst: %s", self.name(), e)
            dropped = True
        except Exception:  # a bug must not stop the flowgraph: log it, count it, go on
            self.count("internal_error")
            log.exception("%s: internal error on a burst; dropped", self.name())
            dropped = True
        if out is not None:
            try:
                self.publish(*out)
            except (TypeError, ValueError) as e:
                self.count("bad_output")
                log.warning("%s: cannot publish a burst: %s", self.name(), e)
                dropped = True
        if dropped:
            self.count("dropped")
            pdus = meta.get("_pdus")
            if isinstance(pdus, list | tuple):
                self.count("pdus_lost", len(pdus))
        with self._lock:
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0
            self.samples += n

    def _drop(self, counter: str, why: str) -> None:
        self.count(counter)
        self.count("dropped")
        log.warning("%s: %s", self.name(), why)

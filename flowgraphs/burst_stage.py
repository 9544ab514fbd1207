"""Base class of the burst-oriented stages: one PDU = one burst, processed vectorised.

A burst PDU is ``(meta . c32vector)`` (or ``u8vector`` at the ends of the chain). Each stage
receives it on message port ``in``, works on the whole burst as a NumPy array, and publishes
the result on ``out``. Following the house rule "construct loudly, run quietly", a stage
raises on bad construction arguments, while a bad PDU at run time is logged, counted in
:attr:`BurstStage.counters` and dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from flowgraphs.pmt_numpy import c32_to_pmt, meta_to_pmt, pmt_to_c32, pmt_to_u8, u8_to_pmt

__all__ = ["BurstStage", "Dropped"]

log = logging.getLogger("flowgraphs")


class Dropped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by :meth:`BurstStage.process` to drop a burst; the message names the counter."""


class BurstStage(gr.basic_block):
    """A message-port block that applies :meth:`process` to each burst.

    Parameters
    ----------
    name : block name
    in_kind, out_kind : "c32" or "u8", the vector type of the PDU on ``in`` / ``out``
    """

    def __init__(self, name: str, in_kind: str = "c32", out_kind: str = "c32") -> None:
        gr.basic_block.__init__(self, name=name, in_sig=None, out_sig=None)
        if in_kind not in ("c32", "u8") or out_kind not in ("c32", "u8"):
            raise ValueError("vector kinds must be 'c32' or 'u8'")
        self._in_kind, self._out_kind = in_kind, out_kind
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {"in": 0, "out": 0, "dropped": 0, "bad_input": 0}
        self.busy_s = 0.0  # wall-clock seconds spent in process() [s]
        self.samples = 0  # samples processed (input vector lengths)

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to counter ``key``."""
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def stats(self) -> dict[str, Any]:
        """Counters, busy time [s] and samples processed."""
        with self._lock:
            return {**self.counters, "busy_s": self.busy_s, "samples": self.samples}

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any] | None:
        """Transform one burst; return ``(meta, data)`` to publish, or None to drop silently."""
        raise NotImplementedError

    def _handle(self, msg: pmt.pmt_base) -> None:
        t0 = time.perf_counter()
        self.count("in")
        n = 0
        try:
            if not pmt.is_pair(msg) or not pmt.is_dict(pmt.car(msg)):
                raise TypeError("PDU is not a (dict . vector) pair")
            meta = pmt.to_python(pmt.car(msg)) or {}
            vec = pmt.cdr(msg)
            data: Any = pmt_to_c32(vec) if self._in_kind == "c32" else pmt_to_u8(vec)
            n = len(data)
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            self._drop("bad_input", f"dropped a bad PDU: {e}")
            return
        try:
            out = self.process(meta, data)
            if out is not None:
                meta_out, data_out = out
                vec_out = (
                    c32_to_pmt(np.asarray(data_out))
                    if self._out_kind == "c32"
                    else u8_to_pmt(bytes(data_out))
                )
                out = (meta_to_pmt(meta_out), vec_out)
        except Dropped as e:
            self.count(str(e))
            out = None
        except (ValueError, KeyError, TypeError, FloatingPointError, OverflowError) as e:
            self.count("bad_input")
            log.warning("%s: dropped a burst: %s", self.name(), e)
            out = None
        except Exception:  # a bug must not stop the flowgraph: log it, count it, go on
            self.count("internal_error")
            log.exception("%s: internal error on a burst; dropped", self.name())
            out = None
        if out is not None:
            self.message_port_pub(pmt.intern("out"), pmt.cons(*out))
            self.count("out")
        else:
            self.count("dropped")
        with self._lock:
            self.busy_s += time.perf_counter() - t0
            self.samples += n

    def _drop(self, counter: str, why: str) -> None:
        self.count(counter)
        self.count("dropped")
        log.warning("%s: %s", self.name(), why)

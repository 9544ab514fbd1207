"""In-process message endpoints: inject PDUs into a flowgraph and collect what comes out.

Used by ``testbed channel bench`` / ``per`` and by the tests; a deployment uses the ZeroMQ
blocks of :mod:`flowgraphs.zmq_pdu` instead.
"""

from __future__ import annotations

import threading
from typing import Any

import pmt
from gnuradio import gr

from flowgraphs.pmt_numpy import meta_to_pmt, pmt_to_c32, pmt_to_u8, u8_to_pmt

__all__ = ["PduCollector", "PduInjector"]


def _is_pdu(meta: dict[str, Any]) -> bool:
    """A delivered PDU, not one of the link clock's ``{"cmd": "safe"}`` markers."""
    return meta.get("cmd") != "safe"


class PduInjector(gr.basic_block):
    """Publishes PDUs given by :meth:`send` on message port ``out``."""

    def __init__(self) -> None:
        gr.basic_block.__init__(self, name="satfl_pdu_injector", in_sig=None, out_sig=None)
        self.message_port_register_out(pmt.intern("out"))

    def send(self, meta: dict[str, Any], payload: bytes) -> None:
        """Publish ``(meta . u8vector(payload))``."""
        self.message_port_pub(pmt.intern("out"), pmt.cons(meta_to_pmt(meta), u8_to_pmt(payload)))


class PduCollector(gr.basic_block):
    """Stores every PDU arriving on ``in`` as ``(meta dict, bytes or complex64 array)``."""

    def __init__(self) -> None:
        gr.basic_block.__init__(self, name="satfl_pdu_collector", in_sig=None, out_sig=None)
        self.message_port_register_in(pmt.intern("in"))
        self.set_msg_handler(pmt.intern("in"), self._handle)
        self.items: list[tuple[dict[str, Any], Any]] = []
        self._cond = threading.Condition()

    def _handle(self, msg: pmt.pmt_base) -> None:
        meta = pmt.to_python(pmt.car(msg)) or {}
        vec = pmt.cdr(msg)
        data = pmt_to_c32(vec) if pmt.is_c32vector(vec) else pmt_to_u8(vec)
        with self._cond:
            self.items.append((meta, data))
            self._cond.notify_all()

    def data_items(self) -> list[tuple[dict[str, Any], Any]]:
        """The items that are PDUs, without the link clock's ``{"cmd": "safe"}`` markers."""
        with self._cond:
            return [(m, d) for m, d in self.items if _is_pdu(m)]

    def wait_for(self, n: int, timeout_s: float, data_only: bool = False) -> bool:
        """Block until ``n`` items (``n`` PDUs, not counting safe-time markers, with
        ``data_only``) have arrived or ``timeout_s`` (wall) passed."""

        def enough() -> bool:
            if not data_only:
                return len(self.items) >= n
            return sum(_is_pdu(m) for m, _ in self.items) >= n

        with self._cond:
            return self._cond.wait_for(enough, timeout=timeout_s)

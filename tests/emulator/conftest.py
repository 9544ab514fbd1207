"""Fixtures of the emulator tests: a flowgraph harness and a real contact window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def run_stage(stage: Any, items: list[tuple[dict[str, Any], Any]], timeout_s: float = 60.0):
    """Push ``(meta, data)`` PDUs through one message block in a running top block and
    return what it publishes on ``out`` (GNU Radio and the stage's threads are real)."""
    import pmt
    from gnuradio import gr

    from flowgraphs.msg_io import PduCollector, PduInjector
    from flowgraphs.pmt_numpy import c32_to_pmt, u8_to_pmt

    tb = gr.top_block()
    inj, col = PduInjector(), PduCollector()
    tb.msg_connect(inj, "out", stage, "in")
    tb.msg_connect(stage, "out", col, "in")
    tb.start()
    try:
        for meta, data in items:
            vec = (
                u8_to_pmt(bytes(data))
                if isinstance(data, bytes | bytearray)
                else c32_to_pmt(np.asarray(data, dtype=np.complex64))
            )
            inj.message_port_pub(pmt.intern("out"), pmt.cons(pmt.to_pmt(meta), vec))
        col.wait_for(len(items), timeout_s)
    finally:
        tb.stop()
        tb.wait()
    return col.items


@pytest.fixture(scope="session")
def best_pass():
    """The highest pass of the default link over one day: (geometry, ContactWindow)."""
    import channel

    geo = channel.default_link_geometry(seed=1)
    wins = channel.contact_windows(geo.orbit, geo.site, 0.0, 86400.0, 10.0)
    return geo, max(wins, key=lambda w: w.max_elevation_deg)

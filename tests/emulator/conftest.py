"""Fixtures of the emulator tests: flowgraph harnesses and a real contact window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def run_stage(
    stage: Any,
    items: list[tuple[dict[str, Any], Any]],
    timeout_s: float = 60.0,
    expect: int | None = None,
):
    """Push ``(meta, data)`` PDUs through one message block in a running top block and
    return what it publishes on ``out`` (GNU Radio and the stage's threads are real);
    ``expect``: how many come out (default all)."""
    import pmt
    from gnuradio import gr

    from flowgraphs.msg_io import PduCollector, PduInjector
    from flowgraphs.pmt_numpy import c32_to_pmt, f32_to_pmt, meta_to_pmt, u8_to_pmt

    tb = gr.top_block()
    inj, col = PduInjector(), PduCollector()
    tb.msg_connect(inj, "out", stage, "in")
    tb.msg_connect(stage, "out", col, "in")
    tb.start()
    try:
        for meta, data in items:
            if isinstance(data, bytes | bytearray):
                vec = u8_to_pmt(bytes(data))
            elif np.asarray(data).dtype == np.float32:
                vec = f32_to_pmt(np.asarray(data))
            else:
                vec = c32_to_pmt(np.asarray(data, dtype=np.complex64))
            inj.message_port_pub(pmt.intern("out"), pmt.cons(meta_to_pmt(meta), vec))
        col.wait_for(len(items) if expect is None else expect, timeout_s)
    finally:
        tb.stop()
        tb.wait()
    return col.items


def static_link(
    esn0_db: float = 20.0,
    modcod: str = "acm",
    fading: Any = None,
    doppler_hz: float = 300.0,
    seed: int = 1,
    rolloff: float = 0.05,
    fs: float = 5.0e6,
    max_iterations: int = 50,
    margin_db: float = 1.0,
) -> Any:
    """A :class:`LinkChannel` over a static link at Es/N0 ``esn0_db`` (noise bandwidth = R_s)."""
    from flowgraphs.burst_scheduler import AcmPolicy
    from flowgraphs.link_channel import LinkChannel
    from flowgraphs.modem import ModemConfig
    from flowgraphs.static_link import StaticLink

    rs = fs / (1 + rolloff)
    cfg = ModemConfig(fs, rs, rolloff, 1440, 5.0)
    return LinkChannel(
        "t",
        StaticLink(snr_db=esn0_db, doppler_hz=doppler_hz),
        fading,
        cfg,
        noise_bandwidth_hz=rs,
        policy=AcmPolicy(modcod, margin_db),
        seed=seed,
        doppler_precomp="none",
        max_iterations=max_iterations,
    )


@pytest.fixture(scope="session")
def best_pass():
    """The highest pass of the default link over one day: (geometry, ContactWindow)."""
    import channel

    geo = channel.default_link_geometry(seed=1)
    wins = channel.contact_windows(geo.orbit, geo.site, 0.0, 86400.0, 10.0)
    return geo, max(wins, key=lambda w: w.max_elevation_deg)

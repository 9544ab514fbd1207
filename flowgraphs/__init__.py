"""GNU Radio channel emulator: a burst modem through Rician fading, Doppler and
elevation-gated outages on the emulated link clock (see docs/emulator.md).

The NumPy-only modules (:mod:`flowgraphs.frame`, :mod:`flowgraphs.modem`; the error-rate
theory is :mod:`channel.theory`) import without GNU Radio; the block classes below are imported
lazily on first use, so ``import flowgraphs`` never needs GNU Radio.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "AwgnStage",
    "BurstDemodulator",
    "BurstModulator",
    "BurstScheduler",
    "CrcCheck",
    "DopplerStage",
    "ElevationGate",
    "LinkChannel",
    "PduCollector",
    "PduInjector",
    "RicianFadingStage",
    "StaticLink",
    "ZmqPduSink",
    "ZmqPduSource",
]

_WHERE = {
    "AwgnStage": "flowgraphs.impairments",
    "BurstDemodulator": "flowgraphs.burst_demodulator",
    "BurstModulator": "flowgraphs.burst_modulator",
    "BurstScheduler": "flowgraphs.burst_scheduler",
    "CrcCheck": "flowgraphs.crc_check",
    "DopplerStage": "flowgraphs.impairments",
    "ElevationGate": "flowgraphs.impairments",
    "LinkChannel": "flowgraphs.link_channel",
    "PduCollector": "flowgraphs.msg_io",
    "PduInjector": "flowgraphs.msg_io",
    "RicianFadingStage": "flowgraphs.impairments",
    "StaticLink": "flowgraphs.static_link",
    "ZmqPduSink": "flowgraphs.zmq_pdu",
    "ZmqPduSource": "flowgraphs.zmq_pdu",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'flowgraphs' has no attribute {name!r}")

"""Deframer block: ``(meta . u8 packets)`` of each decoded frame → the PDUs it completes.

Splits the frame's packet area (:func:`flowgraphs.gse.unpack`), reassembles fragmented PDUs
across consecutive frames (:class:`flowgraphs.gse.Reassembler`, which drops a partial PDU when
the PL frame counter shows a frame was lost) and publishes each completed PDU (its body still
carries its CRC-32, checked next). The metadata of a delivered PDU is what its sender set,
plus the link record of the frame that completed it; ``tx_start`` is the start of the PDU's
first frame and ``frames`` the number of frames it spanned. A PDU the frame should have
completed but could not (its earlier part was lost) is counted in ``pdus_lost``.
"""

from __future__ import annotations

from typing import Any

from flowgraphs import gse
from flowgraphs import pdu as wire
from flowgraphs.burst_stage import BurstStage, Dropped

__all__ = ["Deframer"]

_LINK_KEYS = (
    wire.KEY_LINK,
    wire.KEY_TX_END,
    wire.KEY_PROP_DELAY_S,
    wire.KEY_RX_END,
    wire.KEY_SNR_DB,
    "esn0_db",
    "esn0_pred_db",
    wire.KEY_ELEVATION_DEG,
    wire.KEY_DOPPLER_HZ,
    wire.KEY_DOPPLER_RATE_HZ_PER_S,
    wire.KEY_MODCOD,
    "frame_id",
    "fading_gain_db",
    "gated_fraction",
    "doppler_applied_hz",
    "freq_est_hz",
    "esn0_est_db",
    "sync_metric",
    "ldpc_iterations",
    "_wall_t0",
)


class Deframer(BurstStage):
    """GSE-style reassembly of the PDUs in consecutive frames of one link."""

    def __init__(self) -> None:
        super().__init__("satfl_deframer", "u8", "u8")
        self.reassembler = gse.Reassembler()

    def process(self, meta: dict[str, Any], data: Any) -> None:
        pieces = gse.unpack(bytes(data))
        if pieces is None:
            raise Dropped("bad_packets")
        done = self.reassembler.push(int(meta["_rx_counter"]), pieces)
        expect = {int(p["pid"]): p for p in meta.get("_pdus", [])}
        record = {k: meta[k] for k in _LINK_KEYS if k in meta}
        for pid, body in done:
            info = expect.pop(pid, None)
            if info is None:
                self.count("unmatched")
                continue
            out = dict(info.get("meta", {}))
            out.update(record)
            first = info.get("first_tx_s")
            out[wire.KEY_TX_START] = float(first) if first is not None else meta[wire.KEY_TX_START]
            out[wire.KEY_AIRTIME_S] = float(meta[wire.KEY_TX_END]) - out[wire.KEY_TX_START]
            out["frames"] = int(info.get("frames", 1))
            self.publish(out, body)
        if expect:
            self.count("pdus_lost", len(expect))
        return None

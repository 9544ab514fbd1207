"""Receiver block: ``(meta . c32 samples)`` → ``(meta . f32 LLRs)`` via :class:`modem.Receiver`.

The receiver uses the samples only: burst position, carrier offset, timing, phase, gain,
MODCOD and length are all estimated (:mod:`flowgraphs.modem`). The metadata travels alongside
for bookkeeping (sender keys, emulated times) and is never read by the synchroniser; what the
receiver decoded from the PL header goes on in ``_rx_*`` keys for the LDPC decoder. Frames lost
before decoding are counted by reason (``lost_no_sync``, ``lost_header``, ``lost_truncated``).
"""

from __future__ import annotations

from typing import Any

from flowgraphs.burst_stage import BurstStage, Dropped
from flowgraphs.modcod import by_id
from flowgraphs.modem import ModemConfig, Receiver

__all__ = ["BurstDemodulator"]


class BurstDemodulator(BurstStage):
    """Blind burst receiver.

    Parameters
    ----------
    modem : the link's :class:`flowgraphs.modem.ModemConfig` (as the modulator's)
    """

    def __init__(self, modem: ModemConfig) -> None:
        super().__init__("satfl_burst_demodulator", "c32", "f32")
        self.rx = Receiver(modem)

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        res = self.rx.receive(data)
        if res.reason != "ok" or res.header is None or res.llr is None:
            raise Dropped(f"lost_{res.reason}")
        mc = by_id(res.header.modcod_id)
        meta["rx_modcod"] = mc.name if mc is not None else ""
        meta["_rx_modcod_id"] = res.header.modcod_id
        meta["_rx_df_len"] = res.header.df_len
        meta["_rx_counter"] = res.header.counter
        meta["freq_est_hz"] = res.freq_offset_hz
        meta["esn0_est_db"] = res.esn0_est_db
        meta["sync_metric"] = res.metric
        return meta, res.llr

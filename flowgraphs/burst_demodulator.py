"""Receiver block: ``(meta . c32 samples)`` → ``(meta . u8 body)`` via :class:`modem.Receiver`.

The receiver uses the samples only: burst position, carrier offset, timing, phase, gain,
modulation and length are all estimated (:mod:`flowgraphs.modem`). The metadata travels
alongside for bookkeeping (sender keys, emulated times) and is never read by the
synchroniser. Frames lost before the CRC check are counted by reason (``no_sync``, ``asm``,
``header``, ``truncated``).
"""

from __future__ import annotations

from typing import Any

from flowgraphs import modem
from flowgraphs.burst_stage import BurstStage, Dropped

__all__ = ["BurstDemodulator"]


class BurstDemodulator(BurstStage):
    """Blind burst receiver.

    Parameters
    ----------
    sample_rate_hz : f_s [Hz]
    symbol_rate_hz : R_s [Hz]
    rolloff : RRC roll-off α (as the modulator's)
    """

    def __init__(self, sample_rate_hz: float, symbol_rate_hz: float, rolloff: float = 0.35) -> None:
        super().__init__("satfl_burst_demodulator", "c32", "u8")
        sps = sample_rate_hz / symbol_rate_hz
        if abs(sps - round(sps)) > 1e-9 or round(sps) < 2:
            raise ValueError(f"sample rate / symbol rate = {sps:g} must be an integer >= 2")
        self.sps = round(sps)
        self.rx = modem.Receiver(self.sps, sample_rate_hz, modem.rrc_taps(self.sps, rolloff))

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        res = self.rx.demodulate(data)
        if res.body is None:
            raise Dropped(f"lost_{res.reason}")
        meta["rx_modulation"] = res.modulation
        meta["freq_est_hz"] = res.freq_offset_hz
        meta["esn0_est_db"] = res.esn0_est_db
        meta["sync_metric"] = res.metric
        return meta, res.body

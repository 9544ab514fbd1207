"""Framer + modulator block: ``(meta . u8 body)`` → ``(meta . c32 baseband burst)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flowgraphs import frame, modem
from flowgraphs.burst_stage import BurstStage, Dropped
from testbed import pdu as wire

__all__ = ["BurstModulator", "select_modulation"]

#: Es/N0 [dB] each modulation needs for FER ≈ 1e-2 at 1 kB (uncoded, with a 1 dB margin)
ESN0_REQUIRED_DB = {"bpsk": 11.0, "qpsk": 14.0, "8psk": 19.5, "16qam": 21.5}


def select_modulation(esn0_db: float) -> str:
    """Highest-order modulation whose Es/N0 requirement (:data:`ESN0_REQUIRED_DB`) is met."""
    best = "bpsk"
    for name in modem.MODULATIONS:
        if esn0_db >= ESN0_REQUIRED_DB[name]:
            best = name
    return best


class BurstModulator(BurstStage):
    """Frames and modulates the PDU body (payload ‖ CRC-32 from ``digital.crc_append``).

    Parameters
    ----------
    sample_rate_hz : sample rate f_s [Hz]
    symbol_rate_hz : symbol rate R_s [Hz]; f_s / R_s must be an integer ≥ 2
    modulation : "bpsk", "qpsk", "8psk", "16qam", or "adaptive" (per burst, from the
        predicted Es/N0 given by ``predict_esn0_db(tx_time)``)
    rolloff : RRC roll-off α
    predict_esn0_db : callable emulated time [s] → predicted Es/N0 [dB] (adaptive only)

    Output metadata adds ``modulation``, ``n_samples`` and ``_sig_power`` (mean |s|² of the
    burst, the reference of the noise level).
    """

    def __init__(
        self,
        sample_rate_hz: float,
        symbol_rate_hz: float,
        modulation: str = "qpsk",
        rolloff: float = 0.35,
        predict_esn0_db: Callable[[float], float] | None = None,
    ) -> None:
        super().__init__("satfl_burst_modulator", "u8", "c32")
        sps = sample_rate_hz / symbol_rate_hz
        if abs(sps - round(sps)) > 1e-9 or round(sps) < 2:
            raise ValueError(f"sample rate / symbol rate = {sps:g} must be an integer >= 2")
        if modulation != "adaptive" and modulation not in modem.MODULATIONS:
            raise ValueError(f"unknown modulation {modulation!r}")
        if modulation == "adaptive" and predict_esn0_db is None:
            raise ValueError("adaptive modulation needs predict_esn0_db")
        if not 0.0 < rolloff <= 1.0:
            raise ValueError("rolloff must be in (0, 1]")
        self.sps = round(sps)
        self.modulation = modulation
        self.taps = modem.rrc_taps(self.sps, rolloff)
        self._predict = predict_esn0_db

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        body = bytes(data)
        if not 0 < len(body) <= frame.MAX_BODY_BYTES:
            raise Dropped("bad_length")
        mod = self.modulation
        if mod == "adaptive":
            assert self._predict is not None
            mod = select_modulation(self._predict(float(meta.get(wire.KEY_TX_TIME, 0.0))))
        x = modem.modulate(body, mod, self.sps, self.taps)
        meta[wire.KEY_MODULATION] = mod
        meta["n_samples"] = int(x.size)
        meta["_sig_power"] = float(np.mean(np.abs(x) ** 2))
        return meta, x

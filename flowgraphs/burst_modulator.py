"""Modulator block: ``(meta . u8 data field)`` → ``(meta . c32 burst)``.

The link clock (:class:`flowgraphs.burst_scheduler.BurstScheduler`) decided the frame's MODCOD,
start time and content; this block LDPC-encodes, interleaves and maps it
(:class:`flowgraphs.modem.Transmitter`), pulse-shapes it with the propagation delay's
fractional part folded into the pulse, and puts the seeded random lead-in (1 … 64 symbols of
silence the receiver must search) and a short tail around it.

Output metadata adds ``n_samples``, ``_sig_power`` (mean :math:`|s|^2` over the burst's
symbols, the reference of the noise level) and ``_t0``, the emulated time of sample 0:
symbol k's pulse peak is at :math:`t_{tx} + (k + \\tfrac12)/R_s`, so
:math:`t_0 = t_{tx} + \\tfrac{1}{2R_s} - (L + n_0)/f_s` with L the lead-in and
:math:`n_0` the pulse delay in samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowgraphs import pdu as wire
from flowgraphs.burst_stage import BurstStage, Dropped
from flowgraphs.modcod import by_id
from flowgraphs.modem import ModemConfig, Transmitter

__all__ = ["BurstModulator"]

_TAIL_SYMBOLS = 8


class BurstModulator(BurstStage):
    """Encodes, maps and pulse-shapes one frame per PDU.

    Parameters
    ----------
    modem : the link's :class:`flowgraphs.modem.ModemConfig`
    """

    def __init__(self, modem: ModemConfig) -> None:
        super().__init__("satfl_burst_modulator", "u8", "c32")
        self.modem = modem
        self.tx = Transmitter(modem)

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        mc = by_id(int(meta["_modcod_id"]))
        if mc is None:
            raise Dropped("bad_modcod")
        df = bytes(data)
        fr = self.tx.build(mc, df, int(meta["_counter"]))
        wave, n0 = self.tx.waveform(fr.symbols, float(meta.get("_frac_delay", 0.0)))
        rho = self.modem.sps
        lead = int(round(int(meta.get("_lead_symbols", 1)) * rho))
        tail = int(round(_TAIL_SYMBOLS * rho))
        x = np.zeros(lead + wave.size + tail, dtype=np.complex64)
        x[lead : lead + wave.size] = wave
        a = int(n0)
        b = int(n0 + fr.layout.n_symbols * rho)
        seg = wave[a:b]
        meta["_sig_power"] = float(np.vdot(seg, seg).real / max(seg.size, 1))
        meta["n_samples"] = int(x.size)
        meta["_t0"] = (
            float(meta[wire.KEY_TX_START])
            + 0.5 / self.modem.symbol_rate_hz
            - (lead + n0) / self.modem.sample_rate_hz
        )
        meta["n_symbols"] = int(fr.layout.n_symbols)
        return meta, x

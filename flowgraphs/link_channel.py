"""One emulated link as a hierarchical block: modem → impairments → receiver.

::

    in ─► crc_append ─► BurstModulator ─► BurstScheduler ─► RicianFadingStage
          (stock)                              │ status      ─► DopplerStage ─► ElevationGate
                                               ▼             ─► AwgnStage ─► BurstDemodulator
                                             status          ─► CrcCheck ─► out

Message ports: ``in`` (PDU: meta with ``tx_time`` . u8 payload), ``out`` (delivered PDUs),
``status`` (one report per accepted burst).

Hardware in the loop: the four impairment stages are the only part that stands for the
radio channel. :attr:`LinkChannel.impairments` lists them; for an SDR, build the hier block
with ``impairments=False`` and connect ``BurstScheduler.out`` through a burst-to-stream
adapter (``pdu.pdu_to_tagged_stream`` with a ``tx_sob``/``tx_eob`` tagged UHD
``usrp_sink`` or a ``soapy.sink``) and the SDR source back through a stream-to-burst
framer (``blocks.stream_to_tagged_stream`` + ``pdu.tagged_stream_to_pdu``) into
``BurstDemodulator`` — see docs/emulator.md.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pmt
from gnuradio import digital, gr

from channel import LinkGeometry, RicianFading
from flowgraphs.burst_demodulator import BurstDemodulator
from flowgraphs.burst_modulator import BurstModulator
from flowgraphs.burst_scheduler import BurstScheduler
from flowgraphs.burst_stage import BurstStage
from flowgraphs.crc_check import CrcCheck
from flowgraphs.impairments import AwgnStage, DopplerStage, ElevationGate, RicianFadingStage

__all__ = ["LinkChannel"]


class LinkChannel(gr.hier_block2):
    """The full chain of one link (see the module docstring).

    Parameters
    ----------
    link_id : link name (``link`` in the metadata)
    geometry : :class:`channel.LinkGeometry` of the link (or an object with the same API)
    fading : :class:`channel.RicianFading` (None = no small-scale fading)
    sample_rate_hz, symbol_rate_hz : f_s, R_s [Hz]
    modulation : "bpsk" | "qpsk" | "8psk" | "16qam" | "adaptive"
    noise_bandwidth_hz : bandwidth of the geometry's SNR [Hz]
        (default: ``geometry.params.bandwidth_hz``)
    seed : seed of noise and padding
    doppler_precomp : "none" | "full" | "residual"; residual_hz : [Hz]
    realtime : pace bursts to the wall clock
    guard_s : minimum gap between bursts [s]
    impairments : False leaves the channel stages out (for an SDR pair)
    """

    def __init__(
        self,
        link_id: str,
        geometry: LinkGeometry,
        fading: RicianFading | None,
        sample_rate_hz: float,
        symbol_rate_hz: float,
        modulation: str = "qpsk",
        noise_bandwidth_hz: float | None = None,
        seed: int = 0,
        doppler_precomp: str = "none",
        residual_hz: float = 0.0,
        realtime: bool = False,
        guard_s: float = 0.0,
        rolloff: float = 0.35,
        impairments: bool = True,
    ) -> None:
        gr.hier_block2.__init__(
            self, f"satfl_link_{link_id}", gr.io_signature(0, 0, 0), gr.io_signature(0, 0, 0)
        )
        for port in ("in",):
            self.message_port_register_hier_in(port)
        for port in ("out", "status"):
            self.message_port_register_hier_out(port)
        bw = noise_bandwidth_hz if noise_bandwidth_hz is not None else geometry.params.bandwidth_hz
        sps = round(sample_rate_hz / symbol_rate_hz)
        offset_db = 10.0 * math.log10(bw / symbol_rate_hz)

        def predict(t: float) -> float:
            # at the burst's serialised start, as far as the link clock knows it now
            start = max(t, self.scheduler.free_time_s)
            return float(geometry.state(start).snr_db) + offset_db

        # stock CRC-32 (IEEE 802.3, reflected, appended little-endian)
        self.crc = digital.crc_append(32, 0x04C11DB7, 0xFFFFFFFF, 0xFFFFFFFF, True, True, True, 0)
        self.modulator = BurstModulator(
            sample_rate_hz, symbol_rate_hz, modulation, rolloff, predict_esn0_db=predict
        )
        self.scheduler = BurstScheduler(
            link_id, geometry, sample_rate_hz, symbol_rate_hz, bw, seed, guard_s, realtime
        )
        self.fading = RicianFadingStage(fading, sample_rate_hz)
        self.doppler = DopplerStage(sample_rate_hz, doppler_precomp, residual_hz)
        self.gate = ElevationGate(geometry, sample_rate_hz)
        self.awgn = AwgnStage(sps, seed)
        self.demodulator = BurstDemodulator(sample_rate_hz, symbol_rate_hz, rolloff)
        self.crc_check = CrcCheck()
        self.impairments: list[BurstStage] = (
            [self.fading, self.doppler, self.gate, self.awgn] if impairments else []
        )
        self.stages: list[BurstStage] = [
            self.modulator,
            self.scheduler,
            *self.impairments,
            self.demodulator,
            self.crc_check,
        ]
        self.msg_connect(self, "in", self.crc, "in")
        self.msg_connect(self.crc, "out", self.modulator, "in")
        chain: list[Any] = self.stages
        for a, b in itertools.pairwise(chain):
            self.msg_connect(a, "out", b, "in")
        self.msg_connect(self.crc_check, "out", self, "out")
        self.msg_connect(self.scheduler, "status", self, "status")
        self._pmt_in = pmt.intern("in")

    def finished(self) -> int:
        """Bursts that have left the chain: delivered, or dropped by any stage."""
        return self.crc_check.counters.get("out", 0) + sum(
            s.counters.get("dropped", 0) for s in self.stages
        )

    def request_stop(self) -> None:
        """End real-time waits now (call before stopping the flowgraph)."""
        self.scheduler.request_stop()

    def stats(self) -> dict[str, Any]:
        """Per-stage counters and busy times, keyed by stage name."""
        return {s.name(): s.stats() for s in self.stages}

    def summary(self) -> dict[str, int]:
        """The headline counters: accepted, delivered, lost (by reason), CRC failures."""
        out = {
            "accepted": self.scheduler.counters.get("out", 0),
            "delivered": self.crc_check.counters.get("out", 0),
            "crc_fail": self.crc_check.counters.get("crc_fail", 0),
        }
        for k, v in self.demodulator.counters.items():
            if k.startswith("lost_"):
                out[k] = v
        out["stage_errors"] = sum(
            s.counters.get("bad_input", 0) + s.counters.get("internal_error", 0)
            for s in self.stages
        )
        return out

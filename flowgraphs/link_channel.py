"""One emulated link as a hierarchical block: modem → impairments → receiver.

::

    in ─► crc_append ─► BurstScheduler ─► BurstModulator ─► RicianFadingStage ─► DopplerStage
          (stock)        │ status          LDPC, BICM, RRC     ─► ElevationGate ─► AwgnStage
                         ▼                                     ─► BurstDemodulator ─► FecDecoder
                       status                                  ─► Deframer ─► CrcCheck ─► out

Message ports: ``in`` (PDU: meta with ``tx_time`` . u8 payload; or the sender's ``advance``
promise), ``out`` (delivered PDUs and safe-time markers), ``status`` (one report per LDPC
frame once it is scheduled — its MODCOD, interval and the PDUs it carries — and clock markers:
every frame starting before T has been reported; docs/protocol.md).

Hardware in the loop: the four impairment stages are the only part that stands for the radio
channel. :attr:`LinkChannel.impairments` lists them; for an SDR, build the hier block with
``impairments=False`` and connect ``BurstModulator.out`` through a burst-to-stream adapter
(``pdu.pdu_to_tagged_stream`` with a ``tx_sob``/``tx_eob`` tagged UHD ``usrp_sink`` or a
``soapy.sink``) and the SDR source back through a stream-to-burst framer
(``blocks.stream_to_tagged_stream`` + ``pdu.tagged_stream_to_pdu``) into ``BurstDemodulator`` —
see docs/emulator.md.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from gnuradio import digital, gr

from channel import LinkGeometry, RicianFading
from flowgraphs.burst_demodulator import BurstDemodulator
from flowgraphs.burst_modulator import BurstModulator
from flowgraphs.burst_scheduler import AcmPolicy, BurstScheduler
from flowgraphs.burst_stage import BurstStage
from flowgraphs.crc_check import CrcCheck
from flowgraphs.deframer import Deframer
from flowgraphs.fec_decoder import FecDecoder
from flowgraphs.impairments import AwgnStage, DopplerStage, ElevationGate, RicianFadingStage
from flowgraphs.modem import ModemConfig

__all__ = ["LinkChannel"]


class LinkChannel(gr.hier_block2):
    """The full chain of one link (see the module docstring).

    Parameters
    ----------
    link_id : link name (``link`` in the metadata)
    geometry : :class:`channel.LinkGeometry` of the link (or an object with the same API)
    fading : :class:`channel.RicianFading` (None = no small-scale fading)
    modem : the link's :class:`flowgraphs.modem.ModemConfig` (rates, roll-off, pilots)
    noise_bandwidth_hz : bandwidth of the geometry's SNR [Hz]
        (default: ``geometry.params.bandwidth_hz``)
    policy : :class:`flowgraphs.burst_scheduler.AcmPolicy` (ACM or a fixed MODCOD)
    seed : seed of the noise and lead-in draws
    doppler_precomp : "none" | "full" | "residual"; residual_hz : [Hz]
    realtime : pace frames to the wall clock
    guard_s : minimum gap between frames [s]
    impairments : False leaves the channel stages out (for an SDR pair)
    max_iterations : LDPC decoder iterations at most
    interop : every stage publishes plain PMT (meta dicts and uniform vectors), so stock GNU
        Radio blocks can be attached between them; slower (docs/emulator.md)
    """

    def __init__(
        self,
        link_id: str,
        geometry: LinkGeometry,
        fading: RicianFading | None,
        modem: ModemConfig,
        noise_bandwidth_hz: float | None = None,
        policy: AcmPolicy | None = None,
        seed: int = 0,
        doppler_precomp: str = "residual",
        residual_hz: float = 0.0,
        realtime: bool = False,
        guard_s: float = 0.0,
        impairments: bool = True,
        max_iterations: int = 50,
        interop: bool = False,
    ) -> None:
        gr.hier_block2.__init__(
            self, f"satfl_link_{link_id}", gr.io_signature(0, 0, 0), gr.io_signature(0, 0, 0)
        )
        self.message_port_register_hier_in("in")
        for port in ("out", "status"):
            self.message_port_register_hier_out(port)
        bw = noise_bandwidth_hz if noise_bandwidth_hz is not None else geometry.params.bandwidth_hz
        if not (bw > 0 and math.isfinite(bw)):
            raise ValueError("noise bandwidth must be a finite number > 0")
        self.modem = modem
        # stock CRC-32 (IEEE 802.3, reflected, appended little-endian), per PDU
        self.crc = digital.crc_append(32, 0x04C11DB7, 0xFFFFFFFF, 0xFFFFFFFF, True, True, True, 0)
        self.scheduler = BurstScheduler(
            link_id, geometry, modem, bw, policy, fading, seed, guard_s, realtime
        )
        self.modulator = BurstModulator(modem)
        self.fading = RicianFadingStage(fading, modem.sample_rate_hz)
        self.doppler = DopplerStage(modem.sample_rate_hz, doppler_precomp, residual_hz)
        self.gate = ElevationGate(geometry, modem.sample_rate_hz)
        self.awgn = AwgnStage(modem.sample_rate_hz, modem.symbol_rate_hz, seed, link_id)
        self.demodulator = BurstDemodulator(modem)
        self.decoder = FecDecoder(max_iterations)
        self.deframer = Deframer()
        self.crc_check = CrcCheck()
        self.impairments: list[BurstStage] = (
            [self.fading, self.doppler, self.gate, self.awgn] if impairments else []
        )
        self.stages: list[BurstStage] = [
            self.scheduler,
            self.modulator,
            *self.impairments,
            self.demodulator,
            self.decoder,
            self.deframer,
            self.crc_check,
        ]
        # bursts travel by reference between these stages; the last one publishes plain
        # PMT for the ZeroMQ sink (interop=True: every stage does, for stock blocks)
        for st in self.stages[:-1]:
            st.out_by_ref = not interop
        self.msg_connect(self, "in", self.crc, "in")
        self.msg_connect(self.crc, "out", self.scheduler, "in")
        chain: list[Any] = self.stages
        for a, b in itertools.pairwise(chain):
            self.msg_connect(a, "out", b, "in")
        self.msg_connect(self.crc_check, "out", self, "out")
        self.msg_connect(self.scheduler, "status", self, "status")

    def finished(self) -> int:
        """PDUs that have left the chain: delivered, or lost in any stage."""
        return self.crc_check.counters.get("out", 0) + sum(
            s.counters.get("pdus_lost", 0) for s in self.stages
        )

    def request_stop(self) -> None:
        """End real-time waits now (call before stopping the flowgraph)."""
        self.scheduler.request_stop()

    def stats(self) -> dict[str, Any]:
        """Per-stage counters and busy times, keyed by stage name."""
        return {s.name(): s.stats() for s in self.stages}

    def summary(self) -> dict[str, int]:
        """Headline counters: PDUs accepted, delivered and lost; frames built and lost by
        reason; decoder iterations."""
        sched = self.scheduler.counters
        out = {
            "accepted": sched.get("in", 0),
            "frames": self.modulator.counters.get("in", 0),
            "delivered": self.crc_check.counters.get("out", 0),
            "pdus_lost": sum(s.counters.get("pdus_lost", 0) for s in self.stages),
            "crc_fail": self.crc_check.counters.get("crc_fail", 0),
            "ldpc_fail": self.decoder.counters.get("ldpc_fail", 0),
            "df_crc_fail": self.decoder.counters.get("df_crc_fail", 0),
            "ldpc_iterations": self.decoder.iterations,
            "frames_decoded": self.decoder.counters.get("out", 0),
        }
        for stage in (self.gate, self.demodulator):
            for k, v in stage.counters.items():
                if k.startswith("lost_"):
                    out[k] = v
        out["stage_errors"] = sum(
            s.counters.get("bad_input", 0) + s.counters.get("internal_error", 0)
            for s in self.stages
        )
        return out

"""The link clock: the modem's transmit queue, ACM and framing on the emulated time axis.

PDUs enter a FIFO queue at their requested emulated ``tx_time`` (clamped to be
non-decreasing). Frame *j* starts when the link is free and something is queued,

.. math::
    t_j = \\max(t^{free}, t^{head}), \\quad T^{air}_j = N^{sym}_j / R_s, \\quad
    t^{free} \\leftarrow t_j + T^{air}_j + T_g,

takes the MODCOD that ACM chooses for :math:`t_j` (:func:`flowgraphs.modcod.select`), and is
filled, GSE-style (:mod:`flowgraphs.gse`), with the queued PDUs whose ``tx_time`` ≤ :math:`t_j`,
in order, fragmenting the last one if it does not fit. Its delivery time is
:math:`t^{rx}_j = t_j + T^{air}_j + \\tau(t_j)` (τ = d/c).

**Conservative synchronisation.** Which PDUs are queued at :math:`t_j` is known only once no
PDU with an earlier ``tx_time`` can still arrive. The sender says so: every PDU promises that
later ones have ``tx_time`` ≥ its own, and a control message ``advance`` (ZeroMQ
``{"cmd": "advance", "tx_time": P}``) promises ≥ P. A frame that is not full is built only
when the promise exceeds :math:`t_j`; a full frame is built at once. So what a frame carries,
and when, depends only on the inputs, never on when they arrived in wall time.

After each input the block emits a **safe-time marker** ``t`` into the chain (behind the frames
it built): no delivery after the marker will have ``rx_end`` < t, because a future frame starts
at or after :math:`T = \\max(t^{free}, t^{head}\\text{ or promise})` and needs at least the
preamble and header's airtime plus the link's minimum propagation delay. The marker leaves on
``out`` as ``{"cmd": "safe", "t": t}`` after every PDU delivered before it. On ``status`` the
block publishes one report per frame (``{"status": "frame", ...}``: its start, end, MODCOD and
the PDUs it completes) and, with each marker, ``{"status": "clock", "t": T}``: every frame
starting before T has been reported.

The per-burst randomness (the lead-in before the burst, in the modulator; the noise) is keyed
by the burst's start sample (:mod:`flowgraphs.randomness`). In real-time mode a frame is held
until the wall clock has advanced, since the first frame, as far as the emulated clock (to its
``tx_end``): pacing only; emulated times are identical in both modes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pmt

from channel import LinkGeometry, RicianFading
from flowgraphs import frame, gse, modcod
from flowgraphs import pdu as wire
from flowgraphs.burst_stage import CTL, BurstStage, Dropped
from flowgraphs.link_state import LinkStateGrid, StatePoint
from flowgraphs.modem import ModemConfig
from flowgraphs.pmt_numpy import meta_to_pmt, u8_to_pmt
from flowgraphs.randomness import STREAM_LEAD, burst_key, start_sample, uniform_int

__all__ = ["PREDICTIONS", "AcmPolicy", "BurstScheduler"]

log = logging.getLogger("flowgraphs")

PREDICTIONS = ("predict", "feedback", "genie")

_ECHO_SKIP = {wire.KEY_TX_TIME, wire.KEY_CMD}
_PAD_SYMBOLS = 64  # the random lead-in before a burst is 1 … 64 symbols
#: Measurement window of a ``feedback`` SNR report [s]: about one normal frame at 4.76 MBd
FEEDBACK_WINDOW_S = 0.005


@dataclass(frozen=True)
class AcmPolicy:
    """How the MODCOD of each frame is chosen.

    Attributes
    ----------
    modcod : ``"acm"`` or a MODCOD name (fixed, for experiments)
    margin_db : subtracted from the predicted Es/N0 before the table look-up [dB]
    prediction : ``"predict"`` — the clear-sky link budget from the orbit, open loop (what
        a ground terminal can compute alone); ``"feedback"`` — closed loop: the realised Es/N0
        (shadowing, rain and the fading power) that the receiver measured over its last
        window and reported back, one round trip plus ``feedback_delay_s`` old, as DVB-S2
        ACM does over a return channel; ``"genie"`` — the realised SNR including the fading gain at
        the frame's start (an upper bound, not realisable)
    feedback_delay_s : age of the SNR report with ``"feedback"`` beyond the round-trip
        propagation (measurement, processing, return channel) [s]
    allowed : MODCOD names ACM may use (default: all)
    """

    modcod: str = "acm"
    margin_db: float = 1.0
    prediction: str = "feedback"
    feedback_delay_s: float = 0.01
    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modcod != "acm":
            modcod.by_name(self.modcod)  # raises with the list of names
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"ACM prediction must be one of {PREDICTIONS}, got {self.prediction!r}"
            )
        if not (math.isfinite(self.feedback_delay_s) and self.feedback_delay_s >= 0):
            raise ValueError("ACM feedback delay must be >= 0 s")
        if not math.isfinite(self.margin_db):
            raise ValueError("ACM margin must be finite")
        for n in self.allowed:
            modcod.by_name(n)


@dataclass
class _Pending:
    pid: int
    meta: dict[str, Any]
    body: bytes
    tx: float
    offset: int = 0
    first_tx: float | None = None
    frames: list[list[float]] = field(default_factory=list)


class BurstScheduler(BurstStage):
    """Transmit queue, ACM and framing of one link; publishes ``status`` (see module doc).

    Parameters
    ----------
    link_id : link name, stamped as ``link``
    geometry : the link's :class:`channel.LinkGeometry` (or an object with ``state(t)``,
        ``predicted_snr_db(t)``, ``min_prop_delay_s()``)
    modem : the link's :class:`flowgraphs.modem.ModemConfig`
    noise_bandwidth_hz : bandwidth B in which ``geometry`` states its SNR [Hz];
        :math:`E_s/N_0 = \\mathrm{SNR} + 10\\log_{10}(B/R_s)`
    policy : :class:`AcmPolicy`
    fading : the link's fading process (for the ``genie`` prediction only)
    seed : the link's seed (lead-in draws)
    guard_s : gap after each frame before the next may start [s]
    realtime : pace frames to the wall clock
    max_queue : PDUs the queue holds at most (more are dropped as ``queue_full``)
    """

    def __init__(
        self,
        link_id: str,
        geometry: LinkGeometry,
        modem: ModemConfig,
        noise_bandwidth_hz: float,
        policy: AcmPolicy | None = None,
        fading: RicianFading | None = None,
        seed: int = 0,
        guard_s: float = 0.0,
        realtime: bool = False,
        max_queue: int = 4096,
    ) -> None:
        super().__init__("satfl_burst_scheduler", "u8", "u8")
        if noise_bandwidth_hz <= 0:
            raise ValueError("noise bandwidth must be > 0")
        if guard_s < 0:
            raise ValueError("guard_s must be >= 0")
        self.link_id = str(link_id)
        self.geometry = geometry
        self.modem = modem
        self.policy = policy or AcmPolicy()
        self.fading = fading
        #: θ_min of a gated ground link (no report exists below it); None for an ISL
        self._min_elevation_deg = getattr(
            getattr(geometry, "params", None), "min_elevation_deg", None
        )
        self.seed = int(seed)
        self.guard_s = float(guard_s)
        self.realtime = bool(realtime)
        self.max_queue = int(max_queue)
        self.esn0_offset_db = 10 * math.log10(noise_bandwidth_hz / modem.symbol_rate_hz)
        self._fixed = None if self.policy.modcod == "acm" else modcod.by_name(self.policy.modcod)
        names = self.policy.allowed or tuple(m.name for m in modcod.MODCODS)
        self._allowed = tuple(modcod.by_name(n) for n in names)
        self._thresholds = modcod.measured_thresholds()
        min_prop = getattr(geometry, "min_prop_delay_s", None)
        self.lookahead_s = (float(min_prop()) if callable(min_prop) else 0.0) + (
            frame.PREAMBLE_LEN + frame.HEADER_SYMBOLS
        ) / modem.symbol_rate_hz
        self._plan: tuple[float, modcod.Modcod, float] | None = None
        self._rates: dict[str, float] = {}
        has_orbit = getattr(geometry, "orbit", None) is not None
        self._grid = LinkStateGrid(geometry) if has_orbit else None
        self._queue: deque[_Pending] = deque()
        self._free_s = -math.inf
        self._last_tx = -math.inf
        self._promise = -math.inf
        self._safe_s = -math.inf
        self._next_start_s = -math.inf  # no frame will start before this [s]
        self._next_pid = 0
        self._frame_id = 0
        self._rt_ref: tuple[float, float] | None = None
        self._clock_lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._pmt_status = pmt.intern("status")
        self.message_port_register_out(self._pmt_status)

    # -- clock state ----------------------------------------------------------------------
    @property
    def free_time_s(self) -> float:
        """Emulated time at which the link is next free [s]."""
        return self._free_s

    @property
    def clock_s(self) -> float:
        """The latest clock marker's time: every frame starting before it was reported [s]."""
        return self._next_start_s

    @property
    def promise_s(self) -> float:
        """The senders' promise: no PDU with an earlier ``tx_time`` will be queued [s]."""
        return self._promise

    @property
    def waiting_for_promise(self) -> bool:
        """True while a frame waits for the sender's promise (more data or ``advance``)."""
        with self._clock_lock:
            return bool(self._queue)

    def queued(self) -> int:
        """PDUs in the transmit queue (accepted, not yet fully framed)."""
        with self._clock_lock:
            return len(self._queue)

    def safe_time_s(self) -> float:
        """The last safe time emitted [s] (−inf before the first)."""
        return self._safe_s

    # -- inputs ---------------------------------------------------------------------------
    def process(self, meta: dict[str, Any], data: Any) -> None:
        tx = meta.get(wire.KEY_TX_TIME)
        body = bytes(data)
        if (
            isinstance(tx, bool)
            or not isinstance(tx, int | float)
            or not math.isfinite(tx)
            or tx < 0
            or not body
        ):
            self.count("pdus_lost")  # (the ZeroMQ source rejects these before they get here)
            raise Dropped("bad_input")
        tx = float(tx)
        with self._clock_lock:
            if len(self._queue) >= self.max_queue:
                self.count("queue_full")
                self.count("pdus_lost")
                return None
            if tx < self._promise:
                # the sender promised no PDU before self._promise: it is sent then (counted)
                self.counters["late_for_promise"] = self.counters.get("late_for_promise", 0) + 1
            tx = max(tx, self._last_tx, self._promise)
            self._last_tx = tx
            self._promise = max(self._promise, tx)
            echo = {
                k: v for k, v in meta.items() if k not in _ECHO_SKIP and not str(k).startswith("_")
            }
            echo[wire.KEY_TX_TIME] = float(meta[wire.KEY_TX_TIME])
            self._queue.append(_Pending(self._next_pid, echo, body, tx))
            self._next_pid = (self._next_pid + 1) & 0xFFFF
        self._pump()
        self._emit_markers()
        return None

    def _emit_markers(self) -> None:
        """The safe-time marker into the chain and the clock marker on ``status``."""
        marker = self._safe_marker()
        if marker is not None:
            self.publish_control(marker)
            clock = {"status": "clock", wire.KEY_LINK: self.link_id, "t": self._next_start_s}
            self.message_port_pub(self._pmt_status, pmt.cons(meta_to_pmt(clock), u8_to_pmt(b"")))

    def control(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        if meta.get(CTL) == "advance":
            t = meta.get("t")
            if isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t):
                with self._clock_lock:
                    self._promise = max(self._promise, float(t))
                self._pump()
            else:
                self.count("bad_control")
            marker = self._safe_marker()
            if marker is None:
                return []
            clock = {"status": "clock", wire.KEY_LINK: self.link_id, "t": self._next_start_s}
            self.message_port_pub(self._pmt_status, pmt.cons(meta_to_pmt(clock), u8_to_pmt(b"")))
            return [marker]
        return [meta]

    # -- framing --------------------------------------------------------------------------
    def _choose(self, t: float) -> tuple[modcod.Modcod, float]:
        """(MODCOD, predicted Es/N0 [dB]) for a frame starting at ``t``."""
        if self._plan is not None and self._plan[0] == t:
            return self._plan[1], self._plan[2]
        if self.policy.prediction == "genie":
            esn0 = self._state(t).snr_db + self.esn0_offset_db
            if self.fading is not None:
                esn0 += 20 * math.log10(max(abs(complex(self.fading.gains(t))), 1e-6))
        elif self.policy.prediction == "feedback":
            esn0 = self._reported_esn0_db(t)
        else:
            esn0 = self._state(t).predicted_snr_db + self.esn0_offset_db
        if self._fixed is not None:
            mc = self._fixed
        else:
            mc = modcod.select(esn0, self.policy.margin_db, self._allowed, self._thresholds)
        self._plan = (t, mc, esn0)
        return mc, esn0

    def _reported_esn0_db(self, t: float) -> float:
        """The Es/N0 in the receiver's latest report when a frame starts at ``t`` [dB].

        The satellite measures the frames it receives and reports back; the report the
        terminal holds at *t* covers the window [t_m − W, t_m] with
        :math:`t_m = t - 2\\tau(t) - \\delta`: τ = one-way propagation [s], δ =
        ``feedback_delay_s`` (processing and reporting latency beyond the round trip [s]),
        W = :data:`FEEDBACK_WINDOW_S`. The report is the large-scale SNR at t_m (shadowing and
        rain realised) plus the mean fading power over the window,
        :math:`10\\log_{10}\\overline{|h|^2}` — what a pilot-based estimator measures, taken
        as exact. Until a report exists — t_m before the link rose above the elevation gate,
        e.g. the first ≈ 15 ms after AOS — the terminal uses the open-loop prediction
        (``predict``). Everything is a function of emulated time only.
        """
        st = self._state(t)
        t_m = max(0.0, t - 2.0 * st.prop_delay_s - self.policy.feedback_delay_s)
        st_m = self._state(t_m)
        el_min = self._min_elevation_deg
        if el_min is not None and st_m.elevation_deg < float(el_min):
            # nothing was received at t_m (below the gate): no report yet, open loop
            return st.predicted_snr_db + self.esn0_offset_db
        esn0 = st_m.snr_db + self.esn0_offset_db
        if self.fading is not None:
            tw = np.linspace(max(0.0, t_m - FEEDBACK_WINDOW_S), t_m, 8)
            power = float(np.mean(np.abs(self.fading.gains(tw)) ** 2))
            esn0 += 10 * math.log10(max(power, 1e-12))
        return esn0

    def _state(self, t: float) -> StatePoint:
        """The link state at t: grid-interpolated for an orbit, exact for a schedule."""
        if self._grid is not None:
            return self._grid.at(t)
        st = self.geometry.state(t)
        pred = getattr(self.geometry, "predicted_snr_db", None)
        return StatePoint(
            t,
            float(st.elevation_deg),
            float(st.snr_db),
            float(st.doppler_hz),
            float(st.doppler_rate_hz_per_s),
            float(st.prop_delay_s),
            float(pred(t)) if callable(pred) else float(st.snr_db),
        )

    def _pump(self) -> None:
        """Build every frame that the queue and the promise allow, in order."""
        while True:
            with self._clock_lock:
                try:
                    built = self._build_one()
                except (ValueError, ArithmeticError) as e:
                    # no link state at the head's frame time (e.g. beyond an ephemeris):
                    # that PDU cannot be framed; drop it, count it, keep the link going
                    head = self._queue.popleft()
                    self.count("no_state")
                    self.count("pdus_lost")
                    self._plan = None
                    log.warning("%s: cannot frame a PDU at t=%.3f s: %s", self.link_id, head.tx, e)
                    continue
            if built is None:
                return
            meta_f, df, statuses = built
            for st in statuses:
                self.message_port_pub(self._pmt_status, pmt.cons(meta_to_pmt(st), u8_to_pmt(b"")))
            if self.realtime:
                self._pace(float(meta_f[wire.KEY_TX_END]))
            self.publish(meta_f, df)

    def _build_one(self) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]] | None:
        if not self._queue:
            return None
        head = self._queue[0]
        t_j = max(self._free_s, head.tx)
        mc, esn0_pred = self._choose(t_j)
        cap = mc.capacity_bytes - frame.CRC_LEN
        avail = 0
        ready = []
        for p in self._queue:
            if p.tx > t_j:
                break
            ready.append(p)
            avail += gse.PACKET_HEADER + len(p.body) - p.offset
            if avail >= cap:
                break
        if avail < cap and not self._promise > t_j:
            return None  # more PDUs for this frame may still come
        packets, pieces = gse.pack(((p.pid, p.body, p.offset) for p in ready), cap)
        if not pieces:
            return None
        df = frame.append_crc32(packets)
        airtime = self.modem.airtime_s(mc, len(df))
        tx_start, tx_end = t_j, t_j + airtime
        st = self._state(tx_start)
        self._free_s = tx_end + self.guard_s
        self._plan = None
        prop = float(st.prop_delay_s)
        fid = self._frame_id
        self._frame_id += 1
        frame_rec = [float(fid), float(mc.id), tx_start, tx_end]
        completed: list[_Pending] = []
        for piece, p in zip(pieces, ready, strict=False):
            if p.first_tx is None:
                p.first_tx = tx_start
            p.frames.append(frame_rec)
            p.offset += len(piece.data)
            if piece.end:
                completed.append(p)
        for p in completed:
            self._queue.remove(p)
        sample = start_sample(tx_start, self.modem.sample_rate_hz)
        lead = uniform_int(burst_key(self.seed, self.link_id, sample, STREAM_LEAD), 1, _PAD_SYMBOLS)
        esn0 = float(st.snr_db) + self.esn0_offset_db
        meta_f: dict[str, Any] = {
            wire.KEY_LINK: self.link_id,
            wire.KEY_TX_START: tx_start,
            wire.KEY_TX_END: tx_end,
            wire.KEY_AIRTIME_S: airtime,
            wire.KEY_PROP_DELAY_S: prop,
            wire.KEY_RX_END: tx_end + prop,
            wire.KEY_SNR_DB: float(st.snr_db),
            "esn0_db": esn0,
            "esn0_pred_db": esn0_pred,
            wire.KEY_ELEVATION_DEG: float(st.elevation_deg),
            wire.KEY_DOPPLER_HZ: float(st.doppler_hz),
            wire.KEY_DOPPLER_RATE_HZ_PER_S: float(st.doppler_rate_hz_per_s),
            wire.KEY_MODCOD: mc.name,
            "frame_id": fid,
            "df_len": len(df),
            "_counter": fid % 32,
            "_modcod_id": mc.id,
            "_lead_symbols": lead,
            "_frac_delay": (prop * self.modem.sample_rate_hz) % 1.0,
            "_start_sample": sample,
            "_wall_t0": time.monotonic(),
            "_pdus": [
                {
                    "pid": p.pid,
                    "meta": p.meta,
                    "first_tx_s": p.first_tx,
                    "frames": len(p.frames),
                }
                for p in completed
            ],
        }
        # one modem report per frame: its timing and MODCOD, and the PDUs it completes
        # (sequence number, start of the PDU's first frame, the frames it rode in)
        report = {
            "status": "frame",
            wire.KEY_LINK: self.link_id,
            "frame_id": fid,
            wire.KEY_TX_START: tx_start,
            wire.KEY_TX_END: tx_end,
            wire.KEY_MODCOD: mc.name,
            "info_bits": 8 * (len(df) - frame.CRC_LEN),
            "df_len": len(df),
            # what this MODCOD carries with full frames [bit/s]
            "modcod_rate_bps": self._full_rate_bps(mc),
            "pdus": [
                [p.meta.get(wire.KEY_SEQ, -1), p.first_tx, [int(f[0]) for f in p.frames]]
                for p in completed
                if isinstance(p.meta.get(wire.KEY_SEQ), int)
            ],
        }
        statuses = [report]
        return meta_f, df, statuses

    def _full_rate_bps(self, mc: modcod.Modcod) -> float:
        """Information rate of ``mc`` with full frames, :math:`k R_s / N_{sym}` [bit/s]."""
        r = self._rates.get(mc.name)
        if r is None:
            full = self.modem.layout(mc, mc.capacity_bytes).n_symbols
            r = self._rates[mc.name] = mc.k * self.modem.symbol_rate_hz / full
        return r

    def _safe_marker(self) -> dict[str, Any] | None:
        with self._clock_lock:
            if self._queue:
                t_next = max(self._free_s, self._queue[0].tx)
            else:
                t_next = max(self._free_s, self._promise)
            if not math.isfinite(t_next):
                return None
            u = t_next + self.lookahead_s
            if u <= self._safe_s:
                return None
            self._safe_s = u
            self._next_start_s = t_next
        return {CTL: "safe", "t": u, wire.KEY_LINK: self.link_id}

    # -- real time ------------------------------------------------------------------------
    def start(self) -> bool:
        self._stop_evt.clear()
        return super().start()

    def stop(self) -> bool:
        self.request_stop()
        return super().stop()

    def request_stop(self) -> None:
        """Wake a real-time wait now (called on flowgraph stop); later frames are not paced."""
        self._stop_evt.set()

    def _pace(self, tx_end: float) -> None:
        now = time.monotonic()
        if self._rt_ref is None:
            self._rt_ref = (now, tx_end)
        wall_ref, emu_ref = self._rt_ref
        wait = wall_ref + (tx_end - emu_ref) - now
        if wait > 0:
            self._stop_evt.wait(wait)

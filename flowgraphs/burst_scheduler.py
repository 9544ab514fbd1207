"""The link clock: serialises bursts on the emulated time axis and stamps their timing.

Per link, burst *i* starts at

.. math::
    t^{tx}_i = \\max(t^{req}_i, t^{free}), \\quad
    T^{air}_i = N_i / f_s, \\quad
    t^{end}_i = t^{tx}_i + T^{air}_i, \\quad
    t^{rx}_i = t^{end}_i + \\tau(t^{tx}_i), \\quad t^{free} \\leftarrow t^{end}_i + T_g

with :math:`t^{req}` the sender's ``tx_time``, :math:`N_i` the burst's sample count,
:math:`\\tau = d/c` the propagation delay from :class:`channel.LinkGeometry` and :math:`T_g`
a guard time. Nothing here depends on wall-clock time, except in real-time mode, where the
burst is held until the wall clock reaches its emulated end (pacing only; a flowgraph stop
ends the wait at once).

The block also pads the burst with noise room the receiver must search (a seeded random
lead-in and a fixed tail) and applies the fractional part of the propagation delay
:math:`\\tau f_s` with a windowed-sinc interpolator, so the receiver's timing recovery works on
a sampling phase it does not know.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import pmt

from channel import LinkGeometry
from flowgraphs.burst_stage import BurstStage
from flowgraphs.pmt_numpy import meta_to_pmt, u8_to_pmt
from testbed import pdu as wire

__all__ = ["BurstScheduler", "fractional_delay_taps"]

FD_TAPS = 16


def fractional_delay_taps(frac: float, n: int = FD_TAPS) -> np.ndarray:
    """Hamming-windowed sinc delaying by ``n/2 - 1 + frac`` samples (float32, unit DC gain)."""
    k = np.arange(n) - (n / 2 - 1) - frac
    h = np.sinc(k) * np.hamming(n)
    return (h / h.sum()).astype(np.float32)


class BurstScheduler(BurstStage):
    """Per-link clock, padding and fractional propagation delay; publishes ``status``.

    Parameters
    ----------
    link_id : link name, stamped as ``link``
    geometry : the link's :class:`channel.LinkGeometry` (or any object with ``state(t)``)
    sample_rate_hz : f_s [Hz]
    symbol_rate_hz : R_s [Hz] (for the Es/N0 conversion)
    noise_bandwidth_hz : bandwidth B in which ``geometry`` states its SNR [Hz];
        :math:`E_s/N_0 = \\mathrm{SNR} + 10\\log_{10}(B/R_s)`
    seed : seed of the padding lengths
    guard_s : gap left after each burst before the next may start [s]
    realtime : pace bursts to the wall clock
    pad_symbols : maximum random lead-in, in symbols
    """

    def __init__(
        self,
        link_id: str,
        geometry: LinkGeometry,
        sample_rate_hz: float,
        symbol_rate_hz: float,
        noise_bandwidth_hz: float,
        seed: int = 0,
        guard_s: float = 0.0,
        realtime: bool = False,
        pad_symbols: int = 64,
    ) -> None:
        super().__init__("satfl_burst_scheduler", "c32", "c32")
        if sample_rate_hz <= 0 or symbol_rate_hz <= 0 or noise_bandwidth_hz <= 0:
            raise ValueError("rates and bandwidth must be > 0")
        if guard_s < 0:
            raise ValueError("guard_s must be >= 0")
        self.link_id = str(link_id)
        self.geometry = geometry
        self.fs = float(sample_rate_hz)
        self.rs = float(symbol_rate_hz)
        self.esn0_offset_db = 10 * math.log10(noise_bandwidth_hz / symbol_rate_hz)
        self.guard_s = float(guard_s)
        self.realtime = bool(realtime)
        self.sps = round(self.fs / self.rs)
        self.pad_max = max(1, pad_symbols * self.sps)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5C4ED]))
        self._free_s = -math.inf
        self._rt_ref: tuple[float, float] | None = None
        self._clock_lock = threading.Lock()
        self._stop_evt = threading.Event()
        self.message_port_register_out(pmt.intern("status"))

    @property
    def free_time_s(self) -> float:
        """Emulated time at which the link is next free [s]."""
        return self._free_s

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        x = np.asarray(data, dtype=np.complex64)
        tx_time = meta.get(wire.KEY_TX_TIME)
        if isinstance(tx_time, bool) or not isinstance(tx_time, int | float):
            raise ValueError(f"tx_time is {type(tx_time).__name__}, not a number")
        tx_time = float(tx_time)
        if not math.isfinite(tx_time) or tx_time < 0:
            raise ValueError(f"tx_time must be finite and >= 0, got {tx_time}")
        wall_t0 = time.monotonic()
        airtime = x.size / self.fs
        with self._clock_lock:
            tx_start = max(tx_time, self._free_s)
            tx_end = tx_start + airtime
            # the clock advances only for a burst whose link state exists
            st = self.geometry.state(tx_start)
            self._free_s = tx_end + self.guard_s
        prop = float(st.prop_delay_s)
        meta.update(
            {
                wire.KEY_LINK: self.link_id,
                wire.KEY_TX_START: tx_start,
                wire.KEY_TX_END: tx_end,
                wire.KEY_AIRTIME_S: airtime,
                wire.KEY_PROP_DELAY_S: prop,
                wire.KEY_RX_END: tx_end + prop,
                wire.KEY_SNR_DB: float(st.snr_db),
                "esn0_db": float(st.snr_db) + self.esn0_offset_db,
                wire.KEY_ELEVATION_DEG: float(st.elevation_deg),
                wire.KEY_DOPPLER_HZ: float(st.doppler_hz),
                wire.KEY_DOPPLER_RATE_HZ_PER_S: float(st.doppler_rate_hz_per_s),
                "_wall_t0": wall_t0,
            }
        )
        status = {k: meta[k] for k in (wire.KEY_SEQ, wire.KEY_SRC, wire.KEY_DST) if k in meta} | {
            wire.KEY_LINK: self.link_id,
            wire.KEY_TX_START: tx_start,
            wire.KEY_TX_END: tx_end,
            wire.KEY_AIRTIME_S: airtime,
            "status": "accepted",
        }
        self.message_port_pub(pmt.intern("status"), pmt.cons(meta_to_pmt(status), u8_to_pmt(b"")))
        # lead-in + fractional propagation delay + tail: the receiver must find the burst
        lead = int(self._rng.integers(self.sps, self.pad_max + self.sps))
        frac = (prop * self.fs) % 1.0
        h = fractional_delay_taps(frac)
        tail = 4 * self.sps + FD_TAPS
        padded = np.zeros(lead + x.size + tail, dtype=np.complex64)
        padded[lead : lead + x.size] = x
        y = np.convolve(padded, h)[: padded.size].astype(np.complex64)
        # sample n of y is emulated time tx_start + (n - lead - delay)/fs
        meta["_t0"] = tx_start - (lead + FD_TAPS / 2 - 1 + frac) / self.fs
        if self.realtime:
            self._pace(tx_end)
        return meta, y

    def start(self) -> bool:
        self._stop_evt.clear()
        return super().start()

    def stop(self) -> bool:
        self.request_stop()
        return super().stop()

    def request_stop(self) -> None:
        """Wake a real-time wait now (called on flowgraph stop); later bursts are not paced."""
        self._stop_evt.set()

    def _pace(self, tx_end: float) -> None:
        now = time.monotonic()
        if self._rt_ref is None:
            self._rt_ref = (now, tx_end)
        wall_ref, emu_ref = self._rt_ref
        wait = wall_ref + (tx_end - emu_ref) - now
        if wait > 0:
            self._stop_evt.wait(wait)

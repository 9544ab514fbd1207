"""The impairment stages of one link, each a :class:`~flowgraphs.burst_stage.BurstStage`.

Every stage reads the burst's emulated time base from the metadata stamped by
:class:`~flowgraphs.burst_scheduler.BurstScheduler` (``_t0``: emulated time of sample 0),
so sample *n* is at :math:`t_n = t_0 + n/f_s`. All channel state comes from ``channel/``
at those emulated times; nothing depends on how fast samples are processed.

* :class:`RicianFadingStage`: :math:`y_n = h(t_n)\\,x_n`, h from :class:`channel.RicianFading`;
* :class:`DopplerStage`: :math:`y_n = x_n e^{j\\phi_n}`, :math:`\\phi = 2\\pi\\int f(t)\\,dt`,
  f from :class:`channel.LinkState` (Doppler and its rate) and the pre-compensation mode;
* :class:`ElevationGate`: :math:`y_n = x_n\\,\\mathbb 1[\\theta(t_n) \\ge \\theta_{min}]`,
  θ from :class:`channel.LinkGeometry`;
* :class:`AwgnStage`: :math:`y_n = x_n + w_n`, :math:`w \\sim \\mathcal{CN}(0, \\sigma^2)`,
  σ² from the link budget's SNR and the measured burst power.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from channel import LinkGeometry, RicianFading
from flowgraphs import pdu as wire
from flowgraphs.burst_stage import BurstStage, Dropped
from flowgraphs.dsp import apply_gain, chirp
from flowgraphs.link_state import LinkStateGrid
from flowgraphs.randomness import STREAM_NOISE, burst_key, complex_normal

__all__ = [
    "DOPPLER_PRECOMP",
    "AwgnStage",
    "DopplerStage",
    "ElevationGate",
    "RicianFadingStage",
]

DOPPLER_PRECOMP = ("none", "full", "residual")


class RicianFadingStage(BurstStage):
    """Multiplies the burst by the Rician gain h(t) of :class:`channel.RicianFading`.

    .. math::
        h(t) = \\sqrt{\\tfrac{K}{K+1}}\\,e^{j\\phi_0}
             + \\sqrt{\\tfrac{1}{(K+1)N}}
               \\sum_{i=1}^{N} e^{j(2\\pi f_D \\cos\\alpha_i t + \\phi_i)},
        \\qquad E|h|^2 = 1

    evaluated on a grid of 32 points per Doppler cycle at the burst's emulated times and
    linearly interpolated (``RicianFading.gains_interp``); the envelope statistics of this
    stage are tested against ``scipy.stats.rice``.

    Parameters
    ----------
    fading : the link's fading process (K [dB], f_D [Hz], seed); None = no fading
    sample_rate_hz : f_s [Hz]
    """

    def __init__(self, fading: RicianFading | None, sample_rate_hz: float) -> None:
        super().__init__("satfl_rician_fading")
        if sample_rate_hz <= 0:
            raise ValueError("sample_rate_hz must be > 0")
        self.fading = fading
        self.fs = float(sample_rate_hz)

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        if self.fading is None:
            return meta, data
        t0 = float(meta["_t0"])
        fmax = max(self.fading.max_doppler_hz, abs(self.fading._los_freq_hz), 1e-3)
        step = max(1.0, self.fs / (32.0 * fmax))  # 32 grid points per Doppler cycle
        n_grid = int(math.ceil(data.size / step)) + 2
        hg = self.fading.gains(t0 + np.arange(n_grid) * (step / self.fs))
        mid = self.fading.gains(float(meta.get(wire.KEY_TX_START, t0)))
        meta["fading_gain_db"] = float(20 * np.log10(max(abs(complex(mid)), 1e-12)))
        return meta, apply_gain(data, hg, step)


class DopplerStage(BurstStage):
    """Carrier Doppler, full or residual after the ground terminal's pre-compensation.

    .. math::
        f(t) = f_0 + \\dot f\\,(t - t_{tx}), \\qquad
        \\phi_n = 2\\pi f_0 t_{tx} + 2\\pi\\Big(f_0 (t_n - t_{tx})
                 + \\tfrac12 \\dot f (t_n - t_{tx})^2\\Big)

    with :math:`f_d(t_{tx})` and :math:`\\dot f_d(t_{tx})` from :class:`channel.LinkState`
    (meta ``doppler_hz``, ``doppler_rate_hz_per_s``) and, by ``precomp``:

    * ``none``: :math:`f_0 = f_d(t_{tx})`, :math:`\\dot f = \\dot f_d`;
    * ``full``: the terminal pre-compensates exactly: :math:`f_0 = \\dot f = 0`;
    * ``residual``: the terminal pre-compensates with the Doppler predicted for the burst
      start, off by ``residual_hz``, and holds it:
      :math:`f_0 = f_{res}`, :math:`\\dot f = \\dot f_d`.

    Parameters
    ----------
    sample_rate_hz : f_s [Hz]
    precomp : "none" | "full" | "residual"
    residual_hz : pre-compensation error [Hz] (residual only)
    """

    def __init__(
        self, sample_rate_hz: float, precomp: str = "none", residual_hz: float = 0.0
    ) -> None:
        super().__init__("satfl_doppler")
        if precomp not in DOPPLER_PRECOMP:
            raise ValueError(f"precomp must be one of {DOPPLER_PRECOMP}, got {precomp!r}")
        if sample_rate_hz <= 0 or not math.isfinite(residual_hz):
            raise ValueError("bad sample rate or residual")
        self.fs = float(sample_rate_hz)
        self.precomp = precomp
        self.residual_hz = float(residual_hz)

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        fd = float(meta[wire.KEY_DOPPLER_HZ])
        rate = float(meta[wire.KEY_DOPPLER_RATE_HZ_PER_S])
        if self.precomp == "full":
            f0, rate = 0.0, 0.0
        elif self.precomp == "residual":
            f0 = self.residual_hz
        else:
            f0 = fd
        t_tx = float(meta[wire.KEY_TX_START])
        tau0 = float(meta["_t0"]) - t_tx  # τ of sample 0 [s]
        # φ(n) = f0 t_tx + f0 τ_n + ½ ḟ τ_n², τ_n = τ0 + n/fs, as c0 + f n + ½ r n² [cycles]
        c0 = (f0 * t_tx) % 1.0 + f0 * tau0 + 0.5 * rate * tau0 * tau0
        f = (f0 + rate * tau0) / self.fs
        r = rate / (self.fs * self.fs)
        meta["doppler_applied_hz"] = f0
        return meta, chirp(data, c0, f, r)


class ElevationGate(BurstStage):
    """Zeroes the samples sent while the satellite is below θ_min (frames are truly lost).

    .. math:: y_n = x_n \\cdot \\mathbb 1[\\theta(t_n) \\ge \\theta_{min}]

    A frame wholly outside the window carries nothing: it is dropped here and counted as
    ``lost_gate`` (zeros would only fail detection later), so losses can be told apart.

    θ(t) from :meth:`channel.LinkGeometry.state` on a grid (one point per millisecond, at
    most 257 points per burst) across the burst, linearly interpolated to every sample. A
    geometry with ``inside(t)`` (:class:`channel.ScheduledLinkGeometry`) is asked per sample,
    so the gate closes exactly at the window edge.

    Parameters
    ----------
    geometry : the link geometry (``params.min_elevation_deg`` is θ_min)
    sample_rate_hz : f_s [Hz]
    """

    def __init__(self, geometry: LinkGeometry, sample_rate_hz: float) -> None:
        super().__init__("satfl_elevation_gate")
        if sample_rate_hz <= 0:
            raise ValueError("sample_rate_hz must be > 0")
        self.geometry = geometry
        self.fs = float(sample_rate_hz)
        self.min_elevation_deg = float(geometry.params.min_elevation_deg)
        # the elevation on the emulator's 20 ms link-state grid (exact to ~1e-6 deg)
        has_orbit = getattr(geometry, "orbit", None) is not None
        self._grid = LinkStateGrid(geometry) if has_orbit else None

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        t0 = float(meta["_t0"])
        dur = data.size / self.fs
        inside = getattr(self.geometry, "inside", None)
        if callable(inside):
            ends = np.asarray(inside(np.array([t0, t0 + dur])), dtype=bool)
            same = getattr(self.geometry, "same_window", None)
            if ends.all() and callable(same) and same(t0, t0 + dur):
                meta["gated_fraction"] = 0.0
                return meta, data
            keep = np.asarray(inside(t0 + np.arange(data.size) / self.fs), dtype=bool)
            if keep.size and not keep.any():
                raise Dropped("lost_gate")  # wholly outside the window: nothing arrives
            meta["gated_fraction"] = float(1.0 - keep.mean()) if keep.size else 0.0
            return meta, data if keep.all() else data * keep
        # the elevation changes by < 0.01° during a burst: both ends above θ_min is enough
        el_ends = self._elevation(np.array([t0, t0 + dur]))
        if np.all(el_ends >= self.min_elevation_deg + 1e-3):
            meta["gated_fraction"] = 0.0
            return meta, data
        n_grid = int(min(257, max(2, math.ceil(dur / 1e-3) + 1)))
        tg = t0 + np.linspace(0.0, dur, n_grid)
        el = self._elevation(tg)
        if np.all(el >= self.min_elevation_deg):
            meta["gated_fraction"] = 0.0
            return meta, data
        t = np.arange(data.size) / self.fs
        keep = np.interp(t, tg - t0, el) >= self.min_elevation_deg
        if not keep.any():
            raise Dropped("lost_gate")  # wholly below the gate: nothing arrives
        meta["gated_fraction"] = float(1.0 - keep.mean())
        return meta, data * keep

    def _elevation(self, t: np.ndarray) -> np.ndarray:
        if self._grid is not None:
            return np.array([self._grid.at(float(x)).elevation_deg for x in t])
        return np.asarray(self.geometry.state(t, shadowing=False).elevation_deg, dtype=float)


class AwgnStage(BurstStage):
    """Thermal noise at the link budget's SNR, against the measured burst power.

    .. math::
        \\sigma^2 = \\frac{P_s\\, f_s / R_s}{10^{(E_s/N_0)/10}}, \\qquad
        P_s = \\frac{1}{N}\\sum_n |s_n|^2 \\text{ (transmitted burst)}

    so that after the unit-energy matched filter :math:`E_s/N_0` is the SNR per symbol,
    averaged over the fading (:math:`E|h|^2 = 1`). :math:`E_s/N_0` is meta ``esn0_db`` (the
    link budget's SNR in the noise bandwidth B, converted by the link clock). The noise of a
    burst is drawn from the counter-based stream keyed by (seed, link, the burst's start
    sample) (:mod:`flowgraphs.randomness`): it does not depend on any other burst.

    Parameters
    ----------
    sample_rate_hz, symbol_rate_hz : f_s, R_s [Hz]
    seed : the link's seed
    link_id : the link's name (part of the noise key)
    """

    def __init__(
        self, sample_rate_hz: float, symbol_rate_hz: float, seed: int = 0, link_id: str = ""
    ) -> None:
        super().__init__("satfl_awgn")
        if sample_rate_hz <= 0 or symbol_rate_hz <= 0:
            raise ValueError("rates must be > 0")
        self.rho = float(sample_rate_hz) / float(symbol_rate_hz)
        self.seed = int(seed)
        self.link_id = str(link_id)

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        esn0_db = float(meta["esn0_db"])
        p_s = float(meta["_sig_power"])
        sigma = math.sqrt(p_s * self.rho / 10 ** (esn0_db / 10))
        key = burst_key(self.seed, self.link_id, int(meta["_start_sample"]), STREAM_NOISE)
        w = complex_normal(key, data.size)
        w *= np.float32(sigma)
        w += data
        return meta, w

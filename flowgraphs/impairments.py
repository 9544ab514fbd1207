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
from flowgraphs.burst_stage import BurstStage
from flowgraphs.modem import cis
from testbed import pdu as wire

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
        h = self.fading.gains_interp(t0, data.size, self.fs).astype(np.complex64)
        mid = self.fading.gains(float(meta.get(wire.KEY_TX_START, t0)))
        meta["fading_gain_db"] = float(20 * np.log10(max(abs(complex(mid)), 1e-12)))
        return meta, data * h


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
        tau = float(meta["_t0"]) - t_tx + np.arange(data.size) / self.fs
        cycles = (f0 * t_tx) % 1.0 + f0 * tau + 0.5 * rate * tau * tau
        meta["doppler_applied_hz"] = f0
        return meta, data * cis(cycles)


class ElevationGate(BurstStage):
    """Zeroes the samples sent while the satellite is below θ_min (frames are truly lost).

    .. math:: y_n = x_n \\cdot \\mathbb 1[\\theta(t_n) \\ge \\theta_{min}]

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

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        t0 = float(meta["_t0"])
        inside = getattr(self.geometry, "inside", None)
        if callable(inside):
            keep = np.asarray(inside(t0 + np.arange(data.size) / self.fs), dtype=bool)
            meta["gated_fraction"] = float(1.0 - keep.mean()) if keep.size else 0.0
            return meta, data if keep.all() else data * keep
        dur = data.size / self.fs
        n_grid = int(min(257, max(2, math.ceil(dur / 1e-3) + 1)))
        tg = t0 + np.linspace(0.0, dur, n_grid)
        el = np.asarray(self.geometry.state(tg, shadowing=False).elevation_deg, dtype=float)
        if np.all(el >= self.min_elevation_deg):
            meta["gated_fraction"] = 0.0
            return meta, data
        t = np.arange(data.size) / self.fs
        keep = np.interp(t, tg - t0, el) >= self.min_elevation_deg
        meta["gated_fraction"] = float(1.0 - keep.mean())
        return meta, data * keep


class AwgnStage(BurstStage):
    """Thermal noise at the link budget's SNR, against the measured burst power.

    .. math::
        \\sigma^2 = \\frac{P_s\\, f_s / R_s}{10^{(E_s/N_0)/10}}, \\qquad
        P_s = \\frac{1}{N}\\sum_n |s_n|^2 \\text{ (transmitted burst)}

    so that after the unit-energy matched filter :math:`E_s/N_0` is the SNR per symbol,
    averaged over the fading (:math:`E|h|^2 = 1`). :math:`E_s/N_0` is meta ``esn0_db``
    (link budget SNR in the noise bandwidth B, converted by the scheduler).

    Parameters
    ----------
    sps : samples per symbol f_s / R_s
    seed : seed of the noise generator
    """

    def __init__(self, sps: int, seed: int = 0) -> None:
        super().__init__("satfl_awgn")
        if sps < 1:
            raise ValueError("sps must be >= 1")
        self.sps = int(sps)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA3C9]))

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        esn0_db = float(meta["esn0_db"])
        p_s = float(meta["_sig_power"])
        sigma = math.sqrt(p_s * self.sps / 10 ** (esn0_db / 10) / 2)
        w = self._rng.standard_normal(2 * data.size, dtype=np.float32).view(np.complex64)
        return meta, data + np.float32(sigma) * w

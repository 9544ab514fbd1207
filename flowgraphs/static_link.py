"""A link whose large-scale state does not change: for FER curves and unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from channel import LinkParams, LinkState

__all__ = ["StaticLink"]


@dataclass(frozen=True)
class StaticLink:
    """Drop-in for :class:`channel.LinkGeometry` with a fixed state at every time.

    Parameters
    ----------
    snr_db : SNR [dB] in ``params.bandwidth_hz``
    doppler_hz : carrier Doppler [Hz]; doppler_rate_hz_per_s : its rate [Hz/s]
    elevation_deg : [deg]; prop_delay_s : [s]
    params : link parameters (``min_elevation_deg``, ``bandwidth_hz`` are used)
    """

    snr_db: float
    doppler_hz: float = 0.0
    doppler_rate_hz_per_s: float = 0.0
    elevation_deg: float = 90.0
    prop_delay_s: float = 0.002
    params: LinkParams = field(default_factory=LinkParams)

    def predicted_snr_db(self, t_s: np.ndarray | float) -> np.ndarray:
        """The fixed SNR [dB] (what ACM predicts on a static link)."""
        return np.full(np.shape(t_s), self.snr_db, dtype=float)

    def min_prop_delay_s(self) -> float:
        """The fixed propagation delay [s]."""
        return self.prop_delay_s

    def state(self, t_s: np.ndarray | float, shadowing: bool = True) -> LinkState:
        """The fixed state, shaped like ``t_s``."""
        t = np.asarray(t_s, dtype=float)

        def full(v: float) -> np.ndarray:
            return np.full(t.shape, v, dtype=float)

        return LinkState(
            t_s=t,
            elevation_deg=full(self.elevation_deg),
            azimuth_deg=full(0.0),
            slant_range_m=full(self.prop_delay_s * 299_792_458.0),
            range_rate_mps=full(0.0),
            doppler_hz=full(self.doppler_hz),
            doppler_rate_hz_per_s=full(self.doppler_rate_hz_per_s),
            path_loss_db=full(0.0),
            snr_db=full(self.snr_db),
            visible=full(self.elevation_deg) >= self.params.min_elevation_deg,
            prop_delay_s=full(self.prop_delay_s),
            raining=np.zeros(t.shape, dtype=bool),
        )

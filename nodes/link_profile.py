"""What a ground terminal knows of its link, and the capacities an upload is compared with.

:func:`sender_config` turns the link's modem settings into the sender's deterministic timers
(no estimate learnt from wall-clock arrivals); :func:`capacity_fields` adds to an upload record
the capacities of the same interval: Shannon over the whole sub-channel, Shannon over the
occupied band, and what the MODCODs the modem chose could carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flowgraphs import modcod
from flowgraphs.config import LinkConfig
from nodes.sender import SenderConfig

__all__ = ["capacity_fields", "min_info_rate_bps", "predicted_rate_fn", "sender_config"]


def min_info_rate_bps(lc: LinkConfig) -> float:
    """Information rate of the link's most robust MODCOD, framing included [bit/s].

    .. math:: R_{min} = R_s \\frac{k}{N_{sym}}, \\quad N_{sym} = \\text{preamble} +
              \\text{header} + \\lceil n/m \\rceil + \\text{pilots}
    """
    allowed = [modcod.by_name(lc.modcod)] if lc.modcod != "acm" else list(modcod.MODCODS)
    mc = min(allowed, key=lambda m: m.bits_per_data_symbol)
    lay = lc.modem().layout(mc, mc.capacity_bytes)
    return lc.symbol_rate_hz * mc.k / lay.n_symbols


def sender_config(
    lc: LinkConfig,
    max_slant_range_m: float = 3.0e6,
    credit: int = 32,
    fragment_size: int = 1024,
    give_up_after_s: float | None = None,
) -> SenderConfig:
    """The sender's timers for link ``lc`` (all emulated seconds, from configuration only).

    .. math::
        T_{ack} = 2\\,(2\\,d_{max}/c + 2\\,T_{frame,max}), \\qquad
        T_{rtt} = T_{ack}/2 + \\frac{8\\,W\\,(F + 64)}{R_{min}}

    with :math:`d_{max}` the longest slant range, :math:`T_{frame,max}` the longest frame,
    W the credit [PDUs] and F the fragment size [bytes]. The answer timer runs from the end of
    the EOF's transmission; the round trip that tells an old NAK from a new one includes the
    queue a resend waits behind.
    """
    r_min = min_info_rate_bps(lc)
    mc = min(modcod.MODCODS, key=lambda m: m.bits_per_data_symbol)
    t_frame = lc.modem().layout(mc, mc.capacity_bytes).n_symbols / lc.symbol_rate_hz
    rtt = 2 * max_slant_range_m / 299_792_458.0 + 2 * t_frame
    queue = 8.0 * credit * (fragment_size + 64) / r_min
    return SenderConfig(
        credit=credit,
        ack_timer_s=2.0 * rtt,  # from the EOF's transmission: no queueing in it
        rtt_s=rtt + queue,
        min_rate_bps=r_min,
        give_up_after_s=give_up_after_s,
        predicted_rate=predicted_rate_fn(lc),
    )


def predicted_rate_fn(lc: LinkConfig) -> Callable[[float], float]:
    r"""``t → bit/s``: the full-frame information rate of the MODCOD the link budget and the
    orbit predict for a frame at emulated time t (clear sky, ACM margin applied),

    .. math:: R(t) = R_s\,k_m / N^{sym}_m, \quad
              m = \mathrm{select}(\mathrm{SNR}_{pred}(t) + 10\log_{10}(B/R_s) - \Delta)

    what a ground terminal knows of its own modem before the first frame report."""
    geo = lc.geometry()
    mdm = lc.modem()
    off = 10.0 * math.log10(lc.params.bandwidth_hz / lc.symbol_rate_hz)
    fixed = None if lc.modcod == "acm" else modcod.by_name(lc.modcod)
    table = modcod.measured_thresholds()
    rates: dict[str, float] = {}

    def rate(t: float) -> float:
        mc = fixed or modcod.select(
            float(geo.predicted_snr_db(t)) + off, lc.acm_margin_db, modcod.MODCODS, table
        )
        if mc.name not in rates:
            rates[mc.name] = lc.symbol_rate_hz * mc.k / mdm.layout(mc, mc.capacity_bytes).n_symbols
        return rates[mc.name]

    return rate


def capacity_fields(rec: dict[str, Any], geometry: Any, lc: LinkConfig) -> dict[str, Any]:
    """Capacities over the upload's interval [first transmission, acceptance].

    Returns ``goodput_bps`` (payload bits / interval), ``shannon_bps`` (:math:`B\\log_2(1 +
    \\mathrm{SNR})` of the whole sub-channel, B = the link budget's bandwidth, averaged over
    the same interval, zero while the satellite is below the gate), ``occupied_shannon_bps``
    (the same over the occupied band :math:`R_s(1+\\alpha)`) and ``efficiency_vs_shannon``
    (goodput / Shannon). ``modcod_rate_bps`` stays the sender's: the airtime-weighted
    full-frame rate of the MODCODs its frames used, :math:`\\sum_j r_j T_j / \\sum_j T_j`
    (what the chosen MODCODs carry while on the air, before retransmissions, partly filled
    frames and idle time).
    """
    from channel import mean_capacity_bps

    t0, up = rec.get("first_tx_s"), rec.get("upload_time_s")
    out: dict[str, Any] = {
        "shannon_bps": None,
        "occupied_shannon_bps": None,
        "modcod_rate_bps": rec.get("modcod_rate_bps"),
        "efficiency_vs_shannon": None,
        "bandwidth_hz": lc.params.bandwidth_hz,
        "symbol_rate_hz": lc.symbol_rate_hz,
        "rolloff": lc.rolloff,
        "occupied_bandwidth_hz": lc.occupied_bandwidth_hz,
        "modcod_policy": lc.modcod,
        "acm_margin_db": lc.acm_margin_db,
        "acm_prediction": lc.acm_prediction,
    }
    if t0 is None or not up or not math.isfinite(up) or up <= 0:
        return out
    t1 = t0 + up
    sh = mean_capacity_bps(geometry, t0, t1)
    occ = mean_capacity_bps(geometry, t0, t1, lc.occupied_bandwidth_hz)
    good = rec["size_bytes"] * 8.0 / up
    out.update(
        shannon_bps=sh,
        occupied_shannon_bps=occ,
        goodput_bps=good,
        efficiency_vs_shannon=good / sh if sh > 0 else None,
    )
    return out

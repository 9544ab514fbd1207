"""Elevation gate and link clock: outages lose frames; emulated times follow the clock.

The outage tests use :class:`channel.ScheduledLinkGeometry` (visible only inside a window, at
a fixed elevation) with a strong link budget, so a PDU outside the window would be delivered
if the gate did nothing: the gate is the only reason it is lost.
"""

from __future__ import annotations

import numpy as np
import pytest

import channel
from flowgraphs.impairments import ElevationGate
from flowgraphs.link_channel import LinkChannel
from flowgraphs.measure import run_bursts

from .conftest import run_stage

pytestmark = pytest.mark.integration

FS = 1.0e6
WINDOW = (0.0, 100.0)  # the only visibility window [emulated s]


@pytest.fixture(scope="module")
def slot_geometry():
    # 40 dBm: SNR ≈ 33 dB inside the window, ≈ 28 dB outside (range unchanged, more
    # atmosphere at the clamped 5° elevation): QPSK would pass everywhere without the gate
    p = channel.LinkParams(
        tx_power_dbm=40.0, bandwidth_hz=1.0e6, shadowing_sigma_db=0.0, rain_probability=0.0
    )
    return channel.ScheduledLinkGeometry([WINDOW], p, elevation_deg=60.0)


def _link(geo) -> LinkChannel:
    return LinkChannel("o", geo, None, FS, 250.0e3, "qpsk", seed=4)


def test_gate_stage_zeroes_samples_outside_the_window(slot_geometry):
    # Prepare: three bursts of 1000 ones: inside, outside, straddling the LOS at 100 s
    x = np.ones(1000, np.complex64)
    t0s = [10.0, 200.0, WINDOW[1] - 400 / FS]
    items = [({"_t0": t0, "seq": i}, x) for i, t0 in enumerate(t0s)]
    # Execute
    out = run_stage(ElevationGate(slot_geometry, FS), items, timeout_s=10.0)
    # Assert
    got = {m["seq"]: (m["gated_fraction"], d) for m, d in out}
    assert got[0][0] == 0.0 and np.all(got[0][1] == 1)
    assert got[1][0] == 1.0 and not np.any(got[1][1])
    frac, d = got[2]
    assert frac == pytest.approx(0.6)  # the edge is exact: samples 400… are after LOS
    assert np.all(d[:400] == 1) and not np.any(d[400:])


def test_pdus_outside_the_window_are_lost_only_through_the_gate(slot_geometry):
    # Prepare: the same 6 PDUs inside and outside the window; the SNR is high in both
    geo = slot_geometry
    payloads = [bytes([i]) * 300 for i in range(6)]
    inside = [10.0 + 0.5 * i for i in range(6)]
    outside = [300.0 + 0.5 * i for i in range(6)]
    assert all(geo.state(inside).visible) and not any(geo.state(outside).visible)
    assert np.all(geo.state(outside).snr_db > 20.0)
    # Execute
    res_in = run_bursts(_link(geo), payloads, inside)
    link_out = _link(geo)
    res_out = run_bursts(link_out, payloads, outside)
    # Assert
    assert sorted(p for _, p in res_in.delivered) == sorted(payloads)
    assert res_out.delivered == []
    assert res_out.summary["accepted"] == 6  # the bursts were sent, the channel lost them
    lost = sum(v for k, v in res_out.summary.items() if k.startswith("lost_"))
    assert lost + res_out.summary["crc_fail"] == 6
    assert link_out.gate.counters["out"] == 6  # the gate passed them on, zeroed


def test_burst_straddling_los_is_cut(slot_geometry):
    # A burst that starts visible and ends after LOS loses its tail: not delivered, while
    # the same burst just inside the window is
    payload = bytes(8000)  # ≈ 0.13 s at QPSK, 250 kBd
    res = run_bursts(_link(slot_geometry), [payload, payload], [50.0, WINDOW[1] - 0.05])
    assert [m["tx_start"] for m, _ in res.delivered] == [pytest.approx(50.0)]


def test_clock_serialises_bursts_and_stamps_times(best_pass):
    geo, w = best_pass
    t0 = w.tca_s
    link = LinkChannel(
        "o", geo, channel.RicianFading(10.0, 100.0, seed=2), FS, 250.0e3, "qpsk", seed=4
    )
    res = run_bursts(link, [bytes(500)] * 3, [t0, t0, t0 + 10.0])
    st = sorted(res.status, key=lambda m: m["seq"])
    # burst 1 waits for burst 0; burst 2 asked for a later time and gets it
    assert st[0]["tx_start"] == pytest.approx(t0)
    assert st[1]["tx_start"] == pytest.approx(st[0]["tx_end"])
    assert st[2]["tx_start"] == pytest.approx(t0 + 10.0)
    for m, _ in res.delivered:
        n = m["n_samples"]
        assert m["airtime_s"] == pytest.approx(n / FS)  # from the sample count
        assert m["tx_end"] == pytest.approx(m["tx_start"] + m["airtime_s"])
        assert m["rx_end"] == pytest.approx(m["tx_end"] + m["prop_delay_s"])
        ref = geo.state(m["tx_start"])
        assert m["prop_delay_s"] == pytest.approx(float(ref.prop_delay_s))
        assert m["elevation_deg"] == pytest.approx(float(ref.elevation_deg))
        assert m["doppler_hz"] == pytest.approx(float(ref.doppler_hz))
        assert m["crc_ok"] is True and m["link"] == "o" and m["wall_proc_s"] > 0


def test_realtime_mode_paces_but_keeps_the_emulated_times(best_pass):
    geo, w = best_pass
    t0 = w.tca_s
    runs = []
    for rt in (False, True):
        link = LinkChannel("r", geo, None, FS, 250.0e3, "qpsk", seed=4, realtime=rt)
        res = run_bursts(link, [bytes(300)] * 3, [t0, t0, t0 + 0.01])
        runs.append(sorted((m["seq"], m["tx_start"], m["tx_end"]) for m in res.status))
    assert runs[0] == runs[1]


def test_delivered_esn0_uses_the_noise_bandwidth():
    # B = 4 R_s: Es/N0 = SNR + 10 log10(B / R_s) = SNR + 6.02 dB. The link budget gives
    # SNR ≈ 8 dB in B = 1 MHz, so Es/N0 ≈ 14 dB; the receiver's decision-directed estimate
    # over 4000 QPSK symbols must agree within 0.5 dB.
    rs = 250.0e3
    p = channel.LinkParams(
        tx_power_dbm=14.76, bandwidth_hz=4 * rs, shadowing_sigma_db=0.0, rain_probability=0.0
    )
    geo = channel.ScheduledLinkGeometry([WINDOW], p, elevation_deg=60.0)
    link = LinkChannel("e", geo, None, FS, rs, "qpsk", seed=5)
    res = run_bursts(link, [bytes(1000)] * 3, [10.0, 20.0, 30.0])
    assert len(res.delivered) == 3
    for m, _ in res.delivered:
        expected = m["snr_db"] + 10 * np.log10(4.0)
        assert m["snr_db"] == pytest.approx(float(geo.state(m["tx_start"]).snr_db))
        assert m["esn0_db"] == pytest.approx(expected, abs=1e-9)
        assert m["esn0_est_db"] == pytest.approx(expected, abs=0.5)

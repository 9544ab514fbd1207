"""Elevation gate and link clock: outages lose frames; emulated times follow the clock.

The outage tests use :class:`channel.ScheduledLinkGeometry` (visible only inside a window, at
a fixed elevation) with a strong link budget, so a PDU outside the window would be delivered
if the gate did nothing: the gate is the only reason it is lost.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import channel
from flowgraphs.burst_scheduler import AcmPolicy
from flowgraphs.impairments import ElevationGate
from flowgraphs.link_channel import LinkChannel
from flowgraphs.measure import run_pdus
from flowgraphs.modem import ModemConfig

from .conftest import run_stage

pytestmark = pytest.mark.integration

FS = 1.0e6
MODEM = ModemConfig(FS, FS / 1.25, 0.25, 1440, 5.0)
WINDOW = (0.0, 100.0)  # the only visibility window [emulated s]


@pytest.fixture(scope="module")
def slot_geometry():
    # 40 dBm: SNR ≈ 33 dB inside the window and outside: without the gate everything passes
    p = channel.LinkParams(
        tx_power_dbm=40.0, bandwidth_hz=1.0e6, shadowing_sigma_db=0.0, rain_probability=0.0
    )
    return channel.ScheduledLinkGeometry([WINDOW], p, elevation_deg=60.0)


def _link(geo, modcod="qpsk-1/2", **kw) -> LinkChannel:
    return LinkChannel("o", geo, None, MODEM, policy=AcmPolicy(modcod), seed=4, **kw)


def test_gate_stage_zeroes_samples_outside_the_window(slot_geometry):
    # Prepare: three bursts of 1000 ones: inside, outside, straddling the LOS at 100 s
    x = np.ones(1000, np.complex64)
    t0s = [10.0, 200.0, WINDOW[1] - 400 / FS]
    items = [({"_t0": t0, "seq": i}, x) for i, t0 in enumerate(t0s)]
    gate = ElevationGate(slot_geometry, FS)
    # Execute
    out = run_stage(gate, items, timeout_s=10.0, expect=2)
    # Assert
    got = {m["seq"]: (m["gated_fraction"], d) for m, d in out}
    assert got[0][0] == 0.0 and np.all(got[0][1] == 1)
    # wholly outside: nothing arrives, the frame is dropped and counted as lost to the gate
    assert 1 not in got and gate.counters["lost_gate"] == 1
    frac, d = got[2]
    assert frac == pytest.approx(0.6)  # the edge is exact: samples 400… are after LOS
    assert np.all(d[:400] == 1) and not np.any(d[400:])


def test_gate_follows_the_orbit_at_aos(best_pass):
    geo, w = best_pass
    gate = ElevationGate(geo, FS)
    x = np.ones(20_000, np.complex64)  # 20 ms
    items = [({"_t0": w.aos_s - 0.01, "seq": 0}, x), ({"_t0": w.aos_s + 5.0, "seq": 1}, x)]
    got = {m["seq"]: m["gated_fraction"] for m, _ in run_stage(gate, items)}
    assert got[0] == pytest.approx(0.5, abs=0.01) and got[1] == 0.0


def test_pdus_outside_the_window_are_lost_only_through_the_gate(slot_geometry):
    geo = slot_geometry
    payloads = [bytes([i]) * 3000 for i in range(6)]
    inside = [10.0 + 0.5 * i for i in range(6)]
    outside = [300.0 + 0.5 * i for i in range(6)]
    assert all(geo.state(inside).visible) and not any(geo.state(outside).visible)
    assert np.all(geo.state(outside).snr_db > 20.0)
    res_in = run_pdus(_link(geo), payloads, inside)
    link_out = _link(geo)
    res_out = run_pdus(link_out, payloads, outside)
    assert sorted(p for _, p in res_in.delivered) == sorted(payloads)
    assert res_out.delivered == []
    assert res_out.summary["accepted"] == 6 and res_out.summary["pdus_lost"] == 6
    # every frame reached the gate and none got past it: lost to the gate, counted so
    frames = link_out.modulator.counters["out"]
    assert frames > 0 and link_out.gate.counters.get("out", 0) == 0
    assert res_out.summary["lost_gate"] == frames


def test_frame_straddling_los_is_cut(slot_geometry):
    # a frame that starts visible and ends after LOS loses its tail: not delivered, while
    # the same frame inside the window is (qpsk-1/4 full frames last ≈ 43 ms at 800 kBd)
    payload = bytes(1900)
    res = run_pdus(_link(slot_geometry, "qpsk-1/4"), [payload, payload], [50.0, WINDOW[1] - 0.02])
    assert [m["tx_start"] for m, _ in res.delivered] == [pytest.approx(50.0)]


def test_clock_serialises_frames_and_stamps_times(best_pass):
    geo, w = best_pass
    t0 = w.tca_s
    link = LinkChannel("o", geo, channel.RicianFading(10.0, 5.0, seed=2), MODEM, seed=4)
    sizes = [3000, 3000, 500]
    res = run_pdus(link, [bytes(n) for n in sizes], [t0, t0, t0 + 10.0])
    frames = {}
    for r in res.status:
        if r.get("status") == "frame":
            frames[r["frame_id"]] = r
    order = sorted(frames.values(), key=lambda r: r["frame_id"])
    # frames follow each other on the link clock; the PDU asked for t0 + 10 s gets it
    for a, b in itertools.pairwise(order):
        assert b["tx_start"] >= a["tx_end"] - 1e-12
    assert order[0]["tx_start"] == pytest.approx(t0)
    assert order[-1]["tx_start"] == pytest.approx(t0 + 10.0)
    for m, _ in res.delivered:
        assert m["tx_end"] >= m["tx_start"] and m["rx_end"] == pytest.approx(
            m["tx_end"] + m["prop_delay_s"]
        )
        ref = geo.state(frames[m["frame_id"]]["tx_start"])  # the link state of its frame
        assert m["prop_delay_s"] == pytest.approx(float(ref.prop_delay_s), rel=1e-3)
        assert m["elevation_deg"] == pytest.approx(float(ref.elevation_deg), abs=0.05)
        assert m["doppler_hz"] == pytest.approx(float(ref.doppler_hz), abs=0.5)
        assert m["crc_ok"] is True and m["link"] == "o" and m["wall_proc_s"] > 0


def test_realtime_mode_paces_but_keeps_the_emulated_times(best_pass):
    geo, w = best_pass
    t0 = w.tca_s
    runs = []
    for rt in (False, True):
        link = LinkChannel("r", geo, None, MODEM, seed=4, realtime=rt)
        res = run_pdus(link, [bytes(300)] * 3, [t0, t0, t0 + 0.01])
        runs.append(sorted((m["seq"], m["tx_start"], m["tx_end"]) for m, _ in res.delivered))
    assert runs[0] == runs[1] and len(runs[0]) == 3


def test_delivered_esn0_uses_the_noise_bandwidth():
    # B = 1.25 R_s: Es/N0 = SNR + 10 log10(B / R_s); the receiver's pilot estimate agrees
    rs = MODEM.symbol_rate_hz
    p = channel.LinkParams(
        tx_power_dbm=14.76, bandwidth_hz=1.25 * rs, shadowing_sigma_db=0.0, rain_probability=0.0
    )
    geo = channel.ScheduledLinkGeometry([WINDOW], p, elevation_deg=60.0)
    link = LinkChannel("e", geo, None, MODEM, policy=AcmPolicy("qpsk-1/2"), seed=5)
    res = run_pdus(link, [bytes(1000)] * 3, [10.0, 20.0, 30.0])
    assert len(res.delivered) == 3
    for m, _ in res.delivered:
        expected = m["snr_db"] + 10 * np.log10(1.25)
        assert m["snr_db"] == pytest.approx(float(geo.state(m["tx_start"]).snr_db))
        assert m["esn0_db"] == pytest.approx(expected, abs=1e-9)
        assert m["esn0_est_db"] == pytest.approx(expected, abs=0.7)

"""Elevation gate and link clock: outages lose frames; emulated times follow the clock."""

from __future__ import annotations

import pytest

import channel
from flowgraphs.link_channel import LinkChannel
from flowgraphs.measure import run_bursts

pytestmark = pytest.mark.integration


def _link(geo) -> LinkChannel:
    return LinkChannel(
        "o", geo, channel.RicianFading(10.0, 100.0, seed=2), 1.0e6, 250.0e3, "qpsk", seed=4
    )


def test_pdus_in_outage_are_lost_and_in_window_delivered(best_pass):
    # Prepare: the same 6 PDUs timed in the pass (around TCA) and in the outage before AOS
    geo, w = best_pass
    payloads = [bytes([i]) * 300 for i in range(6)]
    inside = [w.tca_s + 0.5 * i for i in range(6)]
    outside = [w.aos_s - 600.0 + 0.5 * i for i in range(6)]
    assert all(geo.state(inside).visible) and not any(geo.state(outside).visible)
    # Execute
    res_in = run_bursts(_link(geo), payloads, inside)
    res_out = run_bursts(_link(geo), payloads, outside)
    # Assert
    assert sorted(p for _, p in res_in.delivered) == sorted(payloads)
    assert res_out.delivered == []
    assert res_out.summary["accepted"] == 6  # the bursts were sent, the channel lost them
    lost = sum(v for k, v in res_out.summary.items() if k.startswith("lost_"))
    assert lost + res_out.summary["crc_fail"] == 6


def test_burst_straddling_los_is_cut(best_pass):
    # A burst that starts visible and ends after LOS loses its tail: not delivered
    geo, w = best_pass
    payload = bytes(8000)  # ≈ 0.13 s at QPSK, 250 kBd
    res = run_bursts(_link(geo), [payload], [w.los_s - 0.05])
    assert res.delivered == []


def test_clock_serialises_bursts_and_stamps_times(best_pass):
    geo, w = best_pass
    t0 = w.tca_s
    res = run_bursts(_link(geo), [bytes(500)] * 3, [t0, t0, t0 + 10.0])
    st = sorted(res.status, key=lambda m: m["seq"])
    # burst 1 waits for burst 0; burst 2 asked for a later time and gets it
    assert st[0]["tx_start"] == pytest.approx(t0)
    assert st[1]["tx_start"] == pytest.approx(st[0]["tx_end"])
    assert st[2]["tx_start"] == pytest.approx(t0 + 10.0)
    for m, _ in res.delivered:
        n = m["n_samples"]
        assert m["airtime_s"] == pytest.approx(n / 1.0e6)  # from the sample count
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
        link = LinkChannel("r", geo, None, 1.0e6, 250.0e3, "qpsk", seed=4, realtime=rt)
        res = run_bursts(link, [bytes(300)] * 3, [t0, t0, t0 + 0.01])
        runs.append(sorted((m["seq"], m["tx_start"], m["tx_end"]) for m in res.status))
    assert runs[0] == runs[1]

"""Blocks against the stock GNU Radio blocks they stand beside; PMT bridges; input checks;
the link clock's frames, reports and safe-time markers."""

from __future__ import annotations

import math

import numpy as np
import pmt
import pytest
from gnuradio import digital, filter

from flowgraphs import dsp, frame
from flowgraphs.burst_scheduler import AcmPolicy, BurstScheduler
from flowgraphs.modem import ModemConfig
from flowgraphs.pdu import encode_pdu
from flowgraphs.pmt_numpy import (
    c32_to_pmt,
    f32_to_pmt,
    pmt_to_c32,
    pmt_to_f32,
    pmt_to_u8,
    u8_to_pmt,
)
from flowgraphs.static_link import StaticLink
from flowgraphs.zmq_pdu import ZmqPduSource

from .conftest import run_stage

pytestmark = pytest.mark.integration

CFG = ModemConfig(5e6, 5e6 / 1.05, 0.05, 1440, 5.0)


def test_rrc_pulse_matches_firdes():
    sps, alpha = 4, 0.35
    t = (np.arange(16 * sps + 1) - 8 * sps) / sps
    ours = dsp.rrc(t, alpha)
    ref = np.array(filter.firdes.root_raised_cosine(1.0, sps, 1.0, alpha, t.size))
    np.testing.assert_allclose(ours / np.linalg.norm(ours), ref / np.linalg.norm(ref), atol=1e-5)


def test_stock_crc_append_matches_our_check():
    blk = digital.crc_append(32, 0x04C11DB7, 0xFFFFFFFF, 0xFFFFFFFF, True, True, True, 0)
    out = run_stage(blk, [({"seq": 1}, b"hello satellite")])
    assert out[0][1] == frame.append_crc32(b"hello satellite")
    assert frame.check_crc32(out[0][1])


def test_pmt_bridges_roundtrip_and_equal_stock_pmts():
    x = (np.arange(1000) * (1 + 2j)).astype(np.complex64)
    v = c32_to_pmt(x)
    assert pmt.equal(v, pmt.init_c32vector(x.size, x.tolist()))
    np.testing.assert_array_equal(pmt_to_c32(v), x)
    f = np.linspace(-3, 3, 500, dtype=np.float32)
    assert pmt.equal(f32_to_pmt(f), pmt.init_f32vector(f.size, f.tolist()))
    np.testing.assert_array_equal(pmt_to_f32(f32_to_pmt(f)), f)
    assert pmt_to_u8(u8_to_pmt(b"\x00\x01abc")) == b"\x00\x01abc"
    assert pmt.equal(u8_to_pmt(b"ab"), pmt.init_u8vector(2, [97, 98]))


def test_zmq_source_validates_and_counts(tmp_path):
    src = ZmqPduSource(f"ipc://{tmp_path}/in", max_payload_bytes=100)
    try:
        src.handle_bytes(b"not a pmt")
        src.handle_bytes(encode_pdu({"seq": 1}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": float("nan")}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": -1.0}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": 1.0}, bytes(101)))
        src.handle_bytes(encode_pdu({"tx_time": 1.0}, b""))
        src.handle_bytes(encode_pdu({"cmd": "advance", "tx_time": "soon"}, b""))
        src.handle_bytes(encode_pdu({"cmd": "advance", "tx_time": 5.0}, b""))
        src.handle_bytes(encode_pdu({"tx_time": 1}, b"fine"))
        c = src.stats()
    finally:
        src.close()
    assert c["not_pdu"] == 1 and c["bad_tx_time"] == 4 and c["bad_payload"] == 2
    assert c["accepted"] == 1 and c["advance"] == 1 and c["rejected"] == 7
    with pytest.raises(ValueError):
        ZmqPduSource("bogus://x")


def test_a_failing_stage_counts_and_keeps_running():
    from flowgraphs.burst_stage import BurstStage

    class Flaky(BurstStage):
        def process(self, meta, data):
            if meta["boom"]:
                raise RuntimeError("bug")
            return meta, data

    stage = Flaky("flaky")
    items = [({"boom": True}, np.ones(4, np.complex64)), ({"boom": False}, np.ones(4))]
    out = run_stage(stage, items, timeout_s=3.0)
    assert len(out) == 1 and stage.counters["internal_error"] == 1


class _Recorder:
    """Captures what a BurstScheduler publishes, in order (frames, markers, reports)."""

    def __init__(self, sched: BurstScheduler) -> None:
        self.log: list[tuple[str, dict, bytes]] = []
        sched.publish = lambda m, d, kind=None: self.log.append(("frame", m, bytes(d)))  # type: ignore[method-assign]
        sched.publish_control = lambda m: self.log.append(("marker", m, b""))  # type: ignore[method-assign]

        def pub(port, msg):
            self.log.append(("status", pmt.to_python(pmt.car(msg)), b""))

        sched.message_port_pub = pub  # type: ignore[method-assign]

    def of(self, kind: str) -> list[dict]:
        return [m for k, m, _ in self.log if k == kind]

    def control(self, sched: BurstScheduler, t: float) -> None:
        """An ``advance`` as the chain delivers it (returned markers are forwarded)."""
        for m in sched.control({"_ctl": "advance", "t": t}):
            self.log.append(("marker", m, b""))


def _scheduler(esn0_db=10.0, modcod="acm"):
    return BurstScheduler(
        "t", StaticLink(snr_db=esn0_db), CFG, CFG.symbol_rate_hz, AcmPolicy(modcod, 1.0)
    )


def test_frames_wait_for_a_promise_and_fill_from_the_queue():
    s = _scheduler(10.0, "qpsk-1/2")  # a 4050-byte data field
    rec = _Recorder(s)
    body = frame.append_crc32(bytes(1100))
    s.process({"tx_time": 1.0, "seq": 1}, body)
    assert rec.of("frame") == []  # more PDUs for this frame may still come
    for i in range(2, 6):
        s.process({"tx_time": 1.0, "seq": i}, body)
    frames = rec.of("frame")
    assert len(frames) == 1  # full: built without waiting
    f = frames[0]
    assert f["modcod"] == "qpsk-1/2" and f["df_len"] == 4050
    assert f["tx_start"] == 1.0 and f["tx_end"] == pytest.approx(1.0 + f["airtime_s"])
    assert f["rx_end"] == pytest.approx(f["tx_end"] + f["prop_delay_s"])
    assert [p["meta"]["seq"] for p in f["_pdus"]] == [1, 2, 3]  # the 4th continues
    rec.control(s, 1.0)  # not beyond the frame start: still waiting
    assert len(rec.of("frame")) == 1
    rec.control(s, 1.5)
    frames = rec.of("frame")
    assert len(frames) == 2 and frames[1]["tx_start"] == pytest.approx(f["tx_end"])
    assert [p["meta"]["seq"] for p in frames[1]["_pdus"]] == [4, 5]
    assert frames[1]["df_len"] < 4050  # shortened: what was queued
    reports = [r for r in rec.of("status") if r["status"] == "frame"]
    assert [[p[0] for p in r["pdus"]] for r in reports] == [[1, 2, 3], [4, 5]]
    assert reports[1]["pdus"][0][1] == 1.0  # PDU 4 started in the first frame


def test_safe_markers_bound_every_later_delivery():
    s = _scheduler(10.0)
    rec = _Recorder(s)
    rng = np.random.default_rng(0)
    for i in range(40):
        t = float(np.floor(i / 4))
        s.process(
            {"tx_time": t, "seq": i}, frame.append_crc32(rng.bytes(int(rng.integers(50, 3000))))
        )
        if i % 7 == 0:
            rec.control(s, t + 0.5)
    rec.control(s, 100.0)
    safe = -math.inf
    clock = -math.inf
    for kind, m, _ in rec.log:
        if kind == "marker":
            assert m["t"] > safe  # monotone
            safe = m["t"]
        elif kind == "frame":
            assert m["rx_end"] >= safe  # no delivery below a published safe time
        elif kind == "status" and m["status"] == "clock":
            clock = m["t"]
        elif kind == "status" and m["status"] == "frame":
            assert m["tx_start"] >= clock  # no report for a frame before the clock marker
    assert safe > 100.0


class _ShadowedLink(StaticLink):
    """Clear-sky prediction 10 dB throughout; the realised SNR drops to 2 dB at t = 5 s."""

    def state(self, t_s, shadowing=True):
        import dataclasses

        st = super().state(t_s, shadowing)
        dip = np.asarray(t_s, dtype=float) >= 5.0
        return dataclasses.replace(st, snr_db=np.where(dip, 2.0, st.snr_db))


def test_each_acm_prediction_uses_only_its_own_information():
    from flowgraphs import modcod

    def chosen(prediction, t):
        s = BurstScheduler(
            "t", _ShadowedLink(snr_db=10.0), CFG, CFG.symbol_rate_hz,
            AcmPolicy("acm", 1.0, prediction, feedback_delay_s=0.5),
        )  # fmt: skip
        return s._choose(t)

    off = 0.0  # the SNR is stated in B = R_s here: Es/N0 = SNR
    table = modcod.measured_thresholds()

    def expect(snr):
        return modcod.select(snr + off, 1.0, modcod.MODCODS, table).name

    assert expect(10.0) != expect(2.0)  # the dip changes the MODCOD
    # open loop: the clear-sky budget only, blind to the dip
    assert chosen("predict", 6.0)[0].name == expect(10.0)
    # closed loop: the SNR the receiver reported 0.5 s earlier
    assert chosen("feedback", 6.0)[0].name == expect(2.0)
    assert chosen("feedback", 5.3)[0].name == expect(10.0)  # the report predates the dip
    assert chosen("feedback", 5.3)[1] == pytest.approx(10.0 + off)
    # genie: the realised SNR at the frame itself
    assert chosen("genie", 5.3)[0].name == expect(2.0)


def test_feedback_reports_the_fading_one_round_trip_late():
    # The receiver's SNR report includes the fading power it measured; it is one round trip
    # (2 × 2 ms) plus δ = 10 ms old. Slow fading (0.2 Hz) is tracked: the report follows the
    # genie's fading at the frame itself. Fast fading (100 Hz, coherence ≈ 4 ms) is not: the
    # report is decorrelated from the fading at the frame.
    from channel import RicianFading

    def reports(fd_hz):
        fading = RicianFading(3.0, fd_hz, seed=3)
        link = StaticLink(snr_db=10.0)

        def sched(prediction):
            return BurstScheduler(
                "t", link, CFG, CFG.symbol_rate_hz, AcmPolicy("acm", 1.0, prediction), fading
            )  # fmt: skip

        fb, genie = sched("feedback"), sched("genie")
        ts = 1.0 + 0.137 * np.arange(300)
        return np.array([[fb._choose(t)[1], genie._choose(t)[1]] for t in ts])

    slow, fast = reports(0.2), reports(100.0)
    assert np.std(slow[:, 0]) > 1.0  # the fading is visible in the report
    assert np.median(np.abs(slow[:, 0] - slow[:, 1])) < 0.2
    assert np.corrcoef(slow.T)[0, 1] > 0.99
    assert abs(np.corrcoef(fast.T)[0, 1]) < 0.3
    # without a fading model the report is the large-scale SNR
    s = BurstScheduler("t", StaticLink(snr_db=7.0), CFG, CFG.symbol_rate_hz, AcmPolicy())
    assert s._choose(3.0)[1] == pytest.approx(7.0)


def test_feedback_report_is_one_round_trip_plus_delta_old():
    # τ = 0.25 s one way, δ = 0.01 s: the 2-dB dip at t = 5 s reaches the report at
    # t = 5 + 2τ + δ = 5.51 s, not before (no fading: the report is the large-scale SNR)
    def report(t):
        s = BurstScheduler(
            "t", _ShadowedLink(snr_db=10.0, prop_delay_s=0.25), CFG, CFG.symbol_rate_hz,
            AcmPolicy("acm", 1.0, "feedback", feedback_delay_s=0.01),
        )  # fmt: skip
        return s._choose(t)[1]

    assert report(5.505) == pytest.approx(10.0)
    assert report(5.515) == pytest.approx(2.0)


def test_feedback_falls_back_to_the_prediction_before_the_first_report():
    # a slot opens at t = 100 s: frames in its first 2τ + δ have no report (nothing was
    # received below the gate), so ACM uses the open-loop prediction, not the out-of-window SNR
    import channel

    p = channel.LinkParams(shadowing_sigma_db=0.0, rain_probability=0.0)
    geo = channel.ScheduledLinkGeometry([(100.0, 200.0)], p, elevation_deg=60.0)
    s = BurstScheduler("t", geo, CFG, CFG.symbol_rate_hz, AcmPolicy("acm", 1.0, "feedback"))
    inside = float(geo.state(150.0).snr_db)
    assert float(geo.state(99.0).snr_db) < inside - 1.0  # outside the slot: a worse SNR
    assert s._choose(100.001)[1] == pytest.approx(float(geo.predicted_snr_db(100.001)))
    assert s._choose(150.0)[1] == pytest.approx(inside)


def test_acm_follows_the_predicted_esn0():
    low, high = _scheduler(-1.0), _scheduler(12.0)
    assert low._choose(0.0)[0].name == "qpsk-1/4"
    mc = high._choose(0.0)[0]
    assert mc.constellation in ("16apsk", "32apsk") and mc.reference_esn0_db <= 11.5
    with pytest.raises(ValueError, match="unknown MODCOD"):
        AcmPolicy("qpsk-7/8")
    with pytest.raises(ValueError, match="prediction"):
        AcmPolicy(prediction="oracle")

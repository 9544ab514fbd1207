"""Blocks against the stock GNU Radio blocks they stand beside; PMT bridges; input checks."""

from __future__ import annotations

import numpy as np
import pmt
import pytest
from gnuradio import digital, filter

from flowgraphs import frame, modem
from flowgraphs.burst_modulator import BurstModulator, select_modulation
from flowgraphs.pmt_numpy import c32_to_pmt, pmt_to_c32, pmt_to_u8, u8_to_pmt
from flowgraphs.zmq_pdu import ZmqPduSource
from testbed.pdu import encode_pdu

from .conftest import run_stage

pytestmark = pytest.mark.integration


def test_rrc_taps_match_firdes():
    sps, alpha = 4, 0.35
    ours = modem.rrc_taps(sps, alpha)
    ref = np.array(filter.firdes.root_raised_cosine(1.0, sps, 1.0, alpha, ours.size))
    np.testing.assert_allclose(ours, ref / np.sqrt(np.sum(ref**2)), atol=1e-5)


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
    assert pmt_to_u8(u8_to_pmt(b"\x00\x01abc")) == b"\x00\x01abc"
    assert pmt.equal(u8_to_pmt(b"ab"), pmt.init_u8vector(2, [97, 98]))


def test_modulator_rejects_bad_construction_and_survives_bad_pdus():
    with pytest.raises(ValueError):
        BurstModulator(1e6, 300e3)
    with pytest.raises(ValueError):
        BurstModulator(1e6, 250e3, "64qam")
    mod = BurstModulator(1e6, 250e3, "qpsk")
    items = [({"tx_time": 0.0}, bytes(70_000)), ({"tx_time": 0.0}, b"ok!!!")]
    out = run_stage(mod, items, timeout_s=3.0)  # only one of the two comes out
    assert len(out) == 1 and out[0][0]["modulation"] == "qpsk"
    assert mod.counters["bad_length"] == 1


def test_adaptive_modulation_follows_predicted_snr():
    assert select_modulation(5.0) == "bpsk"
    assert select_modulation(15.0) == "qpsk"
    assert select_modulation(30.0) == "16qam"


def test_zmq_source_validates_and_counts(tmp_path):
    src = ZmqPduSource(f"ipc://{tmp_path}/in", max_payload_bytes=100)
    try:
        src.handle_bytes(b"not a pmt")
        src.handle_bytes(encode_pdu({"seq": 1}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": float("nan")}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": -1.0}, b"x"))
        src.handle_bytes(encode_pdu({"tx_time": 1.0}, bytes(101)))
        src.handle_bytes(encode_pdu({"tx_time": 1.0}, b""))
        src.handle_bytes(encode_pdu({"tx_time": 1}, b"fine"))
        c = src.stats()
    finally:
        src.close()
    assert c["not_pdu"] == 1 and c["bad_tx_time"] == 3 and c["bad_payload"] == 2
    assert c["accepted"] == 1 and c["rejected"] == 6
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

"""Doppler: the stage applies the expected frequency, the receiver measures it, and with the
default orbit-predicted pre-compensation it acquires across a whole pass."""

from __future__ import annotations

import numpy as np
import pytest

import channel
from flowgraphs.config import acquisition_range_hz, parse_config
from flowgraphs.errors import ConfigError
from flowgraphs.impairments import DopplerStage
from flowgraphs.measure import run_pdus

from .conftest import run_stage, static_link

pytestmark = pytest.mark.integration


def test_stage_applies_offset_and_rate():
    # Prepare: a tone-free carrier (all ones), f_d = 37.5 kHz, rate −600 Hz/s, 0.2 s burst
    fs, f0, rate = 1.0e6, 37.5e3, -600.0
    meta = {"_t0": 100.0, "tx_start": 100.0, "doppler_hz": f0, "doppler_rate_hz_per_s": rate}
    out = run_stage(DopplerStage(fs, "none"), [(meta, np.ones(200_000, np.complex64))])
    y = out[0][1].astype(np.complex128)
    # instantaneous frequency = f0 + rate·τ (within 2 Hz, averaged over 10 ms)
    inst = np.angle(y[1:] * np.conj(y[:-1])) * fs / (2 * np.pi)
    for i in (0, 100_000, 189_999):
        tau = (i + 5000) / fs
        assert np.mean(inst[i : i + 10_000]) == pytest.approx(f0 + rate * tau, abs=2.0)


@pytest.mark.parametrize(
    ("precomp", "residual", "expected"),
    [("none", 0.0, 41_234.0), ("residual", 750.0, 750.0), ("full", 0.0, 0.0)],
)
def test_receiver_measures_the_applied_doppler(precomp, residual, expected):
    from flowgraphs.burst_scheduler import AcmPolicy
    from flowgraphs.link_channel import LinkChannel
    from flowgraphs.modem import ModemConfig
    from flowgraphs.static_link import StaticLink

    cfg = ModemConfig(5e6, 5e6 / 1.05, 0.05, 1440, 5.0)
    link = LinkChannel(
        "d",
        StaticLink(snr_db=15.0, doppler_hz=41_234.0),
        None,
        cfg,
        noise_bandwidth_hz=cfg.symbol_rate_hz,
        policy=AcmPolicy("qpsk-1/2"),
        seed=3,
        doppler_precomp=precomp,
        residual_hz=residual,
    )
    res = run_pdus(link, [bytes(range(200)) * 10] * 3, [0.0] * 3)
    assert len(res.delivered) == 3
    for meta, _ in res.delivered:
        assert meta["doppler_hz"] == pytest.approx(41_234.0)
        assert meta["freq_est_hz"] == pytest.approx(expected, abs=20.0)


def test_acquisition_across_a_whole_pass_with_the_default_precompensation(best_pass):
    # the default link (ACM, orbit-predicted pre-compensation with a 300 Hz residual): frames
    # at the start, the middle and the end of the highest pass, at the real Doppler rate
    geo, w = best_pass
    strong = {"tx_power_dbm": 40.0, "shadowing_sigma_db": 0.0}  # the test is acquisition
    cfg = parse_config({"link": [{"id": "p", "seed": 1, "params": strong}]})
    lc = cfg.links[0]
    assert lc.doppler_precomp == "residual" and abs(lc.residual_hz) <= acquisition_range_hz(
        lc.symbol_rate_hz
    )
    times = [w.aos_s + 60.0, w.tca_s, w.los_s - 60.0]
    st = geo.state(np.array(times))
    assert np.max(np.abs(st.doppler_hz)) > 20e3  # the Doppler the terminal removes is real
    res = run_pdus(lc.channel(), [bytes(2000)] * 3, times)
    assert len(res.delivered) == 3
    for m, _ in res.delivered:
        assert m["freq_est_hz"] == pytest.approx(lc.residual_hz, abs=30.0)


def test_a_residual_beyond_the_acquisition_range_is_refused_at_start_up():
    with pytest.raises(ConfigError, match="residual_hz"):
        parse_config({"link": [{"id": "a", "residual_hz": 5e4}]})
    assert acquisition_range_hz(4.76e6) == pytest.approx(37_187.5)


def test_static_link_harness_delivers():
    link = static_link(20.0, "qpsk-1/2")
    assert len(run_pdus(link, [b"x" * 100], [0.0]).delivered) == 1
    _ = channel  # the geometry module is the reference above

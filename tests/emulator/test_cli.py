"""``testbed channel per|bench --json`` as a user runs them."""

from __future__ import annotations

import json

import pytest

from ..conftest import run_cli

pytestmark = pytest.mark.integration


def test_per_json_and_plot(tmp_path):
    png = tmp_path / "fer.png"
    r = run_cli(
        "channel",
        "per",
        "--modcod",
        "qpsk-1/2",
        "--esn0-db",
        "0.0,2.0",
        "--frames",
        "8",
        "--json",
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    (mc,) = res["modcods"]
    assert {"name", "esn0_db_at_fer_1e-2", "reference_esn0_db", "spectral_efficiency"} <= set(mc)
    assert mc["name"] == "qpsk-1/2" and mc["reference_esn0_db"] == 1.0
    assert [p["esn0_db"] for p in mc["points"]] == [0.0, 2.0]
    # below the threshold every frame is lost, 1 dB above none is
    assert mc["points"][0]["fer"] == 1.0 and mc["points"][1]["fer"] == 0.0
    assert 0.0 < mc["esn0_db_at_fer_1e-2"] <= 2.0
    assert 0.9 < mc["spectral_efficiency"] < 1.0  # k / frame symbols, framing included
    assert png.stat().st_size > 1000


def test_bench_json_has_the_reference_chain():
    r = run_cli("channel", "bench", "--frames", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (link,) = out["links"]
    assert link["sample_rate_hz"] == 5e6 and link["samples"] > 0
    assert link["msps"] > 0 and link["msps_per_core"] > 0 and link["delivered"] == 4
    assert "LDPC" in link["decoder"]
    assert {"satfl_burst_demodulator", "satfl_fec_decoder"} <= set(link["per_block_ns"])
    ref = out["reference"]
    assert ref["msps_per_core"] > 0 and ref["ratio_link_to_reference_per_core"] > 0


def test_user_errors_are_one_line():
    r = run_cli("channel", "per", "--esn0-db", "abc")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--esn0-db" in r.stderr
    r = run_cli("channel", "serve", "--config", "/nonexistent/emu.toml")
    assert r.returncode == 2 and "emu.toml" in r.stderr
    r = run_cli("channel", "bench", "--modcod", "qpsk-7/8")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--modcod" in r.stderr

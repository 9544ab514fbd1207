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
        "--modulation",
        "bpsk",
        "--snr-db",
        "6,12",
        "--frames",
        "20",
        "--payload-bytes",
        "64",
        "--json",
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert [p["esn0_db"] for p in res["points"]] == [6.0, 12.0]
    assert res["points"][1]["fer"] <= res["points"][0]["fer"]
    assert all(0.0 <= p["fer_theory"] <= 1.0 for p in res["points"])
    assert png.stat().st_size > 1000


def test_bench_json():
    r = run_cli("channel", "bench", "--bursts", "3", "--payload-bytes", "500", "--json")
    assert r.returncode == 0, r.stderr
    (link,) = json.loads(r.stdout)["links"]
    assert link["samples"] > 0 and link["msps"] > 0 and link["realtime_ratio"] > 0
    assert "satfl_burst_demodulator" in link["per_block_ns"]


def test_user_errors_are_one_line():
    r = run_cli("channel", "per", "--snr-db", "abc")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--snr-db" in r.stderr
    r = run_cli("channel", "serve", "--config", "/nonexistent/emu.toml")
    assert r.returncode == 2 and "emu.toml" in r.stderr

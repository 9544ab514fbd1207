"""`testbed send` through the running GNU Radio emulator, as a user runs it."""

import json
import os

import pytest

from channel import LinkGeometry, contact_windows, default_link_geometry

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _windows(min_el):
    base = default_link_geometry()
    p = base.params.with_updates(min_elevation_deg=min_el)
    g = LinkGeometry(base.orbit, base.site, p, seed=1)
    return contact_windows(g.orbit, g.site, 0.0, 86400.0, min_el)


def _send_through_emulator(cli, tmp_path, data: bytes, *extra: str) -> dict:
    """`testbed send` of ``data`` with a self-started emulator and receiver (θ_min 30°);
    asserts it was accepted byte-exact and returns the upload record."""
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    rdir = tmp_path / "rx"
    r = cli(
        "send",
        str(f),
        "--start-emulator",
        "--receiver-dir",
        str(rdir),
        "--min-elevation-deg",
        "30",
        "--json",
        *extra,
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout)
    assert rec["status"] == "accepted"
    acc = [p for p in (rdir / "accepted").iterdir() if p.suffix == ".safetensors"]
    assert len(acc) == 1 and acc[0].read_bytes() == data
    return rec


def test_send_1mb_byte_exact_with_upload_record(cli, tmp_path):
    data = os.urandom(1_000_000)
    records = tmp_path / "uploads.jsonl"
    rec = _send_through_emulator(cli, tmp_path, data, "--records", str(records))
    # Emulated times: first fragment inside the first ≥30° pass, completion after it.
    w = _windows(30.0)[0]
    assert w.aos_s <= rec["first_tx_s"] < w.los_s
    airtime_floor = len(data) * 8 / 500e3  # QPSK at 250 ksym/s carries 500 kbit/s at best
    assert rec["upload_time_s"] > airtime_floor
    assert rec["accepted_s"] == pytest.approx(rec["first_tx_s"] + rec["upload_time_s"])
    assert rec["goodput_bps"] == pytest.approx(len(data) * 8 / rec["upload_time_s"])
    assert rec["fragments_sent"] >= rec["fragments"]
    assert 0 < rec["predicted_shannon_s"] < rec["upload_time_s"]
    assert rec["wall_s"] > 0
    assert json.loads(records.read_text().splitlines()[0])["transfer_id"] == rec["transfer_id"]


def test_send_resumes_on_the_next_pass_through_the_emulator(cli, tmp_path):
    ws = _windows(30.0)
    data = os.urandom(200_000)  # ≥ 3.2 s of airtime
    start = ws[0].los_s - 1.5  # the first pass closes mid-transfer
    rec = _send_through_emulator(cli, tmp_path, data, "--start-s", str(start))
    assert rec["passes_used"] == 2
    assert ws[1].aos_s < rec["accepted_s"] < ws[1].los_s
    assert rec["stats"]["prompts_sent"] >= 1
    assert rec["fragments_sent"] < 2 * rec["fragments"]  # resumed from the gaps


def test_send_bad_input_is_one_line(cli, tmp_path):
    r = cli("send", str(tmp_path / "missing.bin"))
    assert r.returncode == 2 and "no such file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    r = cli("send", str(f), "--fragment-size", "5")
    assert r.returncode == 2 and "--fragment-size" in r.stderr

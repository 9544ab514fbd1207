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
    # the densest MODCOD (32APSK 9/10, 4.15 bit per symbol with framing) at 4.76 MBd
    airtime_floor = len(data) * 8 / (4.15 * 5e6 / 1.05)
    assert rec["upload_time_s"] > airtime_floor
    assert rec["accepted_s"] == pytest.approx(rec["first_tx_s"] + rec["upload_time_s"])
    assert rec["goodput_bps"] == pytest.approx(len(data) * 8 / rec["upload_time_s"])
    assert rec["fragments_sent"] >= rec["fragments"]
    assert 0 < rec["predicted_shannon_s"] < rec["upload_time_s"]
    assert rec["wall_s"] > 0
    # the capacities of the same interval, and what the chosen MODCODs could carry
    assert rec["bandwidth_hz"] == 5e6 and rec["occupied_bandwidth_hz"] == pytest.approx(5e6)
    assert rec["goodput_bps"] < rec["modcod_rate_bps"] and rec["modcods"]
    assert rec["goodput_bps"] < rec["shannon_bps"]
    assert rec["occupied_shannon_bps"] == pytest.approx(rec["shannon_bps"], rel=1e-6)
    assert rec["efficiency_vs_shannon"] == pytest.approx(rec["goodput_bps"] / rec["shannon_bps"])
    assert json.loads(records.read_text().splitlines()[0])["transfer_id"] == rec["transfer_id"]


def test_send_resumes_on_the_next_pass_through_the_emulator(cli, tmp_path):
    ws = _windows(30.0)
    data = os.urandom(2_000_000)  # ≥ 2 s at the MODCODs near 30° elevation
    start = ws[0].los_s - 1.0  # the first pass closes mid-transfer
    rec = _send_through_emulator(cli, tmp_path, data, "--start-s", str(start))
    assert rec["passes_used"] == 2
    assert ws[1].aos_s < rec["accepted_s"] < ws[1].los_s
    assert rec["stats"]["prompts_sent"] >= 1
    # resumed from the gaps: every fragment went out once as new, the rest were resends
    assert rec["fragments_sent"] - rec["fragments_retransmitted"] == rec["fragments"]


def test_send_bad_input_is_one_line(cli, tmp_path):
    r = cli("send", str(tmp_path / "missing.bin"))
    assert r.returncode == 2 and "no such file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    r = cli("send", str(f), "--fragment-size", "5")
    assert r.returncode == 2 and "--fragment-size" in r.stderr
    r = cli("send", str(f), "--deadline-s=-5")
    assert r.returncode == 2 and "--deadline-s" in r.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dir", "{file}"], "receiver directory"),
        (["--dir", "{tmp}/rx", "--max-payload-mb=-1"], "--max-payload-mb"),
        (["--dir", "{tmp}/rx", "--max-payload-mb", "nan"], "--max-payload-mb"),
        (["--dir", "{tmp}/rx", "--frame-bytes", "0"], "--frame-bytes"),
    ],
)
def test_receive_bad_input_is_one_line(cli, tmp_path, args, needle):
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    r = cli("receive", *[a.replace("{file}", str(f)).replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_sigterm_stops_the_emulator_and_receiver_and_removes_the_temp_dir(tmp_path):
    import re
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(4_000_000))
    p = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "send", str(f), "--start-emulator", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # wait until both children run (their command lines name the send's temp dir)
        tmpdir = None
        end = time.monotonic() + 120
        while time.monotonic() < end and tmpdir is None:
            r = subprocess.run(
                ["pgrep", "-af", "testbed.cli receive"], capture_output=True, text=True
            )
            m = re.search(r"(/[^\s]*?/satfl-send-[^/\s]+)/", r.stdout)
            tmpdir = m.group(1) if m else None
            time.sleep(0.2)
        assert tmpdir is not None, "the receiver did not start"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    time.sleep(1.0)
    left = subprocess.run(["pgrep", "-f", tmpdir], capture_output=True, text=True).stdout.split()
    assert left == []  # emulator and receiver are gone
    assert not os.path.exists(tmpdir)

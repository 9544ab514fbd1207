"""The orchestrated run: real emulator, satellite and cluster processes on one emulated clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import default_sigint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

BASE = """
[scenario]
name = "{name}"
seed = 0

[link]
bandwidth_hz = 62500.0
rolloff = 0.25
modcod = "qpsk-8/9"
fading_max_doppler_hz = 20.0

[schedule]
mode = "ideal"
slot_s = {slot_s}

[time]
compute = "fixed"
round_s = {round_s}
late_policy = "next"

[algorithm]
name = "{algorithm}"
cycles = {cycles}

[model]
device = "cpu"

[[cluster]]
id = "c1"
lat_deg = 48.1
lon_deg = 11.6
devices = {devices}

[[cluster]]
id = "c2"
lat_deg = 40.4
lon_deg = -3.7
devices = {devices}
"""


def _scenario(tmp: Path, **kw) -> Path:
    vals = {
        "name": "t",
        "slot_s": 20.0,
        "round_s": 5.0,
        "algorithm": "emsfl",
        "cycles": 1,
        "devices": 1,
    } | kw
    f = tmp / "scn.toml"
    f.write_text(BASE.format(**vals))
    return f


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def _run(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "testbed.cli", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """One short EMS-FL run (2 cycles, 2 clusters): (scenario, run dir, stderr, stdout)."""
    tmp = tmp_path_factory.mktemp("short")
    scn = _scenario(tmp, algorithm="emsfl", cycles=2)
    out = tmp / "run"
    before = _ipc_files()
    r = _run(str(scn), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _ipc_files() - before == set()  # a successful run leaves no socket files either
    return scn, out, r.stderr, r.stdout


def test_short_scenario_end_to_end_through_the_emulator(short_run):
    _, out, stderr, stdout = short_run
    d = out / "emsfl"
    for f in (
        "scenario.toml",
        "emulator.toml",
        "windows.json",
        "uploads.jsonl",
        "aggregations.jsonl",
        "metrics.jsonl",
        "events.jsonl",
        "link.jsonl",
    ):
        assert (d / f).exists(), f
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "ok"
    metrics = _jsonl(d / "metrics.jsonl")
    assert [m["cycle"] for m in metrics] == [1, 2]
    windows = json.loads((d / "windows.json").read_text())
    ups = _jsonl(d / "uploads.jsonl")
    assert ups and all(u["fragments_sent"] > 0 and u["airtime_s"] > 0 for u in ups)
    for u in ups:  # every upload started inside one of its cluster's windows (emulated time)
        assert any(a <= u["first_tx_s"] < b for a, b in windows[u["cluster"]])
        assert (d / "payloads" / u["payload"]).exists()
    aggs = _jsonl(d / "aggregations.jsonl")
    accepted = {u["payload"]: u for u in ups if u["status"] == "accepted"}
    for a in aggs:  # the satellite aggregated exactly what had arrived by t_agg
        for inc in a["included"]:
            assert inc["accepted_s"] <= a["t_agg_s"]
            assert inc["payload"] in accepted
    assert sum(len(a["included"]) for a in aggs) > 0
    # the record says what the strategy used of each included payload: all of its tensors here
    assert all(
        inc["tensors_used"] > 0 == inc["tensors_dropped"] for a in aggs for inc in a["included"]
    )
    # ...and nothing the receiver had committed by t_agg is missing (its own records decide).
    for a in aggs:
        recs = [
            json.loads(x)
            for x in (d / "satellite" / f"rx-{a['cluster']}" / "records.jsonl")
            .read_text()
            .splitlines()
        ]
        for m in a["missing"]:
            if m["payload"] is None:
                continue
            for rr in recs:
                if (
                    rr["status"] == 0
                    and rr["round"] == a["cycle"]
                    and rr["kind"] == a["stage"]
                    and rr["sender"] == f"{a['cluster']}-d{m['device']}"
                ):
                    assert rr["accepted_s"] > a["t_agg_s"], (a, rr)
    # The satellite's accepted/ holds the very bytes each cluster sent.
    for cid in ("c1", "c2"):
        for f in (d / "satellite" / f"rx-{cid}" / "accepted").glob("*.safetensors"):
            name = json.loads(
                f.with_name(f.name[: -len(".safetensors")] + ".manifest.json").read_text()
            )["name"]
            assert f.read_bytes() == (d / "payloads" / name).read_bytes()
    # Every burst's link record, as the emulator delivered it, and each node's peak memory.
    bursts = _jsonl(d / "bursts-c1.jsonl")
    assert bursts and all(
        {"tx_start", "rx_end", "snr_db", "elevation_deg", "doppler_hz", "modcod"} <= set(b)
        for b in bursts
    )
    assert set(metrics[0]["peak_memory_bytes_by_node"]) == {"satellite", "c1", "c2"}
    # Live progress was shown (plain lines: stderr is not a terminal), with emulated time,
    # and the run ended with its summary table, whose numbers are the records'.
    assert "[emsfl] cycle 2/2" in stderr and " · t " in stderr and "ETA" in stderr
    assert "Loading weights" not in stderr  # third-party bars are off
    head, rule, row = stdout.splitlines()[:3]
    assert head.split()[:2] == ["algorithm", "cycles"] and set(rule) <= {"-", " "}
    acc = f"{metrics[-1]['accuracy_global']:.3f}"
    finals = {u.get("transfer_id") or u["payload"]: u for u in ups}  # last record per payload
    n_acc = sum(1 for u in finals.values() if u["status"] == "accepted")
    assert row.split()[:3] == ["emsfl", "2", acc] and f"{n_acc}/{len(finals)}" in row


# Record fields measured on the wall clock (or the host's memory); all others are emulated
# or derived from emulated quantities and must repeat exactly.
WALL_KEYS = {"wall_s", "peak_memory_bytes", "peak_memory_bytes_by_node"}


def _strip_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_KEYS} for r in rows]


def test_same_scenario_twice_gives_identical_records(short_run, tmp_path):
    # The same scenario and seed, run again (other sockets, other wall timing, other PIDs):
    # uploads, aggregations and metrics repeat exactly, floats bit for bit (docs/clock.md).
    # The node keys are inputs too (docs/clock.md): the second run uses the first one's.
    scn, out1, _, _ = short_run
    out2 = tmp_path / "run2"
    r = _run(str(scn), "--out", str(out2), "--set", f"endpoints.keys={out1 / 'emsfl' / 'keys'}")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("uploads.jsonl", "aggregations.jsonl", "metrics.jsonl"):
        a = _jsonl(out1 / "emsfl" / name)
        b = _jsonl(out2 / "emsfl" / name)
        assert a, name
        assert _strip_wall(a) == _strip_wall(b), name
    # the wall-clock fields are there and do differ between the runs: they are measured
    w1 = [u["wall_s"] for u in _jsonl(out1 / "emsfl" / "uploads.jsonl")]
    w2 = [u["wall_s"] for u in _jsonl(out2 / "emsfl" / "uploads.jsonl")]
    assert w1 != w2


def test_window_too_short_payload_is_aggregated_one_pass_later(tmp_path):
    # Baseline full-LoRA payloads (71 kB) need ≈ 6.5 s uplink at QPSK 8/9, 50 kBd
    # (≈ 88 kbit/s); the connected plan first downloads (≈ 11.8 s at the control channel's
    # QPSK 1/2) and trains (5 s), so a 20 s slot leaves ≈ 3 s: the upload cannot finish.
    scn = _scenario(tmp_path, algorithm="baseline", cycles=2, slot_s=20.0, round_s=5.0)
    out = tmp_path / "run"
    r = _run(str(scn), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    d = out / "baseline"
    aggs = _jsonl(d / "aggregations.jsonl")
    first = [a for a in aggs if a["cycle"] == 1]
    assert all(not a["included"] and a["missing"] for a in first)
    assert all(m["reason"] == "late" for a in first for m in a["missing"])
    # One pass later, the cycle-1 payload completed and is aggregated.
    later = [inc for a in aggs if a["cycle"] == 2 for inc in a["included"]]
    assert any(inc["cycle"] == 1 for inc in later), aggs
    ups = _jsonl(d / "uploads.jsonl")
    done = [u for u in ups if u["cycle"] == 1 and u["status"] == "accepted"]
    assert done and all(u["passes_used"] >= 2 for u in done)


def _pgrep(pattern: str) -> list[int]:
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def _ipc_files() -> set[Path]:
    return set(Path("/tmp").glob("satfl-*"))


def test_killing_a_cluster_fails_the_run_cleanly(tmp_path):
    scn = _scenario(tmp_path, algorithm="emsfl", cycles=3)
    out = tmp_path / "run"
    before = _ipc_files()
    p = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", str(scn), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pat = f"node cluster --id c2 --scenario {out}"
        end = time.monotonic() + 240
        while time.monotonic() < end and not (out / "emsfl" / "progress.json").exists():
            time.sleep(0.5)
        pids = _pgrep(pat)
        assert pids, "cluster c2 did not start"
        os.kill(pids[0], signal.SIGKILL)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3
    lines = [x for x in err.splitlines() if x.startswith("testbed: error:")]
    assert len(lines) == 1 and "cluster c2" in lines[0] and "cluster-c2.log" in lines[0]
    assert "Traceback" not in err
    time.sleep(1.0)
    assert _pgrep(str(out)) == []  # no orphans: emulator, satellite and c1 are gone
    assert _ipc_files() - before == set()  # no socket files left behind
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_bad_scenario_is_one_line(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(
        BASE.format(name="t", slot_s=-1, round_s=5, algorithm="emsfl", cycles=1, devices=1)
    )
    r = _run(str(f), timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "schedule.slot_s" in r.stderr
    good = _scenario(tmp_path)
    r = _run(str(good), "--set", "bogus.key=1", timeout=60)
    assert r.returncode == 2 and "bogus" in r.stderr
    assert r.stderr.strip().count("\n") == 0


ORBIT = """
[scenario]
name = "orbit"
[link]
bandwidth_hz = 62500.0
rolloff = 0.25
doppler_precomp = "{precomp}"
residual_hz = 50.0
[schedule]
mode = "orbit"
horizon_h = 24.0
[time]
round_s = 5.0
[algorithm]
name = "emsfl"
cycles = 1
[model]
device = "cpu"
[[cluster]]
id = "c1"
lat_deg = 48.1
lon_deg = 11.6
devices = 1
[[cluster]]
id = "c2"
lat_deg = 40.4
lon_deg = -3.7
devices = 1
"""


def test_orbit_schedule_run_uses_real_passes(tmp_path):
    f = tmp_path / "orbit.toml"
    f.write_text(ORBIT.format(precomp="residual"))
    out = tmp_path / "run"
    r = _run(str(f), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    d = out / "emsfl"
    windows = json.loads((d / "windows.json").read_text())
    ups = [u for u in _jsonl(d / "uploads.jsonl") if u["status"] == "accepted"]
    assert ups
    for u in ups:  # inside a real pass of that cluster, above the elevation gate
        assert any(a <= u["first_tx_s"] and u["accepted_s"] <= b for a, b in windows[u["cluster"]])
        assert u["predicted_shannon_s"] < u["upload_time_s"]
    assert "warning" not in r.stderr


def test_doppler_beyond_acquisition_range_is_rejected():
    import tomllib

    from testbed.errors import ConfigError
    from testbed.scenario import parse_scenario

    # Without pre-compensation a 600 km pass reaches ±44 kHz at 2 GHz, far beyond what the
    # receiver acquires at 50 kBd (±R_s/64 ≈ ±0.8 kHz): refused at parse time, naming the key.
    with pytest.raises(ConfigError, match="doppler_precomp"):
        parse_scenario(tomllib.loads(ORBIT.format(precomp="none")), "orbit.toml")
    parse_scenario(tomllib.loads(ORBIT.format(precomp="residual")), "orbit.toml")


def test_ctrl_c_stops_everything(tmp_path):
    scn = _scenario(tmp_path, algorithm="emsfl", cycles=3)
    out = tmp_path / "run"
    before = _ipc_files()
    p = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "run", str(scn), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and not (out / "emsfl" / "progress.json").exists():
            time.sleep(0.5)
        assert _pgrep(str(out)), "the run's children did not start"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    time.sleep(1.0)
    assert _pgrep(str(out)) == []
    assert _ipc_files() - before == set()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_rerun_into_the_same_directory_starts_afresh(tmp_path):
    from testbed.run import prepare_run_dir
    from testbed.scenario import load_scenario

    scn = load_scenario(_scenario(tmp_path))
    sub = tmp_path / "run" / "emsfl"
    prepare_run_dir(scn, sub, "tok1")
    (sub / "uploads.jsonl").write_text('{"old": 1}\n')
    prepare_run_dir(scn, sub, "tok2")
    assert not (sub / "uploads.jsonl").exists()
    assert "tok2" in (sub / "emulator.toml").read_text()

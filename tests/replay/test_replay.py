"""``testbed replay`` / ``testbed sweep``: recorded payloads through changed channel settings.

The integration tests make one small real run (1 cluster, 2 cycles, baseline, the embedded
model) with ``testbed run`` and replay it through the real GNU Radio emulator.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from testbed.errors import UserError
from testbed.replay import (
    Command,
    RecordedPayload,
    RecordedRun,
    compare,
    load_recorded,
    parse_grid,
    replay_run,
)
from tests.conftest import REPO, run_cli

# Unchanged settings reproduce each upload time exactly: link time is emulated time only
# (docs/clock.md), the channel is seeded per burst by its emulated start, and the sender's
# schedule depends only on the emulator's reports.
REPRO_TOL_S = 0.0


def _tiny_scenario(path: Path) -> Path:
    text = (REPO / "testbed/scenarios/default.toml").read_text()
    text = text[: text.index('[[cluster]]\nid = "madrid"')]  # munich only
    text = text.replace("cycles = 3", "cycles = 2").replace(
        'name = "emsfl-enhanced"', 'name = "baseline"'
    )
    path.write_text(text)
    return path


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "replays" not in p.parts and "sweeps" not in p.parts
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("replay")
    scn = _tiny_scenario(tmp / "tiny.toml")
    out = tmp / "run"
    r = run_cli("run", str(scn), "--algorithm", "baseline", "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


# ---- unit (no emulator) ---------------------------------------------------------------------


def _rec(accepted: dict[str, float | None]) -> RecordedRun:
    payloads = {
        n: RecordedPayload(
            n, "c1", i, 1, "full", 5.0, {"upload_time_s": acc, "accepted_s": acc, "passes_used": 1}
        )
        for i, (n, acc) in enumerate(accepted.items())
    }
    aggs = [
        {
            "cycle": 1,
            "cluster": "c1",
            "stage": "full",
            "t_agg_s": 10.0,
            "included": [{"payload": "a"}],
            "missing": [{"payload": "b", "reason": "late"}],
        }
    ]
    cmds = {"c1": [Command(1, "full", 5.0, list(payloads.values()))]}
    return RecordedRun("baseline", Path("."), None, payloads, cmds, aggs)


def test_compare_names_newly_missed_and_newly_made() -> None:
    # Prepare: originally a was in (accepted 8 s), b was late (12 s)
    rec = _rec({"a": 8.0, "b": 12.0})
    # Execute: the replay has a late and b on time
    res = compare(rec, {"a": {"accepted_s": 11.0, "upload_time_s": 6.0}, "b": {"accepted_s": 9.0}})
    # Assert
    agg = res["aggregations"][0]
    assert [m["payload"] for m in agg["newly_missed"]] == ["a"]
    assert agg["newly_missed"][0]["reason"] == "late"
    assert [m["payload"] for m in agg["newly_made"]] == ["b"]
    assert res["summary"]["newly_missed"] == 1 and res["summary"]["newly_made"] == 1


def test_compare_not_accepted_is_lost() -> None:
    res = compare(_rec({"a": 8.0, "b": None}), {"a": {"accepted_s": None}, "b": {}})
    assert res["aggregations"][0]["newly_missed"][0]["reason"] == "lost"


def test_parse_grid() -> None:
    g = parse_grid(["link.rician_k_db=0,3,10", "link.min_elevation_deg=10, 25"])
    assert g == {"link.rician_k_db": ["0", "3", "10"], "link.min_elevation_deg": ["10", "25"]}


@pytest.mark.parametrize(
    "items", [["link.rician_k_db"], ["=1,2"], ["link.rician_k_db=1,,2"], [], ["a=1", "a=2"]]
)
def test_parse_grid_errors(items: list[str]) -> None:
    with pytest.raises(UserError) as e:
        parse_grid(items)
    assert "\n" not in str(e.value)


def test_not_a_run_dir(tmp_path: Path) -> None:
    r = run_cli("replay", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "not a run directory" in r.stderr


def test_no_payloads(tmp_path: Path) -> None:
    sub = tmp_path / "baseline"
    sub.mkdir()
    _tiny_scenario(sub / "scenario.toml")
    with pytest.raises(UserError, match="no payloads"):
        load_recorded(sub)


# ---- integration (real emulator) ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_unchanged_replay_reproduces_upload_times(run_dir: Path) -> None:
    # Prepare
    before = _digest(run_dir)
    # Execute (default output directory: RUN/replays/<stamp>/)
    res, path = replay_run(run_dir, [])
    # Assert
    assert path.is_file() and path.parent.parent == run_dir / "replays"
    assert _digest(run_dir) == before  # the run's own files are untouched
    a = res["algorithms"]["baseline"]
    assert len(a["payloads"]) == 4
    both = [r for r in a["payloads"] if r["original"]["upload_time_s"] is not None]
    assert both, "the tiny run should accept at least one payload"
    for r in a["payloads"]:
        assert r["replay"]["status"] == r["original"]["status"]
        assert r["replay"]["passes_used"] == r["original"]["passes_used"]
    for r in both:
        assert abs(r["delta_upload_time_s"]) <= REPRO_TOL_S, r
    assert a["summary"]["newly_missed"] == 0 and a["summary"]["newly_made"] == 0
    fl = a["summary"]["frame_losses"]
    assert fl["frames"] > 0 and fl["delivered_pdus"] > 0


@pytest.mark.integration
@pytest.mark.slow
def test_harsher_setting_lengthens_upload_times(run_dir: Path, tmp_path: Path) -> None:
    # Execute: 20 dB less transmit power (10 → −10 dBm: Es/N0 ≈ 20–24 → 0–4 dB, 32APSK 9/10 →
    # QPSK 1/2…3/4, 3–4× the airtime), through the CLI
    r = run_cli(
        "replay",
        str(run_dir),
        "--set",
        "link.tx_power_dbm=-10",
        "--json",
        "--out",
        str(tmp_path / "harsh"),
    )
    # Assert
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert json.loads((tmp_path / "harsh" / "replay.json").read_text())["overrides"] == [
        "link.tx_power_dbm=-10"
    ]
    a = res["algorithms"]["baseline"]
    rows = [x for x in a["payloads"] if x["original"]["upload_time_s"] is not None]
    longer = [
        x
        for x in rows
        if x["replay"]["upload_time_s"] is None
        or x["replay"]["upload_time_s"] > x["original"]["upload_time_s"] + REPRO_TOL_S
    ]
    assert longer, a["payloads"]
    assert a["summary"]["newly_missed"] >= 1
    # the summary says why: frames lost by reason, from the emulator's own counters
    fl = a["summary"]["frame_losses"]
    lost = sum(v for k, v in fl.items() if k not in ("frames", "delivered_pdus"))
    assert fl["frames"] > 0 and 0 <= lost <= fl["frames"]
    assert set(fl) >= {"gate", "detection", "decoding (LDPC)", "CRC"}
    nd, late = a["summary"]["replay_payloads_not_delivered"], a["summary"]["replay_payloads_late"]
    assert nd + late >= 1  # the newly missed payload is one of the two
    txt = run_cli("replay", str(run_dir), "--set", "link.tx_power_dbm=-10", "--out",
                  str(tmp_path / "harsh2"))  # fmt: skip
    assert txt.returncode == 0 and "why:" in txt.stdout and "frames lost" in txt.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_sweep_writes_json_and_plot(run_dir: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "sweep", tmp_path / "sweep.png"
    r = run_cli(
        "sweep",
        str(run_dir),
        "--grid",
        "link.rician_k_db=10,3",
        "--out",
        str(out),
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads((out / "sweep.json").read_text())
    assert data["grid"] == {"link.rician_k_db": [10, 3]}
    assert [p["settings"] for p in data["points"]] == [
        {"link.rician_k_db": 10},
        {"link.rician_k_db": 3},
    ]
    for p in data["points"]:
        s = p["algorithms"]["baseline"]
        assert s["payloads"] == 4 and 0.0 <= s["replay_aggs_incomplete_fraction"] <= 1.0
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["replay", "{run}", "--set", "link.nope=1"], "link.nope"),
        (["replay", "{run}", "--set", "link.rician_k_db"], "KEY=VALUE"),
        (["replay", "{run}", "--algorithm", "emsfl"], "no algorithm"),
        (["sweep", "{run}", "--grid", "link.bogus=1,2"], "--grid link.bogus"),
        (["sweep", "{run}"], "--grid"),
        # an earlier replay's receivers would answer from their records: never reused
        (["replay", "{run}", "--out", "{run}/baseline/.."], "would overwrite"),
        (["replay", "{run}", "--out", "{run}/baseline/scenario.toml"], "algorithm run"),
        (["replay", "{run}", "--out", "{nonempty}"], "not empty"),
        (["replay", "{run}", "--out", "{nonempty}/f"], "not a directory"),
    ],
)
def test_bad_input_is_one_line(run_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    full = tmp_path / "used"
    full.mkdir()
    (full / "f").write_text("x")
    r = run_cli(*[a.replace("{run}", str(run_dir)).replace("{nonempty}", str(full)) for a in args])
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


@pytest.mark.integration
def test_payloads_that_differ_from_their_record_are_not_replayed(
    run_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("replays", "sweeps"))
    pdir = copy / "baseline" / "payloads"
    names = sorted(p.name for p in pdir.glob("*.safetensors"))
    assert len(names) == 4
    (pdir / names[0]).write_bytes(b"\x00" * 10)  # truncated / replaced
    data = bytearray((pdir / names[1]).read_bytes())
    data[-1] ^= 1  # same size, one bit flipped
    (pdir / names[1]).write_bytes(bytes(data))
    (pdir / names[2]).unlink()
    (pdir / names[2]).mkdir()  # a directory in its place
    with caplog.at_level("WARNING"):
        rec = load_recorded(copy / "baseline")
    assert set(rec.payloads) == {names[3]}
    text = caplog.text
    assert "bytes, its record" in text and "sha256" in text and "not a regular file" in text

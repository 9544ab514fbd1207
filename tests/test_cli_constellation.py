"""`testbed link constellation` as a user runs it: the JSON fields, a plot, a scenario,
routes, and one-line errors for bad constellations and station lists."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from channel import CircularOrbit, circular_tle

STATIONS = "munich=48.1,11.6;40.4,-3.7;52.2,21.0,100"


def _iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_json_has_the_documented_fields(cli, tmp_path):
    png = tmp_path / "c.png"
    r = cli(
        "link", "constellation", "--walker", "53:24/4/1", "--altitude-km", "550",
        "--stations", STATIONS, "--hours", "6", "--min-elevation-deg", "10", "--json",
        "--plot", str(png), "--route", "munich,gs2,20000000",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert _iso(d["end"]) - _iso(d["start"]) == timedelta(hours=6)
    assert _iso(d["epoch"]) == _iso(d["start"])
    assert len(d["satellites"]) == 24
    for s in d["satellites"]:
        assert {"id", "plane", "raan_deg", "phase_deg", "altitude_km", "inclination_deg"} <= set(s)
    assert {s["plane"] for s in d["satellites"]} == {0, 1, 2, 3}
    kinds = {c["kind"] for c in d["contacts"]}
    assert kinds == {"sat_ground", "isl"}
    names = {st["name"] for st in d["stations"]}
    assert names == {"munich", "gs1", "gs2"}
    for c in d["contacts"]:
        assert {"kind", "from", "to", "start", "end", "duration_s", "capacity_bytes"} <= set(c)
        dur = (_iso(c["end"]) - _iso(c["start"])).total_seconds()
        assert dur == pytest.approx(c["duration_s"], abs=1e-3)
        assert c["capacity_bytes"] > 0
        if c["kind"] == "sat_ground":
            assert c["from"] in names and c["to"].startswith("p")
    assert png.stat().st_size > 20_000 and png.read_bytes()[:4] == b"\x89PNG"
    ea = d["routes"]["earliest_arrival"]
    assert ea["nodes"][0] == "munich" and ea["nodes"][-1] == "gs2"
    ml = d["routes"]["minimum_latency"]
    assert ml["latency_s"] <= ea["latency_s"] + 1e-9


def test_text_summary_and_the_scenario_sections(cli, tmp_path):
    out = tmp_path / "plan.json"
    r = cli("link", "constellation", "--scenario", "default", "--hours", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "24 satellites in 4 planes, 3 stations" in r.stdout
    assert "station munich" in r.stdout and "inter-plane ISLs" in r.stdout
    d = json.loads(out.read_text())
    assert {st["name"] for st in d["stations"]} == {"munich", "madrid", "warsaw"}


def test_a_tle_set_file(cli, tmp_path):
    tle = tmp_path / "set.tle"
    tle.write_text(
        "".join(
            circular_tle(CircularOrbit(550e3, 53.0, raan, 0.0), 40000 + k, f"SAT{k}")
            for k, raan in enumerate((0.0, 0.0, 120.0))  # two planes
        )
    )
    r = cli("link", "constellation", "--tle-file", str(tle), "--stations", STATIONS, "--json",
            "--hours", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [s["id"] for s in d["satellites"]] == ["SAT0", "SAT1", "SAT2"]
    assert {s["plane"] for s in d["satellites"]} == {0, 1}


@pytest.mark.parametrize(
    "args, what",
    [
        (["--walker", "53:24/5/1"], "not a multiple of P"),
        (["--walker", "53:24"], "i:T/P/F"),
        (["--walker", "53:24/4/9"], "phasing F"),
        (["--walker", "53:24/4/1", "--stations", "48.1"], "LAT,LON"),
        (["--walker", "53:24/4/1", "--stations", "91,0"], "latitude"),
        (["--walker", "53:24/4/1", "--stations", "a b=1,2"], "station name"),
        (["--walker", "53:24/4/1", "--stations", "x=1,2;x=3,4"], "duplicate"),
        (["--walker", "53:24/4/1", "--stations", "p0s0=1,2"], "clash"),
        (["--walker", "53:24/4/1", "--hours", "0"], "--hours"),
        (["--walker", "53:24/4/1", "--route", "p0s0,nowhere,10"], "not a node"),
        (["--walker", "53:24/4/1", "--route", "p0s0,p1s1"], "SRC,DST,BYTES"),
        ([], "exactly one of --walker"),
        (["--tle-file", "/no/such.tle"], "cannot read TLE file"),
        (["--scenario", "default", "--walker", "53:24/4/1"], "do not also give --walker"),
        (["--walker", "53:24/4/1", "--route", "a,b,inf"], "finite number"),
        (["--walker", "53:24/4/1", "--epoch", "9999-12-31T23:30:00Z"], "past year 9999"),
        (["--walker", "53:24/4/1", "--stations", ""], "--stations"),
        (["--walker", "53:24/4/1", "--out", ""], "--out"),
        (["--walker", "53:24/4/1", "--out", "/no/such/dir/p.json"], "does not exist"),
        (["--walker", "53:20000/1/0", "--hours", "24"], "time steps is more than"),
        (["--walker", "５３:24/4/1"], "i:T/P/F"),
        (["--walker", "53:24/4/1", "--plot", ".png"], ".png"),
        (["--walker", "53:24/4/1", "--plot", "x.jpg"], ".png"),
    ],
)
def test_bad_input_gives_one_line(cli, args, what):
    r = cli("link", "constellation", "--hours", "1", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("usage")]
    assert len(lines) == 1 and what in lines[0], r.stderr

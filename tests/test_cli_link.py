"""`testbed link …` as a user runs it: JSON fields, plots, one-line errors."""

import json
import math
from datetime import datetime

import pytest

from channel import CircularOrbit, circular_tle


def test_help_lists_subcommands(cli):
    r = cli("--help")
    assert r.returncode == 0
    for name in ("link", "demo"):
        assert name in r.stdout


def test_budget_json_paper_example(cli):
    r = cli(
        "link",
        "budget",
        "--tx-power-dbm",
        "23",
        "--path-loss-db",
        "160",
        "--antenna-gain-dbi",
        "40",
        "--bandwidth-hz",
        "5e6",
        "--noise-figure-db",
        "0",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["snr_db"] == pytest.approx(9.99, abs=0.02)
    assert out["capacity_bps"] == pytest.approx(5e6 * math.log2(1 + 10 ** (out["snr_db"] / 10)))


def test_budget_from_slant_range(cli):
    r = cli("link", "budget", "--slant-range-km", "1200", "--carrier-hz", "2e9", "--json")
    near = json.loads(cli("link", "budget", "--slant-range-km", "600", "--json").stdout)
    far = json.loads(r.stdout)
    assert far["snr_db"] == pytest.approx(near["snr_db"] - 20 * 0.30103, abs=0.01)


def test_pass_json_fields_and_plot(cli, tmp_path):
    png = tmp_path / "pass.png"
    r = cli(
        "link",
        "pass",
        "--site",
        "48.1,11.6",
        "--altitude-km",
        "600",
        "--inclination-deg",
        "53",
        "--min-elevation-deg",
        "10",
        "--hours",
        "12",
        "--json",
        "--plot",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["windows"]
    for w in out["windows"]:
        aos = datetime.fromisoformat(w["aos"].replace("Z", "+00:00"))
        los = datetime.fromisoformat(w["los"].replace("Z", "+00:00"))
        assert (los - aos).total_seconds() == pytest.approx(w["duration_s"], abs=1e-3)
        assert w["max_elevation_deg"] >= 10.0
        assert 0 < w["capacity_bytes"] < w["duration_s"] * 5e6 * 8 / 8
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pass_from_tle_file(cli, tmp_path):
    tle = tmp_path / "sat.tle"
    tle.write_text(circular_tle(CircularOrbit()))
    r = cli("link", "pass", "--tle", str(tle), "--hours", "12", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["windows"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (("link", "pass", "--min-elevation-deg", "95"), "min_elevation_deg"),
        (("link", "pass", "--min-elevation-deg", "-3"), "min_elevation_deg"),
        (("link", "budget", "--bandwidth-hz=-5e6"), "bandwidth_hz"),
        (("link", "budget", "--bandwidth-hz", "abc"), "not a number"),
        (("link", "pass", "--site", "1,2,3,4"), "--site"),
        (("link", "pass", "--site", "95,0"), "latitude"),
        (("link", "pass", "--tle", "/nonexistent.tle"), "cannot read"),
        (("link", "pass", "--epoch", "yesterday"), "ISO-8601"),
        (("link", "pass", "--altitude-km", "-10"), "altitude"),
        (("link", "pass", "--seed", "-1"), "--seed"),
        (("link", "budget", "--path-loss-db", "-10"), "--path-loss-db"),
        (("link", "budget", "--window-s", "-5"), "--window-s"),
        (("link", "pass", "--plot", "x.xyz"), ".png"),
        (("link", "pass", "--plot", "/tmp"), ".png"),
        (("channel", "per", "--plot", "f.pdf"), ".png"),
        (("learn", "--plot", "acc.txt"), ".png"),
        (
            (
                "link",
                "frobnicate",
            ),
            "invalid choice",
        ),
    ],
)
def test_bad_input_gives_one_line_error(cli, args, needle):
    r = cli(*args)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_tle_file_one_line_error(cli, tmp_path):
    tle = tmp_path / "bad.tle"
    tle.write_text("1 25544U 98067A\n2 25544 51.6\n")
    r = cli("link", "pass", "--tle", str(tle))
    assert r.returncode == 2
    assert "malformed" in r.stderr and str(tle) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_python_dash_m_testbed_is_the_cli():
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run(
        [sys.executable, "-m", "testbed", "link", "pass", "--seed", "-1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "--seed" in r.stderr

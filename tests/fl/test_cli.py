"""``testbed learn`` and the import-time contract of the learning package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli import main

FL_DIR = Path(__file__).resolve().parents[2] / "testbed" / "fl"


def test_package_and_cli_import_without_torch():
    code = (
        "import sys, testbed.fl, testbed.fl.cli, testbed.cli; testbed.cli.build_parser(); "
        "bad = [m for m in ('torch', 'transformers', 'zmq', 'gnuradio') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_learning_code_never_imports_zmq_or_gnuradio():
    for f in FL_DIR.glob("*.py"):
        text = f.read_text()
        assert "import zmq" not in text and "gnuradio" not in text.replace("GNU Radio", ""), f


def test_bad_arguments_are_one_line_user_errors(capsys):
    assert main(["learn", "--cycles", "0"]) == 2
    assert "--cycles" in capsys.readouterr().err
    assert main(["learn", "--model", "/nonexistent/model", "--cycles", "1"]) == 2
    assert main(["learn", "--tau-relative", "-0.5", "--cycles", "1"]) == 2
    assert "--tau-relative" in capsys.readouterr().err
    assert main(["learn", "--masked-share", "1.5", "--cycles", "1"]) == 2
    assert "--masked-share" in capsys.readouterr().err
    assert main(["learn", "--idle-slots", "-1", "--cycles", "1"]) == 2
    assert "--idle-slots" in capsys.readouterr().err


@pytest.mark.integration
def test_learn_json_output(default_model_dir, fl_cache, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TESTBED_CACHE", str(fl_cache))
    png = tmp_path / "acc.png"
    rc = main(
        [
            "learn",
            "--algorithm",
            "baseline",
            "--cycles",
            "1",
            "--clusters",
            "2",
            "--json",
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["algorithm"] == "baseline"
    assert "cycles_to_target" in doc
    assert doc["eval_examples"] > 0 and doc["major_fraction"] == pytest.approx(0.85)
    assert doc["xi"] > 1.0 and doc["idle_slots"] == 0
    assert doc["cycles"][0]["emulated_s"] == pytest.approx(2 * 120.0)
    c1 = doc["cycles"][0]
    assert 0 < c1["upload_bytes_max"] <= c1["uplink_bytes"] and c1["uploads"] >= 1
    (c,) = doc["cycles"]
    for key in ("cycle", "accuracy_global", "accuracy_local", "uplink_bytes", "peak_memory_bytes"):
        assert key in c
    assert c["cycle"] == 1 and len(c["accuracy_local"]) == 2 and c["uplink_bytes"] > 0
    assert png.stat().st_size > 0

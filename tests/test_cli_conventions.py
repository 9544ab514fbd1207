"""Command-line conventions: --version, -v/-q anywhere, --out never creating parents, --set
errors naming --set KEY, "did you mean", the exit-code table, the CPU-only install, and no
temporary directories left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testbed import __version__
from testbed.errors import EXIT_CHILD_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE

from .conftest import REPO


def _one_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_version(cli):
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"testbed {__version__}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__


def test_verbosity_flags_after_the_subcommand(cli):
    r = cli("link", "budget", "--path-loss-db", "150", "-q")
    assert r.returncode == 0 and "SNR" in r.stdout
    r = cli("link", "budget", "--path-loss-db", "150", "-v")
    assert r.returncode == 0
    r = cli("link", "pass", "--hours", "1", "-q", "-v")
    assert r.returncode == 2 and "contradict" in _one_line(r)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "default", "--out", "{missing}/r"],
        ["demo", "--out", "{missing}/r"],
        ["report", "{tmp}", "--out", "{missing}/rep"],
        ["replay", "{tmp}", "--out", "{missing}/rep"],
        ["link", "pass", "--hours", "1", "--plot", "{missing}/p.png"],
        ["link", "constellation", "--walker", "53:6/2/1", "--plot", "{missing}/p.png"],
        ["receive", "--dir", "{missing}/rx"],
    ],
)
def test_out_never_creates_missing_parents(cli, tmp_path, args):
    missing = tmp_path / "no" / "such"
    argv = [a.format(missing=missing, tmp=tmp_path) for a in args]
    r = cli(*argv, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = _one_line(r)
    assert "does not exist" in line and str(missing.parent) in line
    assert not (tmp_path / "no").exists()


def test_parents_flag_creates_them(cli, tmp_path):
    # report --parents: the one command here that completes fast on a tiny input
    from tests.report.test_report import write_run

    run = tmp_path / "RUN"
    write_run(run)
    out = tmp_path / "a" / "b" / "rep"
    r = cli("report", str(run), "--out", str(out), "--parents", timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "index.html").is_file()


def test_set_errors_name_set_and_suggest(cli, tmp_path):
    r = cli("run", "default", "--set", "link.rician_kdb=3", "--out", str(tmp_path / "r"))
    line = _one_line(r)
    assert r.returncode == 2
    assert line.startswith("testbed: error: --set link.rician_kdb: unknown key")
    assert "did you mean 'rician_k_db'" in line and "default.toml" not in line
    r = cli("run", "default", "--set", "schedule.slot_s=-3", "--out", str(tmp_path / "r"))
    assert "--set schedule.slot_s: must be > 0" in _one_line(r)
    assert not (tmp_path / "r").exists()


def test_readme_has_the_exit_code_table():
    text = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `?(\d+)`? \| ([^|]+)\|", text, flags=re.M))
    for code in (EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_CHILD_FAILED, EXIT_INTERRUPTED):
        assert str(code) in rows, f"exit code {code} missing from the README table"


def test_cpu_only_install_is_documented_and_scripted():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.lower().startswith(("nvidia", "triton")) for d in deps)
    script = (REPO / "scripts" / "install.sh").read_text()
    assert "+cpu" in script and "download.pytorch.org/whl/cpu" in script
    readme = (REPO / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme


def test_stale_send_directories_are_removed_only_when_their_owner_is_gone(tmp_path):
    import tempfile

    from testbed.commands.transfer import _remove_stale_send_dirs

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(tempfile.mkdtemp(prefix="satfl-send-"))
    (stale / "owner.pid").write_text(str(dead.pid))
    live = Path(tempfile.mkdtemp(prefix="satfl-send-"))
    (live / "owner.pid").write_text(str(os.getpid()))
    try:
        assert _remove_stale_send_dirs() >= 1
        assert not stale.exists() and live.is_dir()
    finally:
        import shutil

        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def test_run_out_never_deletes_or_mixes_with_other_files(cli, tmp_path):
    mine = tmp_path / "d"
    (mine / "baseline").mkdir(parents=True)
    (mine / "baseline" / "keep.txt").write_text("x")
    r = cli("run", "default", "--algorithm", "baseline", "--out", str(mine), timeout=120)
    assert r.returncode == 2 and "not a run directory" in _one_line(r)
    assert (mine / "baseline" / "keep.txt").read_text() == "x"
    f = tmp_path / "file"
    f.write_text("x")
    for out, what in (("", "must not be empty"), (str(f), "not a directory"), ("/", "choose")):
        r = cli("run", "default", "--out", out, timeout=120)
        assert r.returncode == 2 and what in _one_line(r), (out, r.stderr)
        r = cli("demo", "--out", out, timeout=120)
        assert r.returncode == 2 and what in _one_line(r), (out, r.stderr)
    assert f.read_text() == "x"


def test_what_a_node_would_fail_on_is_refused_before_any_process_starts(cli, tmp_path):
    import torch

    if not torch.cuda.is_available():
        r = cli("run", "default", "--set", 'model.device="cuda:3"', "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and "model.device" in _one_line(r)
        assert not (tmp_path / "r").exists()
    few = tmp_path / "few.jsonl"
    few.write_text('{"domain": "a", "question": "q ?", "options": ["x", "y"], "answer": 0}\n')
    r = cli("run", "default", "--set", f'data.path="{few}"', "--out", str(tmp_path / "r2"))
    assert r.returncode == 2 and "fewer than" in _one_line(r), r.stderr
    assert not (tmp_path / "r2").exists()

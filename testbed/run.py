"""``testbed run``: start the channel emulator, the satellite and the clusters, and watch them.

Each algorithm of a run gets its own directory ``OUT/<algorithm>/`` (layout:
docs/run-directory.md) and its own set of processes, which talk only over ZeroMQ:

* ``testbed channel serve --config OUT/<alg>/emulator.toml``
* ``testbed node satellite --scenario OUT/<alg>/scenario.toml --out OUT/<alg> --token T``
* ``testbed node cluster --id ID ...`` for every cluster

Progress (orbital cycle, connected cluster, uploads in flight, accuracy) is shown live. When
any child fails, or on Ctrl-C, every child is stopped (SIGTERM, then SIGKILL), the message
names the process and its log, and the exit status is non-zero. Children also die with the
orchestrator (parent-death signal), so none is orphaned.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowgraphs.endpoints import remove_ipc_file
from testbed.errors import EXIT_CHILD_FAILED, UserError
from testbed.procs import die_with_parent

__all__ = [
    "ChildFailedError",
    "check_run_out",
    "is_algorithm_run_dir",
    "link_state",
    "prepare_run_dir",
    "progress_view",
    "run_algorithm",
    "run_scenario",
    "run_summary_table",
]

log = logging.getLogger(__name__)


class ChildFailedError(UserError):
    """A child process of the run failed; the message names it and its log."""

    exit_code = EXIT_CHILD_FAILED


RUN_DIR_FILES = ("scenario.toml", "emulator.toml", "windows.json")


def is_algorithm_run_dir(sub: Path) -> bool:
    """Whether ``sub`` is an algorithm directory that ``testbed run`` wrote (safe to replace)."""
    return sub.is_dir() and all((sub / f).is_file() for f in RUN_DIR_FILES)


def check_run_out(out: Path, option: str = "--out") -> Path:
    """A run directory to write: new, empty, or an earlier run's (with ``run.json``); never a
    file, ``/``, or a directory of someone else's files (one-line errors)."""
    if not str(out).strip():
        raise UserError(f"{option} must not be empty")
    p = Path(out)
    if p.absolute() == Path("/"):
        raise UserError(f"{option} /: choose a directory for the run")
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {out}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not (p / "run.json").is_file():
        raise UserError(
            f"{option} {out}: not empty and not a run directory (no run.json); choose another --out"
        )
    return p


def run_nodes(scn: Any) -> list[str]:
    """The node names a run enrols: the emulator, the satellite and every cluster."""
    return ["channel", "satellite", *(c.id for c in scn.clusters)]


def run_keys(scn: Any, sub: Path) -> Path:
    """The keys directory of one algorithm run: the scenario's ``endpoints.keys`` (every node
    of the run must be enrolled there) or fresh keys in ``sub/keys`` (secret files 0600)."""
    from flowgraphs.keys import KeysError, create_keys, list_keys

    need = run_nodes(scn)
    if scn.endpoints.keys is None:
        create_keys(sub / "keys", need)
        return (sub / "keys").absolute()
    try:
        have = {k.name for k in list_keys(scn.endpoints.keys)}
    except KeysError as e:
        raise UserError(f"endpoints.keys: {e}") from None
    missing = [n for n in need if n not in have]
    if missing:
        raise UserError(
            f"endpoints.keys: {scn.endpoints.keys} does not enrol {missing} "
            f"(testbed keys create {scn.endpoints.keys} {' '.join(missing)})"
        )
    return Path(scn.endpoints.keys)


def prepare_run_dir(scn: Any, sub: Path, token: str) -> Path:
    """Write the resolved scenario, the emulator config and the windows of one algorithm run;
    returns its keys directory (:func:`run_keys`)."""
    from testbed.schedule import cluster_windows

    if sub.exists():  # a rerun into the same directory starts afresh (records are appended)
        if not is_algorithm_run_dir(sub):
            raise UserError(
                f"{sub} exists and is not an algorithm run directory (no scenario.toml, "
                "emulator.toml and windows.json): nothing there is deleted; choose another --out"
            )
        shutil.rmtree(sub)
    sub.mkdir(parents=True)
    (sub / "nodes").mkdir(exist_ok=True)
    keys = run_keys(scn, sub)
    (sub / "scenario.toml").write_text(scn.to_toml())
    windows = cluster_windows(scn)
    sched = windows if scn.schedule.mode == "ideal" else None
    (sub / "emulator.toml").write_text(scn.emulator_config_toml(token, sched, keys))
    (sub / "windows.json").write_text(json.dumps(windows))
    return keys


class _Children:
    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(self, name: str, args: list[str], logfile: Path) -> None:
        f = open(logfile, "wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "testbed.cli", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        f.close()
        self.procs[name] = (p, logfile)

    def first_failed(self, ignore: str) -> tuple[str, int, Path] | None:
        """A child that failed: non-zero exit, or the emulator exiting at all.

        A cluster exits 0 only after the satellite told it to stop, which is normal.
        """
        for name, (p, lf) in self.procs.items():
            rc = p.poll()
            if name != ignore and rc is not None and (rc != 0 or name == "channel emulator"):
                return name, rc, lf
        return None

    def stop_all(self, grace_s: float = 5.0) -> None:
        for p, _ in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace_s
        for p, _ in self.procs.values():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait_for_ipc(addrs: list[str], children: _Children, timeout_s: float) -> None:
    paths = [a[len("ipc://") :] for a in addrs if a.startswith("ipc://")]
    end = time.monotonic() + timeout_s
    while not all(os.path.exists(p) for p in paths):
        bad = children.first_failed(ignore="")
        if bad:
            raise ChildFailedError(
                f"{bad[0]} exited with status {bad[1]} at start-up; see {bad[2]}"
            )
        if time.monotonic() > end:
            raise ChildFailedError(
                f"the channel emulator did not bind its endpoints within "
                f"{timeout_s:g} s; see its log"
            )
        time.sleep(0.2)


def link_state(windows: list[list[float]], t_s: float) -> str:
    """``in pass until 123 s`` / ``waiting for AOS at 456 s`` / ``no more passes``."""
    for a, b in windows:
        if a <= t_s < b:
            return f"in pass until {b:.0f} s"
        if a > t_s:
            return f"waiting for AOS at {a:.0f} s"
    return "no more passes"


def progress_view(
    alg: str, prog: dict[str, Any], windows: dict[str, list[list[float]]], elapsed_s: float
) -> tuple[list[list[str]], list[str], str]:
    """(rows, headers, plain line) of the live display from ``progress.json``."""
    from testbed.progress import eta_s, fmt_bytes, fmt_duration

    acc = prog.get("accuracy")
    acc_s = "–" if acc is None else f"{acc:.3f}"
    t = float(prog.get("t_s") or 0.0)
    t0 = float(prog.get("t_start_s") or 0.0)
    hz = float(prog.get("horizon_s") or 0.0)
    eta = eta_s(t - t0, hz - t0, elapsed_s) if prog.get("phase") != "finished" else 0.0
    cyc = f"{prog.get('cycle', 0)}/{prog.get('cycles', '?')}"
    transfers = prog.get("transfers") or []
    rows = [
        ["algorithm", alg, f"cycle {cyc} · global accuracy {acc_s}"],
        [
            "emulated time",
            f"{t:.1f} s of {hz:.0f} s",
            f"wall {fmt_duration(elapsed_s)} · ETA {fmt_duration(eta)}",
        ],
    ]
    for cid, ws in windows.items():
        mine = [x for x in transfers if str(x.get("sender", "")).startswith(f"{cid}-")]
        up = "; ".join(
            f"{x['sender']} {x.get('kind', '')} {fmt_bytes(x.get('received_bytes'))} of "
            f"{fmt_bytes(x.get('size_bytes'))}"
            + (
                f", {x['missing_fragments']} fragments missing"
                if x.get("missing_fragments")
                else ""
            )
            for x in mine
        )
        state = link_state(ws, t)
        if prog.get("cluster") == cid and prog.get("phase") == "connected":
            state += " · connected"
        rows.append([cid, state, up or "–"])
    got = sum(int(x.get("received_bytes") or 0) for x in transfers)
    tot = sum(int(x.get("size_bytes") or 0) for x in transfers)
    links = "; ".join(f"{r[0]} {r[1]}" for r in rows[2:])
    up = f" · uploading {fmt_bytes(got)} of {fmt_bytes(tot)}" if transfers else ""
    line = (
        f"[{alg}] cycle {cyc} · t {t:.0f}/{hz:.0f} s · accuracy {acc_s} · ETA "
        f"{fmt_duration(eta)}{up} · {links}"
    )
    return rows, ["", "state", "detail"], line


def run_algorithm(
    scn: Any, sub: Path, verbose: int = 0, out=sys.stderr, quiet: bool = False
) -> None:
    """Run one algorithm's processes to completion (raises on failure)."""
    token = secrets.token_hex(4)
    keys = str(prepare_run_dir(scn, sub, token))
    v = ["-v"] * max(1, verbose)
    kids = _Children()
    scen = str(sub / "scenario.toml")
    try:
        kids.start(
            "channel emulator",
            [*v, "channel", "serve", "--config", str(sub / "emulator.toml")],
            sub / "nodes" / "channel.log",
        )
        _wait_for_ipc([scn.link_endpoints(c.id, token)[0] for c in scn.clusters], kids, 120.0)
        kids.start(
            "satellite",
            [
                *v,
                "node",
                "satellite",
                "--scenario",
                scen,
                "--out",
                str(sub),
                "--token",
                token,
                "--keys",
                keys,
            ],
            sub / "nodes" / "satellite.log",
        )
        for c in scn.clusters:
            kids.start(
                f"cluster {c.id}",
                [
                    *v,
                    "node",
                    "cluster",
                    "--id",
                    c.id,
                    "--scenario",
                    scen,
                    "--out",
                    str(sub),
                    "--token",
                    token,
                    "--keys",
                    keys,
                ],
                sub / "nodes" / f"cluster-{c.id}.log",
            )
        sat, sat_log = kids.procs["satellite"]
        from testbed.progress import Display

        windows = json.loads((sub / "windows.json").read_text())
        with Display(f"testbed run · {scn.name}", quiet=quiet, stream=out) as disp:
            while sat.poll() is None:
                bad = kids.first_failed(ignore="satellite")
                if bad:
                    raise ChildFailedError(
                        f"{bad[0]} exited with status {bad[1]} during the run; see {bad[2]}"
                    )
                try:
                    prog = json.loads((sub / "progress.json").read_text())
                except (OSError, ValueError):
                    prog = None
                if prog is not None:
                    disp.update(*progress_view(scn.algorithm.name, prog, windows, disp.elapsed_s))
                time.sleep(0.3)
        if sat.returncode != 0:
            raise ChildFailedError(f"satellite exited with status {sat.returncode}; see {sat_log}")
        for name, (p, lf) in kids.procs.items():  # clusters got 'stop'
            if name.startswith("cluster"):
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    raise ChildFailedError(f"{name} did not stop; see {lf}") from None
                if p.returncode != 0:
                    raise ChildFailedError(f"{name} exited with status {p.returncode}; see {lf}")
    finally:
        kids.stop_all()
        _remove_ipc_files(scn, token)


def _remove_ipc_files(scn: Any, token: str) -> None:
    """Remove the run's ``ipc://`` socket files that a killed process could not unlink."""
    addrs = [scn.control_endpoint(token)]
    for c in scn.clusters:
        for lid in (c.id, f"{c.id}-down"):
            addrs.extend(scn.link_endpoints(lid, token))
    for a in addrs:
        remove_ipc_file(a)


def preflight(scn: Any) -> None:
    """Check, before any process starts, what the nodes would only find out later: the
    device exists; the own data set loads, splits over the clusters and fits the tokenizer.
    One-line :class:`UserError` (exit 2) instead of a child failing mid-run."""
    try:
        from nodes.fl_setup import torch_device

        torch_device(scn.model.device)
    except RuntimeError as e:
        raise UserError(f"{scn.source}: model.device: {e}") from None
    if scn.data.path is not None:
        from testbed.fl.data import cluster_data
        from testbed.fl.tokenizer import CharTokenizer, load_tokenizer

        tok = load_tokenizer(scn.model.path) if scn.model.path else CharTokenizer()
        cluster_data(
            scn.fl_config(), [c.id for c in scn.clusters], tok, scn.data.path, scn.data.kind
        )


def run_scenario(
    scn: Any, out: Path, algorithms: list[str], verbose: int = 0, quiet: bool = False
) -> dict[str, Any]:
    """Run each algorithm on the scenario; returns and writes ``OUT/run.json``."""
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "scenario": scn.name,
        "algorithms": algorithms,
        "started_wall": datetime.now(UTC).isoformat(),
        "status": "running",
        "report": None,
    }
    (out / "run.json").write_text(json.dumps(info, indent=1))
    try:
        if not scn.model.path:  # build (or load) the cached model once, not in four processes
            from testbed.fl.model import build_default_model

            build_default_model(scn.seed)
        for alg in algorithms:
            s = scn.with_overrides([f'algorithm.name="{alg}"'])
            w0 = time.monotonic()
            run_algorithm(s, out / alg, verbose, quiet=quiet)
            info.setdefault("wall_s", {})[alg] = round(time.monotonic() - w0, 1)
        info["status"] = "ok"
    except KeyboardInterrupt:
        info["status"] = "interrupted"
        raise
    except Exception:
        info["status"] = "failed"
        raise
    finally:
        info["finished_wall"] = datetime.now(UTC).isoformat()
        (out / "run.json").write_text(json.dumps(info, indent=1))
    return info


def run_summary_table(out: Path) -> str:
    """The end-of-run table (one row per algorithm) from the run directory's records."""
    from testbed.progress import table_text
    from testbed.report import load_run, summarize

    run = load_run(out)
    summ = summarize(run)["algorithms"]
    walls = run.info.get("wall_s") or {}
    rows = []
    for alg in run.algorithms:
        s = summ[alg.name]
        acc = s.get("final_accuracy")
        mean = s.get("upload_time_mean_s")
        wall = walls.get(alg.name)
        rows.append(
            [
                alg.name,
                str(s.get("cycles")),
                "–" if acc is None else f"{acc:.3f}",
                str(s["cycles_to_target"]) if s.get("cycles_to_target") is not None else "no",
                f"{s.get('uploads_accepted')}/{s.get('uploads')}",
                "–" if mean is None else f"{mean:.1f}",
                str(s.get("missed_aggregations")),
                "–" if wall is None else f"{wall:.0f}",
            ]
        )
    return table_text(
        [
            "algorithm",
            "cycles",
            "final acc.",
            "cycles to target",
            "uploads accepted",
            "mean upload [s, emulated]",
            "missed",
            "wall [s]",
        ],
        rows,
    )

"""One clock: the same inputs give the same emulated records, whatever the machine is doing.

Real processes throughout: ``testbed send --start-emulator`` starts the GNU Radio emulator and
a receiver as separate processes and talks to them over ZeroMQ. The tests disturb the wall
clock (CPU-busy processes, a receiver stopped with SIGSTOP) and require the emulated fields of
the upload record to be *exactly* equal — every float, bit for bit (docs/clock.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from channel import contact_windows, default_link_geometry
from tests.conftest import REPO, default_sigint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Upload-record fields measured on the wall clock; every other field is emulated.
WALL_FIELDS = {"wall_s"}
SIZE = 300_000  # bytes: several LDPC frames at 30° elevation, a few wall seconds per send


def _payload(tmp: Path, size: int = SIZE, seed: int = 7) -> Path:
    f = tmp / "payload.bin"
    f.write_bytes(random.Random(seed).randbytes(size))
    return f


_KEYS: list[Path] = []  # the module's node keys (set by idle_send)


def _send_cmd(f: Path, rdir: Path, *extra: str) -> list[str]:
    # the same node keys for every send: the manifest's signature is an input (docs/clock.md)
    return [
        sys.executable, "-m", "testbed.cli", "send", str(f), "--start-emulator",
        "--receiver-dir", str(rdir), "--min-elevation-deg", "30", "--json",
        "--keys", str(_KEYS[0]), *extra,
    ]  # fmt: skip


def _finish(p: subprocess.Popen, timeout: float = 400) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-2000:]
    return json.loads(out)


def _emulated(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in WALL_FIELDS}


def _send_json(f: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-m", "testbed.cli", "send", str(f), "--json"], cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def _accepted_bytes(rdir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((rdir / "accepted").glob("*.safetensors"))]


def _pgrep(pattern: str) -> list[int]:
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


@pytest.fixture(scope="module")
def idle_send(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The reference: one send on an otherwise idle machine."""
    from flowgraphs.keys import create_keys

    tmp = tmp_path_factory.mktemp("idle")
    create_keys(tmp / "keys", ["channel", "satellite", "c1"])
    _KEYS[:] = [tmp / "keys"]
    f = _payload(tmp)
    p = subprocess.Popen(
        _send_cmd(f, tmp / "rx"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    rec = _finish(p)
    assert rec["status"] == "accepted"
    assert _accepted_bytes(tmp / "rx") == [f.read_bytes()]
    return f, rec


def test_same_send_under_cpu_load_gives_identical_emulated_record(idle_send, tmp_path):
    f, ref = idle_send
    # Two busy-looping processes on this 2-core machine: the emulator, receiver and sender
    # get about half the CPU they had, and their wall-clock interleaving changes.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        p = subprocess.Popen(
            _send_cmd(f, tmp_path / "rx"), cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        rec = _finish(p)
    finally:
        for h in hogs:
            os.kill(h.pid, signal.SIGKILL)
            h.wait()
    assert _emulated(rec) == _emulated(ref)
    assert _accepted_bytes(tmp_path / "rx") == [f.read_bytes()]


def test_receiver_paused_mid_transfer_changes_no_emulated_field(idle_send, tmp_path):
    f, ref = idle_send
    rdir = tmp_path / "rx"
    p = subprocess.Popen(
        _send_cmd(f, rdir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # Wait until the receiver process runs and the transfer is under way (the receiver
        # has written its first partial state), then stop it for 3 wall seconds.
        pat = f"testbed.cli receive --dir {rdir}"
        end = time.monotonic() + 120
        pids: list[int] = []
        while time.monotonic() < end and p.poll() is None:
            pids = _pgrep(pat)
            if pids and any(rdir.glob("partial/*/bitmap")):
                break
            time.sleep(0.05)
        assert pids, "the receiver did not start"
        os.kill(pids[0], signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(pids[0], signal.SIGCONT)
        rec = _finish(p)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rec["wall_s"] > 3.0  # the pause really happened during the transfer
    assert _emulated(rec) == _emulated(ref)
    assert _accepted_bytes(rdir) == [f.read_bytes()]


def _popen_cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", *args], cwd=REPO, text=True,
        preexec_fn=default_sigint, **kw,
    )  # fmt: skip


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_serve_receive_send_with_default_flags_delivers_a_small_file_in_its_first_pass(
    tmp_path,
):
    # A user's three terminals, no flags beyond the file: `testbed channel serve`,
    # `testbed receive --dir rx`, `testbed send adapter.bin`. 9 KB is the size of a small
    # peft adapter; the send starts at the first AOS (θ_min 10°, low elevation, long range).
    data = random.Random(3).randbytes(9_000)
    f = tmp_path / "adapter.bin"
    f.write_bytes(data)
    rdir = tmp_path / "rx"
    procs: list[subprocess.Popen] = []
    try:
        serve = _popen_cli("channel", "serve", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(serve)
        ready = json.loads(serve.stdout.readline())
        assert ready["event"] == "ready" and set(ready["links"]) == {"c1", "c1-down"}
        procs.append(
            _popen_cli("receive", "--dir", str(rdir), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        )  # fmt: skip
        r = subprocess.run(
            [sys.executable, "-m", "testbed.cli", "send", str(f)], cwd=REPO,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        # The same emulator keeps serving: the same file again is answered from the
        # receiver's record; a send interrupted mid-transfer does not wedge the link for the
        # next one (each later send starts at the link's clock, never before it).
        again = _send_json(f)
        big = tmp_path / "big.bin"
        big.write_bytes(random.Random(4).randbytes(2_000_000))
        cut = _popen_cli("send", str(big), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(cut)
        assert "sending" in cut.stderr.readline()
        time.sleep(2.0)  # mid-transfer (2 MB takes far longer)
        cut.send_signal(signal.SIGINT)
        assert cut.wait(timeout=30) == 130
        other = tmp_path / "other.bin"
        other_data = random.Random(5).randbytes(5_000)
        other.write_bytes(other_data)
        after = _send_json(other)
    finally:
        _stop(procs)
    assert again["status"] == "accepted" and again["already_accepted"] is True
    assert again["upload_time_s"] is None and again["accepted_s"] < again["first_tx_s"]
    assert after["status"] == "accepted" and not after["already_accepted"]
    assert after["first_tx_s"] > again["confirmed_s"] and after["upload_time_s"] > 0
    assert r.returncode == 0, r.stderr[-2000:]
    geo = default_link_geometry()
    w = contact_windows(geo.orbit, geo.site, 0.0, 86400.0, geo.params.min_elevation_deg)[0]
    # says where it starts instead of looking hung: the first AOS of the default geometry
    assert f"first AOS at t = {w.aos_s:.1f} s" in r.stderr
    assert r.stdout.startswith(f"accepted: {len(data)} B in ")
    assert "1 pass(es)" in r.stdout  # within the pass it started in
    assert sorted(_accepted_bytes(rdir)) == sorted([data, other_data])

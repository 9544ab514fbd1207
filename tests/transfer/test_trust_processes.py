"""Hostile clients against real processes with keys (issue 11): `testbed channel serve`,
`testbed receive` and `testbed send` over CURVE, attacked by plain pyzmq sockets (not the
project's transport code) while a transfer runs.

Before CURVE, a second PULL on ``c1-out`` received half the delivered PDUs and a forged
FINISHED(accepted) pushed into ``c1-down-in`` made ``testbed send`` print ``accepted`` after
78 of 196 fragments.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pmt
import pytest
import zmq

from flowgraphs.keys import Keyring, create_keys, curve_client
from nodes.payload import derived_transfer_id, manifest_for
from nodes.wire import Finished, FinishedStatus, Fragment, encode
from nodes.zmq_link import LinkEndpoints
from testbed.commands.transfer import emulator_link_table, emulator_toml
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "testbed.cli", *args], cwd=REPO, **kw)


def _pdu(meta: dict, payload: bytes) -> bytes:
    """A PDU as raw PMT bytes, built with GNU Radio's own pmt (not the project's codec)."""
    d = pmt.make_dict()
    for k, v in meta.items():
        d = pmt.dict_add(d, pmt.intern(k), pmt.from_double(v) if isinstance(v, float) else
                         pmt.intern(v))  # fmt: skip
    return pmt.serialize_str(pmt.cons(d, pmt.init_u8vector(len(payload), list(payload))))


def test_strangers_neither_read_inject_nor_end_a_curve_transfer(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="satfl-trust-", dir="/tmp"))  # short ipc paths
    procs: list[subprocess.Popen] = []
    ctx = zmq.Context()
    socks: list[zmq.Socket] = []
    stop = threading.Event()
    try:
        keys = base / "keys"
        create_keys(keys, ["channel", "satellite", "c1"])
        create_keys(base / "stranger", ["mallory"])
        up = LinkEndpoints(*(f"ipc://{base}/up-{k}" for k in ("in", "out", "status")))
        down = LinkEndpoints(*(f"ipc://{base}/dn-{k}" for k in ("in", "out", "status")))
        cfg = tmp_path / "emulator.toml"
        cfg.write_text(
            emulator_toml(
                [
                    emulator_link_table("c1", up, 1, None, ("c1", "satellite")),
                    emulator_link_table("c1-down", down, 2, None, ("satellite", "c1")),
                ],
                str(keys),
            )
        )
        serve = _cli("channel", "serve", "--config", str(cfg), stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(serve)
        assert json.loads(serve.stdout.readline())["event"] == "ready"
        rdir = tmp_path / "rx"
        procs.append(
            _cli("receive", "--dir", str(rdir), "--keys", str(keys), "--up-out", up.out_addr,
                 "--down-in", down.in_addr, "--down-status", down.status_addr,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )  # fmt: skip
        data = random.Random(11).randbytes(60_000)
        f = tmp_path / "adapter.bin"
        f.write_bytes(data)
        m = manifest_for(data, "c1", 0, 1024)
        tid = derived_transfer_id(m)

        # the attackers: no CURVE; a stranger's key pinned to the real emulator key; and
        # the enrolled sender c1 on the receiver's port, where only the satellite is admitted
        mallory = Keyring(base / "stranger", "mallory")
        mallory.nodes["channel"] = Keyring(keys).public("channel")
        c1 = Keyring(keys, "c1")

        def sock(kind: int, addr: str, k: Keyring | None) -> zmq.Socket:
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            if k is not None:
                curve_client(s, k, "channel")
            s.connect(addr)
            socks.append(s)
            return s

        thieves = [sock(zmq.PULL, up.out_addr, k) for k in (None, mallory, c1)]
        forgers = [sock(zmq.PUSH, a, k) for a in (down.in_addr, up.in_addr)
                   for k in (None, mallory)]  # fmt: skip
        fin = encode(Finished(tid, FinishedStatus.ACCEPTED, bytes.fromhex(m.sha256), 1.0))
        bogus = encode(Fragment(tid, 0, 59, 0, b"\xee" * 1024))
        sent = {"n": 0}

        def attack() -> None:
            while not stop.wait(0.05):
                for s in forgers:
                    try:
                        s.send(_pdu({"tx_time": 0.0, "src": "satellite"}, fin), zmq.NOBLOCK)
                        s.send(_pdu({"tx_time": 0.0, "src": "c1"}, bogus), zmq.NOBLOCK)
                        sent["n"] += 2
                    except zmq.Again:
                        pass  # the handshake never completed: nowhere to send

        th = threading.Thread(target=attack, daemon=True)
        th.start()
        r = subprocess.run(
            [sys.executable, "-m", "testbed.cli", "send", str(f), "--keys", str(keys),
             "--up-in", up.in_addr, "--up-status", up.status_addr, "--down-out",
             down.out_addr, "--json"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        stop.set()
        th.join(5)
        stolen = 0
        for s in thieves:
            while s.poll(200):
                s.recv()
                stolen += 1
    finally:
        stop.set()
        for s in socks:
            s.close(0)
        ctx.term()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(base, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout)
    assert rec["status"] == "accepted"
    assert rec["fragments_sent"] >= 59  # the whole file crossed: no forged FINISHED ended it
    assert stolen == 0
    (acc,) = (rdir / "accepted").glob("*.safetensors")
    assert acc.read_bytes() == data
    man = json.loads(next((rdir / "accepted").glob("*.manifest.json")).read_text())
    assert man["signer"] == "c1" and len(man["signature"]) == 128

"""No single control message stops the satellite: a plain pyzmq client (not the project's
codec) sends garbage, forged identities and wrong types in the hello phase and after it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest
import zmq

from ..conftest import REPO
from .test_run import _scenario

pytestmark = pytest.mark.integration


def _frame(**msg) -> bytes:
    return json.dumps({"v": 1, **msg}).encode()


def _dealer(ctx, ident: bytes, addr: str):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(addr)
    return s


def test_garbage_and_forged_identities_do_not_stop_the_satellite(tmp_path):
    scn = _scenario(tmp_path, algorithm="emsfl", cycles=1)
    token = secrets.token_hex(4)
    out = tmp_path / "sat"
    addr = f"ipc:///tmp/satfl-{token}-control"
    log = open(tmp_path / "sat.log", "wb")
    p = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "-v", "node", "satellite", "--scenario", str(scn),
         "--out", str(out), "--token", token],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ctx = zmq.Context()
    socks = []
    try:
        end = time.monotonic() + 120
        while not os.path.exists(addr[len("ipc://") :]):
            assert p.poll() is None, (tmp_path / "sat.log").read_text()[-2000:]
            assert time.monotonic() < end, "the satellite did not bind its control socket"
            time.sleep(0.2)
        bad_id = _dealer(ctx, b"\xff\xfe", addr)
        intruder = _dealer(ctx, b"intruder", addr)
        c1 = _dealer(ctx, b"c1", addr)
        c2 = _dealer(ctx, b"c2", addr)
        socks = [bad_id, intruder, c1, c2]
        time.sleep(0.3)
        # the hello phase: not JSON, a non-UTF-8 identity, an unknown identity (even saying
        # hello or error), the wrong version, an unknown type, too many frames, an error
        # message from nobody in the scenario
        c1.send(b"\x00not json\xff")
        bad_id.send(_frame(type="hello"))
        intruder.send(_frame(type="hello"))
        intruder.send(_frame(type="error", message="forged"))
        c1.send(json.dumps({"v": 99, "type": "hello"}).encode())
        c2.send(_frame(type="no_such_type"))
        c2.send_multipart([_frame(type="hello"), b"a", b"b"])
        c1.send(_frame(type="trained"))  # a reply nobody asked for
        time.sleep(1.0)
        assert p.poll() is None, (tmp_path / "sat.log").read_text()[-2000:]
        # then the real clusters say hello: the run proceeds (the satellite assigns experts)
        c1.send(_frame(type="hello"))
        c2.send(_frame(type="hello"))
        got = []
        poller = zmq.Poller()
        poller.register(c1, zmq.POLLIN)
        end = time.monotonic() + 120
        while time.monotonic() < end and not any(m.get("type") == "assign" for m in got):
            if poller.poll(500):
                got.append(json.loads(c1.recv_multipart()[0]))
        assert any(m.get("type") == "assign" for m in got), got
        # after the hello phase, garbage still only gets dropped
        intruder.send(_frame(type="error", message="forged"))
        bad_id.send(b"\x00")
        time.sleep(1.0)
        assert p.poll() is None
        text = (tmp_path / "sat.log").read_text(errors="replace")
        assert "unknown identity" in text and "bad control message from c1" in text
        assert "Traceback" not in text
    finally:
        for s in socks:
            s.close()
        ctx.term()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        for suffix in ("-control",):
            try:
                os.unlink(f"/tmp/satfl-{token}{suffix}")
            except FileNotFoundError:
                pass


def test_with_keys_a_cluster_is_its_certificate_not_the_name_it_chooses(tmp_path):
    # The satellite with keys (CURVE + ZAP on its ROUTER). Attackers: no CURVE under the
    # name c1; a stranger's key under the name c1; the enrolled c2 under the routing id c1
    # (it is taken for c2, whatever it calls itself). Only the real clusters run the hello
    # phase; a forged error from another connection with c1's name does not stop the run.
    from flowgraphs.keys import Keyring, create_keys, curve_client

    keys = tmp_path / "keys"
    create_keys(keys, ["channel", "satellite", "c1", "c2"])
    create_keys(tmp_path / "stranger", ["mallory"])
    mallory = Keyring(tmp_path / "stranger", "mallory")
    mallory.nodes["satellite"] = Keyring(keys).public("satellite")
    scn = _scenario(tmp_path, algorithm="emsfl", cycles=1)
    token = secrets.token_hex(4)
    addr = f"ipc:///tmp/satfl-{token}-control"
    log = open(tmp_path / "sat.log", "wb")
    p = subprocess.Popen(
        [sys.executable, "-m", "testbed.cli", "-v", "node", "satellite", "--scenario", str(scn),
         "--out", str(tmp_path / "sat"), "--token", token, "--keys", str(keys)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ctx = zmq.Context()
    socks = []

    def dealer(k, ident: bytes | None = None):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if ident is not None:
            s.setsockopt(zmq.IDENTITY, ident)
        if k is not None:
            curve_client(s, k, "satellite")
        s.connect(addr)
        socks.append(s)
        return s

    try:
        end = time.monotonic() + 120
        while not os.path.exists(addr[len("ipc://") :]):
            assert p.poll() is None, (tmp_path / "sat.log").read_text()[-2000:]
            assert time.monotonic() < end, "the satellite did not bind its control socket"
            time.sleep(0.2)
        plain = dealer(None, b"c1")
        stranger = dealer(mallory, b"c1")
        c2_as_c1 = dealer(Keyring(keys, "c2"), b"c1")
        for s in (plain, stranger, c2_as_c1):
            try:
                s.send(_frame(type="hello"), zmq.NOBLOCK)
                s.send(_frame(type="error", message="forged"), zmq.NOBLOCK)
            except zmq.Again:
                pass  # never admitted: nowhere to send
        time.sleep(1.0)
        assert p.poll() is None, (tmp_path / "sat.log").read_text()[-2000:]
        c1 = dealer(Keyring(keys, "c1"))
        c2 = dealer(Keyring(keys, "c2"))
        c1.send(_frame(type="hello"))
        c2.send(_frame(type="hello"))
        got = []
        end = time.monotonic() + 120
        while time.monotonic() < end and not any(m.get("type") == "assign" for m in got):
            if c1.poll(500):
                got.append(json.loads(c1.recv_multipart()[0]))
        assert any(m.get("type") == "assign" for m in got), got
        # the real c2 said hello on its own connection: the earlier one is not c2's any more
        c2_as_c1.send(_frame(type="error", message="forged"))
        want = "c2: message on a connection it did not say hello on; dropped"
        end = time.monotonic() + 120
        while want not in (text := (tmp_path / "sat.log").read_text(errors="replace")):
            assert p.poll() is None, text[-2000:]
            assert time.monotonic() < end, text[-2000:]
            time.sleep(0.3)
        assert p.poll() is None, text[-2000:]
        assert "ZAP: refused an unenrolled key" in text
        assert "Traceback" not in text
    finally:
        for s in socks:
            s.close()
        ctx.term()
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        try:
            os.unlink(f"/tmp/satfl-{token}-control")
        except FileNotFoundError:
            pass

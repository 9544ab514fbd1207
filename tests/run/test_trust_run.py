"""A whole run under attack (issue 11): strangers connect to every socket the run binds —
the satellite's control ROUTER and every emulator endpoint — with plain pyzmq (no CURVE) and
with CURVE under a key of their own. They try to read deliveries, say hello and error as the
clusters, inject PDUs and forge FINISHED replies. The run completes with exit 0 and its
records are exactly those of an unattacked run with the same scenario, seed and keys."""

from __future__ import annotations

import glob
import json
import os
import threading

import pmt
import pytest
import zmq

from flowgraphs.keys import Keyring, create_keys, curve_client
from nodes.wire import Finished, FinishedStatus, encode

from .test_run import _jsonl, _run, _scenario, _strip_wall

pytestmark = pytest.mark.integration


def _pdu(payload: bytes) -> bytes:
    d = pmt.dict_add(pmt.make_dict(), pmt.intern("tx_time"), pmt.from_double(0.0))
    return pmt.serialize_str(pmt.cons(d, pmt.init_u8vector(len(payload), list(payload))))


class _Attacker:
    """Connects to every new ``/tmp/satfl-*`` socket file while a run lives."""

    def __init__(self, keys_dir, stranger: Keyring) -> None:
        self.before = set(glob.glob("/tmp/satfl-*"))
        self.ctx = zmq.Context()
        self.stranger = stranger
        self.real = Keyring(keys_dir)
        self.stop = threading.Event()
        self.stolen = 0
        self.tried = 0
        self.socks: list[tuple[zmq.Socket, str]] = []
        self.th = threading.Thread(target=self._loop, daemon=True)

    def _sock(self, kind: int, path: str, server: str | None) -> None:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if kind == zmq.DEALER:
            s.setsockopt(zmq.IDENTITY, b"c1")
        if server is not None:
            self.stranger.nodes[server] = self.real.public(server)
            curve_client(s, self.stranger, server)
        s.connect(f"ipc://{path}")
        self.socks.append((s, path))

    def _loop(self) -> None:
        seen = set(self.before)
        forged = [
            _pdu(encode(Finished(os.urandom(16), FinishedStatus.ACCEPTED, bytes(32), 1.0))),
            _pdu(os.urandom(200)),
        ]
        hello = [json.dumps({"v": 1, "type": t}).encode() for t in ("hello", "error")]
        while not self.stop.wait(0.1):
            for path in set(glob.glob("/tmp/satfl-*")) - seen:
                seen.add(path)
                if path.endswith("-control"):
                    kind, server = zmq.DEALER, "satellite"
                elif path.endswith(("-out", "-status")):
                    kind, server = zmq.PULL, "channel"
                else:
                    kind, server = zmq.PUSH, "channel"
                self._sock(kind, path, None)
                self._sock(kind, path, server)
            for s, _path in self.socks:
                try:
                    if s.type == zmq.PULL:
                        while s.poll(0):
                            s.recv()
                            self.stolen += 1
                    else:
                        for buf in hello if s.type == zmq.DEALER else forged:
                            s.send(buf, zmq.NOBLOCK)
                            self.tried += 1
                except zmq.Again:
                    pass  # not admitted: nowhere to send
                except zmq.ZMQError:
                    pass

    def __enter__(self) -> _Attacker:
        self.th.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.th.join(5)
        for s, _ in self.socks:
            s.close(0)
        self.ctx.term()


def test_a_run_under_attack_completes_with_the_records_of_an_unattacked_one(tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys, ["channel", "satellite", "c1", "c2"])
    create_keys(tmp_path / "mallory", ["mallory"])
    scn = _scenario(tmp_path, algorithm="emsfl", cycles=1)
    # shared keys, as a multi-host lab would have them
    setk = f"endpoints.keys={keys}"
    r1 = _run(str(scn), "--out", str(tmp_path / "calm"), "--set", setk)
    assert r1.returncode == 0, r1.stderr[-3000:]
    with _Attacker(keys, Keyring(tmp_path / "mallory", "mallory")) as att:
        r2 = _run(str(scn), "--out", str(tmp_path / "attacked"), "--set", setk)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert len(att.socks) >= 2 * 13  # control + 12 emulator endpoints, plain and CURVE each
    assert att.stolen == 0
    for name in ("uploads.jsonl", "aggregations.jsonl", "metrics.jsonl"):
        a = _jsonl(tmp_path / "calm" / "emsfl" / name)
        b = _jsonl(tmp_path / "attacked" / "emsfl" / name)
        assert a and _strip_wall(a) == _strip_wall(b), name
    for agg in _jsonl(tmp_path / "attacked" / "emsfl" / "aggregations.jsonl"):
        assert agg["rejected"] == []
    logs = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "attacked" / "emsfl" / "nodes").iterdir()
    )
    assert "ZAP: refused an unenrolled key" in logs
    assert "Traceback" not in logs

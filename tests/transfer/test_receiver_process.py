"""The standalone receiver process: kill -9 mid-transfer, restart, fuzzed input on its port.

The test binds the endpoints the emulator would bind (uplink ``out``, downlink ``in``) and
plays the link itself, so the receiver process, its ZeroMQ sockets and its disk state are
all real.
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
import zmq

from flowgraphs.pdu import encode_pdu
from nodes.payload import manifest_for, new_transfer_id
from nodes.sender import SenderEngine
from nodes.wire import Eof, FinishedStatus, Fragment, MetadataMsg, Nak, Prompt, decode, encode

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Harness:
    """Plays the emulator's side of the receiver's sockets."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dir = tmp / "rx"
        self.up_out = f"ipc://{tmp}/up-out"
        self.down_in = f"ipc://{tmp}/down-in"
        self.ctx = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.push.setsockopt(zmq.SNDHWM, 64)
        self.push.setsockopt(zmq.SNDTIMEO, 15000)  # backpressure, not loss
        self.push.bind(self.up_out)
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.bind(self.down_in)
        self.proc: subprocess.Popen | None = None
        self.t = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed.cli",
                "receive",
                "--dir",
                str(self.dir),
                "--up-out",
                self.up_out,
                "--down-in",
                self.down_in,
                "--down-status",
                f"ipc://{self.tmp}/unused-status",
                "--frame-bytes",
                "1200",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.5)  # let it connect (sends block until it has)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> dict:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
            assert self.proc.returncode == 0, self.proc.stderr.read().decode()
            self.proc = None
        return json.loads((self.dir / "receiver_stats.json").read_text())

    def send(self, raw: bytes, meta: dict | None = None) -> None:
        self.t += 0.005
        m = {"rx_end": self.t, "src": "c1"} if meta is None else meta
        try:
            self.push.send(encode_pdu(m, raw) if meta is not False else raw)
        except zmq.Again:
            pass  # nobody connected: the frame is lost, as on air

    def replies(self, wait_s: float) -> list:
        out = []
        if self.pull.poll(int(wait_s * 1000)):
            while self.pull.poll(0):
                from flowgraphs.pdu import decode_pdu

                _, payload = decode_pdu(self.pull.recv())
                out.append(decode(payload))
        return out

    def step(self, tx: SenderEngine) -> object | None:
        """One sender step: send its next message, feed back the replies, fire its timer."""
        msg = tx.next_message(self.t)
        if msg is not None:
            self.send(encode(msg))
        for reply in self.replies(0.0 if msg is not None and not isinstance(msg, Eof) else 1.5):
            tx.on_reply(reply, self.t, rtt_s=0.0)
        if msg is None and not tx.done and not tx.has_work():
            tx.on_timeout()
        return msg

    def durable_fragments(self, tid: bytes) -> set[int]:
        """Fragments recorded in the partial's bitmap file (what survived a kill)."""
        b = self.dir / "partial" / tid.hex() / "bitmap"
        if not b.exists():
            return set()
        raw = b.read_bytes()
        return {i for i in range(len(raw) * 8) if raw[i >> 3] & (1 << (i & 7))}

    def accepted_ok(self, data: bytes) -> int:
        acc = self.dir / "accepted"
        n = 0
        for f in acc.iterdir() if acc.exists() else []:
            assert not f.name.endswith(".tmp"), f"temp file in accepted/: {f.name}"
            if f.name.endswith(".safetensors"):
                assert f.read_bytes() == data, "a partial or corrupt payload in accepted/"
                n += 1
        return n

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.ctx.destroy(0)


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.close()


def test_kill9_mid_transfer_never_loses_or_leaves_partial(harness):
    rng = random.Random(5)
    data = os.urandom(300_000)
    tx = SenderEngine(new_transfer_id(), manifest_for(data, "c1", 1, 1000), data)
    harness.start()
    kills = 0
    durable_total: list[int] = []
    # Arbitrary points spread over the transfer (first sends, and resends after restarts).
    kill_at = sorted(rng.sample(range(30, 280), 3))
    for _step in range(3000):
        if tx.done:
            break
        msg = harness.step(tx)
        # Kill -9 at arbitrary points, three times, then let it finish.
        if kills < 3 and isinstance(msg, Fragment) and tx.stats["fragments_sent"] == kill_at[kills]:
            # Make progress durable (the receiver flushes before it answers EOF), then send
            # a few more fragments that are not yet durable, and kill -9.
            harness.send(encode(Eof(tx.tid, tx.n, tx.m.size, bytes.fromhex(tx.m.sha256))))
            assert harness.replies(15.0), "no answer to EOF before the kill"
            for i in range(5):
                harness.send(encode(tx.fragment(min(tx.n - 1, 250 + i))))
            harness.kill9()
            kills += 1
            assert harness.accepted_ok(data) == 0
            durable = harness.durable_fragments(tx.tid)
            durable_total.append(len(durable))
            harness.start()
            # Resume, never restart: the restarted receiver's gap list excludes what was
            # durable at the kill.
            harness.send(encode(Prompt(tx.tid)))
            naks = [r for r in harness.replies(15.0) if isinstance(r, Nak)]
            assert naks, "no answer to the prompt after restart"
            missing = {i for a, b in naks[0].ranges for i in range(a, b)}
            assert not (missing & durable)
            for r in naks:
                tx.on_reply(r, harness.t, rtt_s=0.0)
    assert kills == 3
    assert tx.done and tx.result.status is FinishedStatus.ACCEPTED
    assert harness.accepted_ok(data) == 1
    assert max(durable_total) > 0  # the kills did hit a transfer with durable progress
    # A restarted receiver answers a duplicate of the finished transfer from its record.
    harness.kill9()
    harness.start()
    harness.send(encode(MetadataMsg(tx.tid, tx.m)))
    replies = harness.replies(3.0)
    assert replies and replies[0].status is FinishedStatus.ACCEPTED
    stats = harness.stop()
    assert stats["duplicate_after_finish"] >= 1
    assert harness.accepted_ok(data) == 1


def test_fuzzed_port_input_is_counted_and_dropped(harness):
    rng = random.Random(7)
    harness.start()
    tid = new_transfer_id()
    good = encode(Fragment(tid, 0, 1, 0, b"x" * 10))
    garbage = [
        b"",
        b"\x00",
        os.urandom(50),
        os.urandom(3000),
        encode_pdu({"rx_end": 1.0}, b"")[:-3],  # truncated PMT
    ]
    for _ in range(40):
        garbage.append(os.urandom(rng.randint(1, 300)))
    for g in garbage:
        harness.send(g, meta=False)  # raw bytes, not even PMT
    harness.send(good, meta={"rx_end": "soon"})  # wrong type
    harness.send(good, meta={"src": "c1"})  # missing rx_end
    harness.send(good, meta={"rx_end": float("nan")})
    for _ in range(40):  # valid PDUs whose payload is a mangled protocol message
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        harness.send(bytes(b))
    for _ in range(20):
        harness.send(os.urandom(rng.randint(0, 200)))
    # The receiver still works: a real transfer completes after the garbage.
    data = os.urandom(20_000)
    tx = SenderEngine(new_transfer_id(), manifest_for(data, "c1", 2, 1000), data)
    for _ in range(200):
        if tx.done:
            break
        harness.step(tx)
    assert tx.done and tx.result.status is FinishedStatus.ACCEPTED
    stats = harness.stop()
    assert stats["bad_pdu"] >= len(garbage) + 3
    assert (
        stats["malformed"] + stats.get("unknown_transfer", 0) + stats.get("bad_fragment", 0) >= 40
    )
    assert harness.accepted_ok(data) == 1

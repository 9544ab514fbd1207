"""Property-based state-machine test of the transfer protocol (Hypothesis).

The engines are driven directly with a message pool in each direction. Hypothesis chooses
which message is delivered next (reordering), which are lost or duplicated, when outages
begin and end (freeze, prompt at the next pass), when timers fire, and when the receiver
process crashes and restarts from its directory. Invariants are checked after every step;
at the end the link heals and the transfer must complete byte-exact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nodes.payload import manifest_for, new_transfer_id
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.sender import SenderEngine
from nodes.store import ReceiverStore
from nodes.wire import Finished, FinishedStatus, decode, encode

FRAG = 64


class TransferMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="sm-"))
        self.data = os.urandom(FRAG * 5 + 17)  # 6 fragments: short runs reach the end
        self.tid = new_transfer_id()
        m = manifest_for(self.data, "c1", 1, FRAG)
        self.tx = SenderEngine(self.tid, m, self.data)
        self.rx = self._new_receiver()
        self.up: list[bytes] = []
        self.down: list[bytes] = []
        self.t = 0.0
        self.connected = True

    def _new_receiver(self) -> ReceiverEngine:
        return ReceiverEngine(
            ReceiverStore(self.dir), ReceiverConfig(frame_bytes=FRAG + 64, flush_every=3)
        )

    def teardown(self) -> None:
        try:
            self._check_completion_on_healed_link()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- sender side -----------------------------------------------------------------
    @precondition(lambda self: self.connected)
    @rule(n=st.integers(1, 6))
    def sender_sends(self, n: int) -> None:
        for _ in range(n):
            msg = self.tx.next_message(self.t)
            if msg is None:
                break
            self.up.append(encode(msg))
            self.t += 0.01

    @rule()
    def sender_timer_fires(self) -> None:
        if self.connected and self.tx.awaiting_since is not None:
            self.t += 1.0
            self.tx.on_timeout()

    @rule()
    def outage_begins(self) -> None:
        self.connected = False
        self.up.clear()  # what was in the air is lost below the gate
        self.down.clear()

    @precondition(lambda self: not self.connected)
    @rule()
    def next_pass(self) -> None:
        self.t += 100.0
        self.connected = True
        self.tx.on_pass_start()

    # -- the channel -----------------------------------------------------------------
    @precondition(lambda self: self.up)
    @rule(data=st.data(), n=st.integers(1, 8))
    def deliver_up(self, data: st.DataObject, n: int) -> None:
        for _ in range(min(n, len(self.up))):
            i = data.draw(st.integers(0, len(self.up) - 1))  # any order: reordering
            for reply in self.rx.handle(self.up.pop(i), self.t):
                self.down.append(encode(reply))

    @precondition(lambda self: self.down)
    @rule(data=st.data(), n=st.integers(1, 4))
    def deliver_down(self, data: st.DataObject, n: int) -> None:
        for _ in range(min(n, len(self.down))):
            i = data.draw(st.integers(0, len(self.down) - 1))
            self.tx.on_reply(decode(self.down.pop(i)), self.t, rtt_s=0.0)

    @precondition(lambda self: self.up or self.down)
    @rule(data=st.data(), up=st.booleans())
    def lose(self, data: st.DataObject, up: bool) -> None:
        pool = self.up if (up and self.up) or not self.down else self.down
        pool.pop(data.draw(st.integers(0, len(pool) - 1)))

    @precondition(lambda self: self.up or self.down)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        pool = self.up if self.up else self.down
        pool.append(pool[data.draw(st.integers(0, len(pool) - 1))])

    @rule()
    def receiver_crashes_and_restarts(self) -> None:
        # kill -9: in-memory state is gone; unflushed fragments are lost, not corrupted.
        for p in self.rx.store.partials.values():
            p.close()
        self.rx = self._new_receiver()

    # -- invariants ------------------------------------------------------------------
    @invariant()
    def accepted_holds_only_the_exact_payload(self) -> None:
        acc = self.dir / "accepted"
        for f in acc.iterdir():
            assert not f.name.endswith(".tmp"), f
            if f.name.endswith(".safetensors"):
                assert f.read_bytes() == self.data
                assert (acc / (f.name[: -len(".safetensors")] + ".manifest.json")).exists()

    @invariant()
    def sender_done_only_if_accepted(self) -> None:
        res = self.tx.result
        if res is not None:
            assert res.status is FinishedStatus.ACCEPTED
            assert any(f.name.endswith(".safetensors") for f in (self.dir / "accepted").iterdir())

    def _heal_and_finish(self) -> None:
        self.connected = True
        self.tx.on_pass_start()
        for _ in range(400):
            if self.tx.done:
                return
            msg = self.tx.next_message(self.t)
            if msg is None:
                if not self.down and not self.up:
                    self.tx.on_timeout()
                    continue
            else:
                self.up.append(encode(msg))
            while self.up:
                for reply in self.rx.handle(self.up.pop(0), self.t):
                    self.down.append(encode(reply))
            while self.down:
                self.tx.on_reply(decode(self.down.pop(0)), self.t, rtt_s=0.0)
            self.t += 0.01
        raise AssertionError("transfer did not complete on a healed link")

    def _check_completion_on_healed_link(self) -> None:
        """After any history, a healed link completes the transfer exactly once."""
        self._heal_and_finish()
        assert isinstance(self.tx.result, Finished)
        files = [f for f in (self.dir / "accepted").iterdir() if f.name.endswith(".safetensors")]
        assert len(files) == 1 and files[0].read_bytes() == self.data
        # Once finished, a replayed old transfer is answered from the record.
        replies = self.rx.handle(encode(self.tx.fragment(0)), self.t)
        assert all(isinstance(r, Finished) for r in replies)
        assert not self.rx.store.partials


TransferMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTransferStateMachine = TransferMachine.TestCase

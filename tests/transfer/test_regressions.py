"""Regression tests for defects found in review (each fails on the code before its fix)."""

from __future__ import annotations

import json
import os

import pytest

from nodes import store as store_mod
from nodes.inbox import AcceptedInbox
from nodes.payload import manifest_for, new_transfer_id
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.sender import Delivery, Horizon, SenderDriver, SenderEngine, TxReport
from nodes.simlink import SimLinkParams, SimulatedLink
from nodes.store import ReceiverStore
from nodes.wire import (
    Cancel,
    Eof,
    FinishedStatus,
    Fragment,
    MetadataMsg,
    Nak,
    WireError,
    decode,
    encode,
)


def _rx(d, **kw) -> ReceiverEngine:
    return ReceiverEngine(ReceiverStore(d), ReceiverConfig(frame_bytes=1100, **kw))


def test_commit_without_record_is_recovered_with_a_finite_time(tmp_path, monkeypatch):
    data = os.urandom(3000)
    tid = new_transfer_id()
    m = manifest_for(data, "c1", 1, 1000)
    rx = _rx(tmp_path)
    rx.handle(encode(MetadataMsg(tid, m)), 1.0)

    def crash(self, rec):
        raise SystemExit("kill -9 between the commit point and the record")

    monkeypatch.setattr(store_mod.ReceiverStore, "_append", crash)
    with pytest.raises(SystemExit):
        for i in range(3):
            rx.handle(encode(Fragment(tid, i, 3, i * 1000, data[i * 1000 : (i + 1) * 1000])), 2.0)
    monkeypatch.undo()
    rx2 = _rx(tmp_path)
    replies = rx2.handle(encode(Eof(tid, 3, 3000, bytes.fromhex(m.sha256))), 5.0)
    fin = decode(encode(replies[0]))  # the sender must be able to decode it
    assert fin.status is FinishedStatus.ACCEPTED and fin.accepted_s == 5.0


@pytest.mark.parametrize(
    "field,value",
    [
        ("kind", "a/b"),
        ("kind", "x" * 300),
        ("kind", "a\x00"),
        ("created_s", 10**400),
        ("created_s", float("inf")),
    ],
)
def test_hostile_manifest_fields_are_rejected(field, value):
    d = manifest_for(b"x" * 10, "c1", 1, 64).to_dict()
    d[field] = value
    with pytest.raises(WireError):
        from nodes.wire import Manifest

        Manifest.from_dict(d)


def test_deeply_nested_manifest_json_is_a_wire_error():
    body = b"[" * 3000 + b"]" * 3000
    buf = encode(Cancel(new_transfer_id()))[:3] + bytes([1]) + new_transfer_id() + body[:4000]
    with pytest.raises(WireError):
        decode(buf)


def test_open_transfers_are_capped(tmp_path):
    rx = _rx(tmp_path, max_open_transfers=5)
    replies = []
    for i in range(8):
        m = manifest_for(os.urandom(100), f"c{i}", 1, 64)
        replies.append(rx.handle(encode(MetadataMsg(new_transfer_id(), m)), 1.0))
    assert len(rx.store.partials) == 5
    assert all(r and r[0].status is FinishedStatus.REJECTED for r in replies[5:])


def test_crash_between_commit_renames_keeps_the_payload(tmp_path, monkeypatch):
    data = os.urandom(2500)
    tid = new_transfer_id()
    m = manifest_for(data, "c1", 1, 1000)
    rx = _rx(tmp_path)
    rx.handle(encode(MetadataMsg(tid, m)), 1.0)
    real = os.replace
    calls = []

    def replace(a, b):
        calls.append(b)
        if str(b).endswith(".safetensors"):
            raise SystemExit("kill -9 between the renames")
        return real(a, b)

    monkeypatch.setattr(store_mod.os, "replace", replace)
    with pytest.raises(SystemExit):
        for i in range(3):
            rx.handle(encode(Fragment(tid, i, 3, i * 1000, data[i * 1000 : (i + 1) * 1000])), 2.0)
    monkeypatch.undo()
    rx2 = _rx(tmp_path)
    assert tid in rx2.store.partials  # resumed, not forgotten
    fin = rx2.handle(encode(Eof(tid, 3, 2500, bytes.fromhex(m.sha256))), 3.0)[0]
    assert fin.status is FinishedStatus.ACCEPTED
    acc = [f for f in (tmp_path / "accepted").iterdir() if f.suffix == ".safetensors"]
    assert acc[0].read_bytes() == data


def test_torn_record_line_does_not_swallow_the_next(tmp_path):
    rx = _rx(tmp_path)
    m = manifest_for(os.urandom(100), "c1", 7, 64)
    t1 = new_transfer_id()
    rx.handle(encode(MetadataMsg(t1, m)), 1.0)
    rx.handle(encode(Cancel(t1)), 1.5)
    with open(tmp_path / "records.jsonl", "a") as f:
        f.write('{"tid": "0011')  # power cut mid-append
    rx = _rx(tmp_path)
    t2 = new_transfer_id()
    rx.handle(encode(MetadataMsg(t2, manifest_for(os.urandom(100), "c1", 8, 64))), 2.0)
    rx.handle(encode(Cancel(t2)), 3.0)
    rx = _rx(tmp_path)
    assert t1 in rx.store.records and t2 in rx.store.records
    assert rx.handle(encode(MetadataMsg(t2, m)), 4.0)[0].status is FinishedStatus.CANCELLED


def test_cancel_of_unknown_id_leaves_no_record(tmp_path):
    rx = _rx(tmp_path)
    for _ in range(50):
        assert (
            rx.handle(encode(Cancel(new_transfer_id())), 1.0)[0].status is FinishedStatus.CANCELLED
        )
    assert not rx.store.records


class _Spy(SimulatedLink):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.log: list = []

    def send(self, data, t):
        self.log.append(("tx", t, decode(data)))
        return super().send(data, t)

    def poll(self, w):
        ev = super().poll(w)
        for e in ev:
            if isinstance(e, Delivery):
                self.log.append(("fb", e.rx_end_s, decode(e.data)))
        return ev


def test_no_retransmission_before_its_nak_arrived(tmp_path):
    link = _Spy(
        _rx(tmp_path),
        SimLinkParams(loss=0.2, up_rate_bps=1e5, down_rate_bps=1e5, prop_delay_s=0.01, seed=3),
    )
    data = os.urandom(50_000)
    eng = SenderEngine(new_transfer_id(), manifest_for(data, "c1", 1, 1000), data)
    assert SenderDriver(eng, link, link.sender_config()).run().status == "accepted"
    # every resend of fragment i (in emulated time) follows a NAK listing i that had arrived
    naks = [(t, msg) for kind, t, msg in link.log if kind == "fb" and isinstance(msg, Nak)]
    sends: dict[int, int] = {}
    checked = 0
    for _kind, t, msg in sorted((e for e in link.log if e[0] == "tx"), key=lambda e: e[1]):
        if not isinstance(msg, Fragment):
            continue
        sends[msg.index] = sends.get(msg.index, 0) + 1
        if sends[msg.index] == 1:
            continue
        cause = [
            tn for tn, nak in naks if tn <= t and any(a <= msg.index < b for a, b in nak.ranges)
        ]
        assert cause, f"fragment {msg.index} resent at {t} before any NAK listing it arrived"
        checked += 1
    assert checked > 0


def test_metadata_is_never_sent_across_los(tmp_path):
    # 64-byte fragments: METADATA (~300 B) is the largest message; it must fit the window too.
    gated = 0
    for seed in range(20):
        w = [(0.0, 0.004 + 0.001 * seed), (1.0, 2.0)]
        p = SimLinkParams(up_rate_bps=5e5, windows=tuple(w), seed=seed)
        rx = _rx(tmp_path / str(seed))
        link = SimulatedLink(rx, p)
        data = os.urandom(2000)
        eng = SenderEngine(new_transfer_id(), manifest_for(data, "c1", 1, 64), data)
        SenderDriver(eng, link, link.sender_config(), windows=w).run()
        gated += link.counters["up_gated"]
    assert gated == 0


def test_inbox_hands_out_one_item_per_key_in_one_poll(tmp_path):
    import numpy as np
    from safetensors.numpy import save

    for v in (1.0, 2.0):  # same (sender, kind, round), different content
        blob = save({"a": np.full((2,), v, np.float32)})
        st = ReceiverStore(tmp_path)
        tid = new_transfer_id()
        m = manifest_for(blob, "c1", 1, 512)
        p = st.open(tid, m)
        p.write(0, blob)
        st.commit(p, 1.0)
    assert len(AcceptedInbox(tmp_path).poll()) == 1


def test_inbox_rejects_crafted_headers(tmp_path):
    import struct

    h = json.dumps({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}).encode()
    blob = struct.pack("<Q", len(h)) + h + b"\x00" * 4
    st = ReceiverStore(tmp_path)
    tid = new_transfer_id()
    m = manifest_for(blob, "c1", 1, 512)
    p = st.open(tid, m)
    p.write(0, blob)
    st.commit(p, 1.0)
    inbox = AcceptedInbox(tmp_path)
    assert inbox.poll() == [] and inbox.counters["rejected"] == 1


class _ModemLink(SimulatedLink):
    """The same link, with the emulator's reporting: a frame is reported only once the modem's
    clock reaches its start (the modem runs to the sender's promise, and on while frames follow
    back to back), with a status horizon to match; and everything reaches the sender ``lag``
    polls late, as through a busy machine (the emulated times are all untouched)."""

    def __init__(self, *a, lag: int, **kw) -> None:
        super().__init__(*a, **kw)
        self.lag = lag
        self._held: list[TxReport] = []
        self._line: list[list] = []

    def poll(self, wall_timeout_s):
        evs = super().poll(wall_timeout_s)
        self._held += [e for e in evs if isinstance(e, TxReport)]
        clock = self._promise  # the modem runs to the promise, and on while it has frames
        ready = []
        while self._held and self._held[0].at <= clock:
            ready.append(self._held.pop(0))
            clock = max(clock, ready[-1].tx_end_s)
        rest = [e for e in evs if isinstance(e, Delivery) or getattr(e, "kind", "") == "feedback"]
        self._line.append([*ready, *rest, Horizon("status", clock)])
        return self._line.pop(0) if len(self._line) > self.lag else []


@pytest.mark.parametrize("lag", [0, 1, 3, 8])
def test_a_record_at_the_deadline_holds_every_frame_sent_before_it(tmp_path, lag):
    # A transfer frozen at LOS returns at its deadline; the record it leaves (frames, passes,
    # first transmission) must hold the report of every frame sent before then, however late
    # those reports come in. Before the fix, run() returned at once when frozen past the
    # deadline, and the record missed the frames still queued in the modem, or all of them.
    w = [(0.0, 0.5), (10.0, 20.0)]
    data = os.urandom(120_000)
    link = _ModemLink(_rx(tmp_path), SimLinkParams(up_rate_bps=1e6, windows=tuple(w)), lag=lag)
    eng = SenderEngine(bytes(16), manifest_for(data, "c1", 1, 1000), data)
    r = SenderDriver(eng, link, link.sender_config(), windows=w).run(deadline_s=w[0][1])
    assert r.status == "incomplete" and link.counters["up_sent"] > 0
    assert r.frames == link.counters["up_sent"]  # the model builds one frame per PDU
    assert r.passes_used == 1 and r.first_tx_s == 0.0


@pytest.mark.parametrize(
    "sender",
    [
        "é" * 64,  # 64 Unicode letters: str.isalnum() accepted them, the commit then failed
        "ü" * 200,  # ENAMETOOLONG in accepted/, and recovery stopped there after a restart
        "a.b",  # '.' is no longer a sender character
        "munich d0",
        "",
        "x" * 65,
    ],
)
def test_sender_names_are_ascii_and_short_before_any_file_system_call(sender):
    from nodes.wire import Manifest, WireError

    good = manifest_for(b"abc", "munich-d0", 1, 64).to_dict()
    assert Manifest.from_dict(good).sender == "munich-d0"
    with pytest.raises(WireError, match="ASCII letters"):
        Manifest.from_dict({**good, "sender": sender})


def _deliver(eng, tid: bytes, m, data: bytes, t: float) -> list:
    from nodes.wire import Fragment, MetadataMsg, encode

    out = list(eng.handle(encode(MetadataMsg(tid, m)), t))
    fs = m.fragment_size
    for i in range(m.n_fragments):
        chunk = data[i * fs : (i + 1) * fs]
        out += eng.handle(encode(Fragment(tid, i, m.n_fragments, i * fs, chunk)), t + 0.001 * i)
    return out


def test_a_failed_commit_rejects_that_transfer_and_never_blocks_the_others(tmp_path, monkeypatch):
    from nodes.store import ReceiverStore
    from nodes.wire import Finished, FinishedStatus

    store = ReceiverStore(tmp_path / "rx")
    eng = ReceiverEngine(store, ReceiverConfig(frame_bytes=256))
    real = store.commit
    doomed = b"\x01" * 16

    def commit(p, t):
        if p.tid == doomed:
            raise OSError(28, "No space left on device")
        return real(p, t)

    monkeypatch.setattr(store, "commit", commit)
    a, b = b"A" * 500, b"B" * 500
    ma, mb = manifest_for(a, "munich-d0", 1, 64), manifest_for(b, "munich-d1", 1, 64)
    ra = [x for x in _deliver(eng, doomed, ma, a, 1.0) if isinstance(x, Finished)]
    rb = [x for x in _deliver(eng, b"\x02" * 16, mb, b, 2.0) if isinstance(x, Finished)]
    assert ra and ra[-1].status is FinishedStatus.REJECTED  # ended, with a durable record
    assert rb and rb[-1].status is FinishedStatus.ACCEPTED  # the next one is not held up
    assert eng.counters["commit_failed"] == 1
    assert store.records[doomed].status == int(FinishedStatus.REJECTED)
    # a restart: the rejected one stays rejected; recovery does not stop at it
    store2 = ReceiverStore(tmp_path / "rx")
    assert store2.records[doomed].status == int(FinishedStatus.REJECTED)
    assert not store2.partials and (tmp_path / "rx" / "accepted").is_dir()


def test_recovery_goes_on_past_a_transfer_whose_commit_fails(tmp_path, monkeypatch):
    from nodes.store import ReceiverStore
    from nodes.wire import FinishedStatus, Prompt, encode

    # Prepare: two complete partials left by a crash before their commit
    store = ReceiverStore(tmp_path / "rx")
    eng = ReceiverEngine(store, ReceiverConfig(frame_bytes=256))
    monkeypatch.setattr(eng, "_complete", lambda p, t: [])
    a, b = b"A" * 300, b"B" * 300
    ta, tb = b"\x03" * 16, b"\x04" * 16
    _deliver(eng, ta, manifest_for(a, "munich-d0", 1, 64), a, 1.0)
    _deliver(eng, tb, manifest_for(b, "munich-d1", 1, 64), b, 2.0)
    for p in store.partials.values():
        p.flush()
    # Execute: restart; the first commit fails (disk full), recovery runs at the first message
    store2 = ReceiverStore(tmp_path / "rx")
    assert set(store2.partials) == {ta, tb}
    real = store2.commit
    monkeypatch.setattr(
        store2, "commit", lambda p, t: (_ for _ in ()).throw(OSError(28, "full"))
        if p.tid == ta else real(p, t)
    )  # fmt: skip
    eng2 = ReceiverEngine(store2, ReceiverConfig(frame_bytes=256))
    eng2.handle(encode(Prompt(b"\x09" * 16)), 5.0)
    # Assert
    assert store2.records[ta].status == int(FinishedStatus.REJECTED)
    assert store2.records[tb].status == int(FinishedStatus.ACCEPTED)
    assert not store2.partials


def test_never_finishing_transfers_expire_and_one_sender_cannot_fill_the_table(tmp_path):
    from nodes.store import ReceiverStore
    from nodes.wire import Finished, FinishedStatus, MetadataMsg, encode

    store = ReceiverStore(tmp_path / "rx")
    cfg = ReceiverConfig(frame_bytes=256, max_open_transfers=8, max_open_per_sender=3,
                         open_ttl_s=1000.0)  # fmt: skip
    eng = ReceiverEngine(store, cfg)

    def meta(i: int, sender: str, t: float) -> list:
        m = manifest_for(bytes([i]) * 300, sender, 1, 64)
        return eng.handle(encode(MetadataMsg(bytes([i]) * 16, m)), t)

    # one sender: three open, the fourth refused, while another sender is still welcome
    assert [meta(i, "evil-d0", 1.0) for i in range(3)] == [[], [], []]
    r = meta(3, "evil-d0", 1.0)
    assert r and isinstance(r[0], Finished) and r[0].status is FinishedStatus.REJECTED
    # fill the rest of the table with never-finishing transfers of other names
    for i in range(10, 15):
        assert meta(i, f"x{i}-d0", 2.0) == []
    r = meta(20, "munich-d0", 3.0)
    assert r and r[0].status is FinishedStatus.REJECTED  # full
    # past the TTL in emulated time, the abandoned ones expire and the genuine one opens
    assert meta(21, "munich-d0", 1003.5) == []
    assert eng.counters["expired"] == 8 and len(store.partials) == 1
    assert all(store.records[bytes([i]) * 16].status == int(FinishedStatus.CANCELLED)
               for i in (0, 1, 2, 10, 14))  # fmt: skip


def test_a_forged_fragment_that_arrived_first_is_fetched_again(tmp_path):
    from nodes.store import ReceiverStore
    from nodes.wire import Finished, FinishedStatus, Fragment, Nak, NakKind, encode

    store = ReceiverStore(tmp_path / "rx")
    eng = ReceiverEngine(store, ReceiverConfig(frame_bytes=256, max_refetch=1))
    data = bytes(range(256)) * 2
    m = manifest_for(data, "munich-d0", 1, 64)
    tid = b"\x05" * 16
    from nodes.wire import MetadataMsg

    eng.handle(encode(MetadataMsg(tid, m)), 1.0)
    eng.handle(encode(Fragment(tid, 0, m.n_fragments, 0, b"\xee" * 64)), 1.0)  # forged first
    out = _deliver(eng, tid, m, data, 2.0)  # the genuine ones (0 is now a duplicate)
    naks = [x for x in out if isinstance(x, Nak) and x.kind is NakKind.EOF_GAPS]
    assert naks and naks[-1].ranges == ((0, m.n_fragments),)  # everything fetched again
    assert tid not in store.records and eng.counters["refetch"] == 1
    out = _deliver(eng, tid, m, data, 3.0)
    fin = [x for x in out if isinstance(x, Finished)]
    assert fin and fin[-1].status is FinishedStatus.ACCEPTED
    # a sender whose bytes never match ends as hash_mismatch after max_refetch re-fetches
    bad = manifest_for(data, "munich-d1", 1, 64)
    tid2 = b"\x06" * 16
    wrong = bytes(len(data))
    out = _deliver(eng, tid2, bad, wrong, 4.0) + _deliver(eng, tid2, bad, wrong, 5.0)
    fin = [x for x in out if isinstance(x, Finished)]
    assert fin and fin[-1].status is FinishedStatus.HASH_MISMATCH


def test_a_blocked_reply_send_gives_way_to_stop_within_a_fraction_of_a_second(tmp_path):
    import threading
    import time

    import zmq

    from nodes.zmq_link import send_until

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.bind(f"ipc://{tmp_path}/d")  # bound, never read: the peer does not take anything
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 1)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(f"ipc://{tmp_path}/d")
    stop = threading.Event()
    try:
        threading.Timer(0.3, stop.set).start()
        t1 = time.monotonic()
        ok = True
        while ok and time.monotonic() - t1 < 10:  # fill up, then block until stop
            ok = send_until(push, b"x" * 100, stop)
        assert not ok and time.monotonic() - t1 < 2.0
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()

"""Trust: node keys, CURVE with a ZAP allow list, signed manifests and cancels (issue 11).

Every forgery below worked on the code before signatures: the receiver opened, superseded or
cancelled transfers on the word of whoever put a message on the link.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace

import pytest
import zmq

from flowgraphs.keys import Keyring, KeysError, ZapGuard, create_keys, curve_client, list_keys
from nodes.inbox import AcceptedInbox
from nodes.payload import derived_transfer_id, manifest_for
from nodes.receiver import ReceiverConfig, ReceiverEngine
from nodes.signing import manifest_bytes, manifest_problem, sign_cancel, sign_manifest, signed
from nodes.store import ReceiverStore
from nodes.wire import Cancel, FinishedStatus, Fragment, MetadataMsg, WireError, decode, encode


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    create_keys(d, ["channel", "satellite", "c1", "c2"])
    return d


def _keys(keydir, me=None) -> Keyring:
    return Keyring(keydir, me)


# -- key files -------------------------------------------------------------------------------


def test_created_keys_are_listed_and_secrets_are_private(keydir):
    names = [k.name for k in list_keys(keydir)]
    assert names == ["c1", "c2", "channel", "satellite"]
    for n in names:
        mode = stat.S_IMODE(os.stat(keydir / f"{n}.key_secret").st_mode)
        assert mode == 0o600, (n, oct(mode))
        assert "secret-key" not in (keydir / f"{n}.key").read_text()
    # pyzmq reads our certificates' CURVE keys
    pub, sec = zmq.auth.load_certificate(keydir / "c1.key_secret")
    assert pub == _keys(keydir, "c1").me.curve_public and sec is not None


def test_a_secret_readable_by_others_or_missing_is_refused(tmp_path):
    create_keys(tmp_path, ["a", "b"])
    os.chmod(tmp_path / "a.key_secret", 0o644)
    with pytest.raises(KeysError, match="readable by others"):
        Keyring(tmp_path, "a")
    (tmp_path / "b.key_secret").unlink()
    with pytest.raises(KeysError, match="no secret key"):
        Keyring(tmp_path, "b")
    with pytest.raises(KeysError, match="not enrolled"):
        Keyring(tmp_path).public("zz")
    with pytest.raises(KeysError):
        create_keys(tmp_path, ["bad name"])


def test_recreating_keeps_existing_pairs_unless_forced(tmp_path):
    create_keys(tmp_path, ["a"])
    before = (tmp_path / "a.key").read_text()
    create_keys(tmp_path, ["a"])
    assert (tmp_path / "a.key").read_text() == before
    create_keys(tmp_path, ["a"], overwrite=True)
    assert (tmp_path / "a.key").read_text() != before


# -- CURVE + ZAP ------------------------------------------------------------------------------


def test_zap_admits_only_the_allowed_enrolled_node_and_names_it(keydir, tmp_path):
    addr = f"ipc://{tmp_path}/s"
    ctx = zmq.Context()
    guard = ZapGuard(ctx, _keys(keydir, "satellite"))
    srv = ctx.socket(zmq.PULL)
    srv.setsockopt(zmq.LINGER, 0)
    guard.serve(srv, "ctl", ["c1"])
    srv.bind(addr)
    octx = zmq.Context()
    socks = []

    def client(keys: Keyring | None):
        s = octx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            curve_client(s, keys, "satellite")
        s.connect(addr)
        socks.append(s)
        return s

    stranger_dir = tmp_path / "stranger"
    create_keys(stranger_dir, ["satellite", "c1"])  # own keys under enrolled names
    forged = Keyring(stranger_dir, "c1")
    # the stranger pins the real satellite's server key (public), but its client key is its own
    forged.nodes["satellite"] = _keys(keydir).public("satellite")
    try:
        plain = client(None)
        other = client(_keys(keydir, "c2"))
        fake = client(forged)
        good = client(_keys(keydir, "c1"))
        for s, body in ((plain, b"plain"), (other, b"c2"), (fake, b"fake"), (good, b"c1")):
            try:
                s.send(body, zmq.NOBLOCK)
            except zmq.Again:
                pass  # never connected: nothing to send to
        got = []
        while srv.poll(1500):
            f = srv.recv(copy=False)
            got.append((f.bytes, f.get("User-Id")))
        assert got == [(b"c1", "c1")]
        assert guard.denied >= 2  # c2 (enrolled, not allowed here) and the stranger's key
    finally:
        for s in socks:
            s.close(0)
        octx.term()
        srv.close(0)
        guard.close()
        ctx.term()


# -- signatures -------------------------------------------------------------------------------


def _signed(keydir, data: bytes, sender: str, rnd: int = 1, me: str = "c1"):
    m = manifest_for(data, sender, rnd, 500)
    tid = derived_transfer_id(m)
    return tid, sign_manifest(tid, m, _keys(keydir, me))


def test_a_signed_manifest_verifies_and_any_change_breaks_it(keydir):
    ver = _keys(keydir)
    tid, m = _signed(keydir, b"x" * 1200, "c1-d0")
    assert manifest_problem(tid, m, ver) is None
    assert manifest_problem(tid, m, ver, signer="c1") is None
    assert "expected 'c2'" in manifest_problem(tid, m, ver, signer="c2")
    # the signature survives the wire codec
    again = decode(encode(MetadataMsg(tid, m)))
    assert manifest_problem(tid, again.manifest, ver) is None
    for change in ({"round": 2}, {"size": 1201}, {"sha256": "0" * 64}, {"kind": "gate"},
                   {"sender": "c1-d1"}, {"expert_ids": (3,)}, {"created_s": 1.0}):  # fmt: skip
        assert manifest_problem(tid, replace(m, **change), ver) == "bad signature", change
    assert manifest_problem(bytes(16), m, ver) == "bad signature"  # replayed under another id
    assert manifest_problem(tid, replace(m, signer="c2"), ver) is not None
    unsigned = manifest_for(b"x" * 1200, "c1-d0", 1, 500)
    assert manifest_problem(tid, unsigned, ver) == "unsigned manifest"
    assert manifest_bytes(tid, m).startswith(b"satfl-manifest/1\x00" + tid)


def test_a_node_may_sign_only_for_itself_and_its_devices(keydir):
    with pytest.raises(ValueError, match="may not sign"):
        _signed(keydir, b"y" * 100, "c2-d0", me="c1")
    with pytest.raises(ValueError, match="may not sign"):
        _signed(keydir, b"y" * 100, "c10", me="c1")  # a prefix is not a device
    # a manifest that claims c2-d0 but is signed by c1 does not verify as c1's either
    tid, m = _signed(keydir, b"y" * 100, "c1-d0")
    forged = replace(m, sender="c2-d0")
    assert "may not sign" in manifest_problem(tid, forged, _keys(keydir))


def test_signatures_are_deterministic(keydir):
    # the same key and inputs give the same bytes on the air (docs/clock.md)
    assert _signed(keydir, b"z" * 700, "c1")[1] == _signed(keydir, b"z" * 700, "c1")[1]


def test_manifest_signature_fields_are_validated():
    m = manifest_for(b"q" * 10, "c1", 0, 64)
    with pytest.raises(WireError, match="come together"):
        replace(m, signer="c1")
    with pytest.raises(WireError, match="128 lowercase hex"):
        replace(m, signer="c1", signature="AB" * 64)
    with pytest.raises(WireError, match="signer"):
        replace(m, signer="c 1", signature="ab" * 64)
    with pytest.raises(WireError, match="CANCEL"):
        decode(encode(Cancel(bytes(16), 0)) + b"\x00" * 3)


# -- the receiver with keys -------------------------------------------------------------------


def _rx(d, keydir, **kw) -> ReceiverEngine:
    cfg = ReceiverConfig(frame_bytes=1100, **kw)
    return ReceiverEngine(ReceiverStore(d), cfg, keys=_keys(keydir))


def _frags(tid, data, fs=500):
    n = -(-len(data) // fs)
    return [encode(Fragment(tid, i, n, i * fs, data[i * fs : (i + 1) * fs])) for i in range(n)]


def test_forged_metadata_opens_nothing_and_gets_no_answer(tmp_path, keydir):
    rx = _rx(tmp_path, keydir)
    data = os.urandom(1500)
    m = manifest_for(data, "c1", 1, 500)
    tid = derived_transfer_id(m)
    # unsigned; signed by c2 for c1's sender; a valid signature copied onto other fields
    _, good = _signed(keydir, data, "c1")
    c2_signed = replace(sign_manifest(tid, manifest_for(data, "c2", 1, 500), _keys(keydir, "c2")),
                        sender="c1")  # fmt: skip
    for forged in (m, c2_signed, replace(good, round=7)):
        assert rx.handle(encode(MetadataMsg(tid, forged)), 1.0) == []
    assert rx.counters["bad_signature"] == 3
    assert not rx.store.partials and not rx.store.records
    # the genuine manifest then goes through
    assert rx.handle(encode(MetadataMsg(tid, good)), 2.0) == []
    out = [r for f in _frags(tid, data) for r in rx.handle(f, 3.0)]
    assert out[-1].status is FinishedStatus.ACCEPTED


def test_forged_newer_round_cannot_supersede_and_forged_cancel_cannot_cancel(tmp_path, keydir):
    rx = _rx(tmp_path, keydir, supersede="cancel")
    data = os.urandom(1500)
    tid, m = _signed(keydir, data, "c1", rnd=3)
    rx.handle(encode(MetadataMsg(tid, m)), 1.0)
    rx.handle(_frags(tid, data)[0], 1.1)
    # metadata for round 2**31 - 1 "from c1", signed by nobody / by c2
    big = manifest_for(b"e" * 10, "c1", 2**31 - 1, 500)
    btid = derived_transfer_id(big)
    assert rx.handle(encode(MetadataMsg(btid, big)), 2.0) == []
    big_c2 = replace(sign_manifest(btid, replace(big, sender="c2"), _keys(keydir, "c2")),
                     sender="c1")  # fmt: skip
    assert rx.handle(encode(MetadataMsg(btid, big_c2)), 2.0) == []
    # CANCEL of the victim's transfer: unsigned, signed by c2, a c1 signature of another id
    for sig in (
        b"",
        sign_cancel(tid, 0, _keys(keydir, "c2")),
        sign_cancel(btid, 0, _keys(keydir, "c1")),
    ):
        assert rx.handle(encode(Cancel(tid, 0, sig)), 2.5) == []
    # a CANCEL of an unknown transfer cannot be verified, so it has no answer either
    assert (
        rx.handle(encode(Cancel(bytes(16), 0, sign_cancel(bytes(16), 0, _keys(keydir, "c1")))), 2.6)
        == []
    )
    assert rx.counters["bad_signature"] == 6
    assert tid in rx.store.partials and not rx.store.records
    out = [r for f in _frags(tid, data)[1:] for r in rx.handle(f, 3.0)]
    assert out[-1].status is FinishedStatus.ACCEPTED
    # the owner's own cancel of an open transfer works
    data2 = os.urandom(900)
    tid2, m2 = _signed(keydir, data2, "c1", rnd=4)
    rx.handle(encode(MetadataMsg(tid2, m2)), 4.0)
    _, cancel_signer = signed(tid2, m2, _keys(keydir, "c1"))
    (fin,) = rx.handle(encode(Cancel(tid2, 0, cancel_signer(tid2, 0))), 4.5)
    assert fin.status is FinishedStatus.CANCELLED


def test_records_per_sender_are_bounded(tmp_path, keydir):
    rx = _rx(tmp_path, keydir, max_records_per_sender=3)
    keys = _keys(keydir, "c1")
    for r in range(5):
        data = os.urandom(100)
        m = manifest_for(data, "c1", r, 500)
        tid = derived_transfer_id(m)
        rx.handle(encode(MetadataMsg(tid, sign_manifest(tid, m, keys))), float(r))
        rx.handle(_frags(tid, data)[0], float(r) + 0.5)
    assert rx.store.records_of("c1") == 3
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 3
    assert rx.counters["too_many_records_sender"] == 2


def test_the_inbox_rejects_a_payload_whose_manifest_is_not_authentic(tmp_path, keydir, caplog):
    rx = _rx(tmp_path, keydir)
    data = b"\x00" * 600
    tid, m = _signed(keydir, data, "c1-d0")
    rx.handle(encode(MetadataMsg(tid, m)), 1.0)
    for f in _frags(tid, data):
        rx.handle(f, 2.0)
    (mpath,) = (tmp_path / "accepted").glob("*.manifest.json")
    inbox_c2 = AcceptedInbox(tmp_path, keys=_keys(keydir), signer="c2")  # c2's link
    assert inbox_c2.poll() == [] and inbox_c2.counters["rejected"] == 1
    assert "not authentic: signed by 'c1', expected 'c2'" in caplog.text
    # someone with write access to accepted/ changes the round: the signature no longer holds
    d = json.loads(mpath.read_text())
    d["round"] = 9
    mpath.write_text(json.dumps(d))
    inbox = AcceptedInbox(tmp_path, keys=_keys(keydir), signer="c1")
    assert inbox.poll() == [] and inbox.counters["rejected"] == 1
    assert "not authentic: bad signature" in caplog.text
    # the reason goes into the aggregation record, once; the file is never handed out again
    (rej,) = inbox.pop_rejections()
    assert rej["reason"] == "not authentic: bad signature" and rej["payload"] in mpath.name
    assert inbox.poll() == [] and inbox.pop_rejections() == []

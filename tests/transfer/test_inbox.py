"""The aggregator reads only accepted/, validates each payload, applies each round once."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save

from nodes.inbox import AcceptedInbox
from nodes.payload import (
    PayloadError,
    manifest_for,
    new_transfer_id,
    validate_safetensors,
)
from nodes.store import ReceiverStore, accepted_name

EXPECTED = {"experts.0.lora_A": ("F32", (4, 8)), "experts.0.lora_B": ("F32", (8, 4))}


def _tensors(seed=0):
    r = np.random.default_rng(seed)
    return {
        "experts.0.lora_A": r.standard_normal((4, 8)).astype(np.float32),
        "experts.0.lora_B": r.standard_normal((8, 4)).astype(np.float32),
    }


def _commit(tmp_path, blob, sender="c1", round_=1, corrupt_after=False):
    """Commit through the real store (as the receiver would)."""
    store = ReceiverStore(tmp_path)
    tid = new_transfer_id()
    m = manifest_for(blob, sender, round_, 512)
    p = store.open(tid, m)
    for i in range(m.n_fragments):
        p.write(i, blob[i * 512 : (i + 1) * 512])
    store.commit(p, 1.0)
    path = tmp_path / "accepted" / f"{accepted_name(m, tid)}.safetensors"
    if corrupt_after:
        b = bytearray(path.read_bytes())
        b[-1] ^= 0xFF
        path.write_bytes(bytes(b))
    return path


def test_valid_payload_is_delivered_once_across_restarts(tmp_path):
    _commit(tmp_path, save(_tensors()))
    inbox = AcceptedInbox(tmp_path, expected=lambda m: EXPECTED)
    items = inbox.poll()
    assert len(items) == 1
    np.testing.assert_array_equal(
        items[0].tensors["experts.0.lora_A"], _tensors()["experts.0.lora_A"]
    )
    inbox.mark_applied(items[0])
    assert inbox.poll() == []
    with pytest.raises(ValueError):
        inbox.mark_applied(items[0])
    # A restarted aggregator remembers what it applied.
    assert AcceptedInbox(tmp_path, expected=lambda m: EXPECTED).poll() == []


def test_same_sender_round_twice_is_applied_once(tmp_path):
    _commit(tmp_path, save(_tensors(1)))
    _commit(tmp_path, save(_tensors(2)))  # same (sender, round), other content
    inbox = AcceptedInbox(tmp_path)
    items = inbox.poll()
    inbox.mark_applied(items[0])
    assert inbox.poll() == []


@pytest.mark.parametrize("case", ["nonfinite", "wrong_shape", "extra_name", "corrupt"])
def test_bad_payloads_are_rejected_and_counted(tmp_path, case):
    t = _tensors()
    if case == "nonfinite":
        t["experts.0.lora_A"][0, 0] = np.nan
    elif case == "wrong_shape":
        t["experts.0.lora_B"] = np.zeros((4, 4), np.float32)
    elif case == "extra_name":
        t["experts.9.lora_A"] = np.zeros((1,), np.float32)
    _commit(tmp_path, save(t), corrupt_after=case == "corrupt")
    inbox = AcceptedInbox(tmp_path, expected=lambda m: EXPECTED)
    assert inbox.poll() == []
    assert inbox.counters["rejected"] == 1


def _raw_safetensors(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        struct.pack("<Q", 1 << 40) + b"{}",  # header length out of bounds
        struct.pack("<Q", 5) + b"nope!",
        _raw_safetensors(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\x00" * 8
        ),  # offsets past the end
        _raw_safetensors(
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\x00" * 8
        ),  # size does not match shape
        _raw_safetensors({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 1]}}, b"\x00"),
        _raw_safetensors(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\x00" * 12,
        ),  # overlapping tensors
    ],
)
def test_forged_headers_are_rejected(tmp_path, blob):
    f = tmp_path / "x.safetensors"
    f.write_bytes(blob)
    with pytest.raises(PayloadError):
        validate_safetensors(f)


def test_size_limit_and_hash(tmp_path):
    f = tmp_path / "x.safetensors"
    f.write_bytes(save(_tensors()))
    with pytest.raises(PayloadError, match="exceeds"):
        validate_safetensors(f, max_bytes=10)
    with pytest.raises(PayloadError, match="SHA-256"):
        validate_safetensors(f, sha256="0" * 64)

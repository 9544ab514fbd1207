"""Typed messages of the payload-transfer protocol and their one reference codec.

Every message is a frozen dataclass; :func:`encode` and :func:`decode` are the only code
that turns them into bytes and back (docs/protocol.md documents the layout). Messages ride
inside emulator PDUs (one message per modem frame), so they are compact binary, big endian.

Common header (20 bytes)::

    magic "SF" | version u8 | type u8 | transfer_id 16 bytes

``decode`` validates everything it reads and raises :class:`WireError` with a reason; a
receiver counts and drops such input.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = [
    "HEADER_SIZE",
    "MAX_MANIFEST_BYTES",
    "PROTOCOL_VERSION",
    "Cancel",
    "Eof",
    "Finished",
    "FinishedStatus",
    "Fragment",
    "Manifest",
    "Message",
    "MetadataMsg",
    "MsgType",
    "Nak",
    "NakKind",
    "Prompt",
    "WireError",
    "decode",
    "encode",
    "max_nak_ranges",
]

PROTOCOL_VERSION = 1
MAGIC = b"SF"
HEADER = struct.Struct(">2sBB16s")
HEADER_SIZE = HEADER.size
MAX_MANIFEST_BYTES = 4096
MAX_FRAGMENTS = 1 << 24  # 16 Mi fragments
MAX_PAYLOAD_BYTES = 1 << 32  # 4 GiB
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,32}$", re.ASCII)
#: A sender name: ASCII letters, digits, '-' and '_' only (it becomes part of a file name in
#: ``accepted/``; 64 ASCII characters keep that name far below any file system's limit).
_SENDER = re.compile(r"^[A-Za-z0-9_-]{1,64}$", re.ASCII)
_HEX = frozenset("0123456789abcdef")
CANCEL_SIGNATURE_BYTES = 64


class WireError(ValueError):
    """Bytes that are not a valid protocol message."""


class MsgType(IntEnum):
    METADATA = 1
    FRAGMENT = 2
    EOF = 3
    NAK = 4
    FINISHED = 5
    PROMPT = 6
    CANCEL = 7


class NakKind(IntEnum):
    IMMEDIATE = 0  # a gap detected during the pass
    EOF_GAPS = 1  # the full gap list after end of file
    PROMPT_GAPS = 2  # the full gap list in answer to a prompt (start of a pass)
    NEED_METADATA = 3  # fragments arrived for a transfer whose metadata is missing


class FinishedStatus(IntEnum):
    ACCEPTED = 0  # hash verified, file in accepted/
    HASH_MISMATCH = 1  # all bytes received, SHA-256 differs: the sender must resend all
    CANCELLED = 2
    REJECTED = 3  # manifest invalid for this receiver (too large, bad fields)


@dataclass(frozen=True)
class Manifest:
    """What a payload is: who sent it, for which round, which experts, and its hash.

    ``size`` [bytes], ``sha256`` hex digest of the payload bytes, ``fragment_size`` [bytes].
    """

    sender: str
    round: int
    size: int
    sha256: str
    fragment_size: int
    expert_ids: tuple[int, ...] = ()
    kind: str = "lora"
    name: str = "payload.safetensors"
    created_s: float = 0.0  # emulated creation time [s]
    protocol_version: int = PROTOCOL_VERSION
    signer: str = ""  # enrolled node whose Ed25519 key signed it ("" unsigned; nodes.signing)
    signature: str = ""  # 128 lowercase hex digits (64 bytes), or ""

    def __post_init__(self) -> None:
        if not isinstance(self.sender, str) or not _SENDER.match(self.sender):
            raise WireError(
                "manifest sender must be 1..64 ASCII letters, digits, '-' or '_' "
                f"(got {str(self.sender)[:80]!r})"
            )
        if not isinstance(self.round, int) or not 0 <= self.round < 2**31:
            raise WireError("manifest round must be a non-negative integer")
        if not isinstance(self.size, int) or not 0 <= self.size <= MAX_PAYLOAD_BYTES:
            raise WireError("manifest size out of range")
        if not isinstance(self.fragment_size, int) or not 16 <= self.fragment_size <= 65535:
            raise WireError("manifest fragment_size must be in 16..65535")
        if self.n_fragments > MAX_FRAGMENTS:
            raise WireError("manifest has too many fragments")
        if (
            not isinstance(self.sha256, str)
            or len(self.sha256) != 64
            or any(c not in "0123456789abcdef" for c in self.sha256)
        ):
            raise WireError("manifest sha256 must be 64 lowercase hex digits")
        if self.protocol_version != PROTOCOL_VERSION:
            raise WireError(f"unsupported protocol version {self.protocol_version}")
        if any(not isinstance(e, int) or not 0 <= e < 65536 for e in self.expert_ids):
            raise WireError("manifest expert_ids must be integers in 0..65535")
        if not _SAFE_NAME.match(self.kind or ""):
            raise WireError("manifest kind must be 1..32 of [A-Za-z0-9._-]")
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 128 or "\x00" in self.name:
            raise WireError("manifest name must be a 1..128 character string")
        if not math.isfinite(self.created_s):
            raise WireError("manifest created_s must be finite")
        if not isinstance(self.signer, str) or (self.signer and not _SENDER.match(self.signer)):
            raise WireError("manifest signer must be 1..64 ASCII letters, digits, '-' or '_'")
        if not isinstance(self.signature, str) or (
            self.signature
            and (len(self.signature) != 128 or any(c not in _HEX for c in self.signature))
        ):
            raise WireError("manifest signature must be 128 lowercase hex digits")
        if bool(self.signer) != bool(self.signature):
            raise WireError("manifest signer and signature come together")

    @property
    def n_fragments(self) -> int:
        """Number of fragments ``ceil(size / fragment_size)`` (at least 1)."""
        return max(1, -(-self.size // self.fragment_size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "round": self.round,
            "size": self.size,
            "sha256": self.sha256,
            "fragment_size": self.fragment_size,
            "expert_ids": list(self.expert_ids),
            "kind": self.kind,
            "name": self.name,
            "created_s": self.created_s,
            "protocol_version": self.protocol_version,
            **({"signer": self.signer, "signature": self.signature} if self.signer else {}),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Validate and build from a decoded JSON object."""
        if not isinstance(d, dict):
            raise WireError("manifest is not an object")
        known = {
            "sender",
            "round",
            "size",
            "sha256",
            "fragment_size",
            "expert_ids",
            "kind",
            "name",
            "created_s",
            "protocol_version",
            "signer",
            "signature",
        }
        extra = set(d) - known
        if extra:
            raise WireError(f"manifest has unknown fields {sorted(extra)}")
        try:
            ids = d.get("expert_ids", [])
            if not isinstance(ids, list):
                raise WireError("manifest expert_ids must be a list")
            created = d.get("created_s", 0.0)
            if isinstance(created, bool) or not isinstance(created, int | float):
                raise WireError("manifest created_s must be a number")
            kind, name = d.get("kind", "lora"), d.get("name", "payload.safetensors")
            if not isinstance(kind, str) or not isinstance(name, str) or len(name) > 128:
                raise WireError("manifest kind/name must be short strings")
            for key in ("round", "size", "fragment_size"):
                if isinstance(d.get(key), bool):
                    raise WireError(f"manifest {key} must be an integer")
            return cls(
                sender=d["sender"],
                round=d["round"],
                size=d["size"],
                sha256=d["sha256"],
                fragment_size=d["fragment_size"],
                expert_ids=tuple(ids),
                kind=kind,
                name=name,
                created_s=float(created),
                protocol_version=d.get("protocol_version", PROTOCOL_VERSION),
                signer=d.get("signer", ""),
                signature=d.get("signature", ""),
            )
        except KeyError as e:
            raise WireError(f"manifest lacks field {e.args[0]!r}") from e
        except (TypeError, OverflowError, ValueError) as e:
            raise WireError(f"manifest field has the wrong type or range: {e}") from e


@dataclass(frozen=True)
class MetadataMsg:
    transfer_id: bytes
    manifest: Manifest


@dataclass(frozen=True)
class Fragment:
    transfer_id: bytes
    index: int
    count: int
    offset: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Eof:
    transfer_id: bytes
    count: int
    size: int
    sha256: bytes  # 32 raw bytes


@dataclass(frozen=True)
class Nak:
    """Missing fragment ranges [start, end) (half-open), lowest first.

    ``more`` is set when the gap list did not fit in one message.
    """

    transfer_id: bytes
    kind: NakKind
    ranges: tuple[tuple[int, int], ...]
    more: bool = False


@dataclass(frozen=True)
class Finished:
    transfer_id: bytes
    status: FinishedStatus
    sha256: bytes  # 32 raw bytes (zeros when unknown)
    accepted_s: float  # emulated time the receiver committed the file [s]


@dataclass(frozen=True)
class Prompt:
    transfer_id: bytes


@dataclass(frozen=True)
class Cancel:
    transfer_id: bytes
    reason: int = 0  # 0 superseded by a newer round, 1 sender abandoned
    signature: bytes = b""  # Ed25519 of the transfer's signer (nodes.signing), or b""


Message = MetadataMsg | Fragment | Eof | Nak | Finished | Prompt | Cancel

_FRAG = struct.Struct(">IIQ")
_EOF = struct.Struct(">IQ32s")
_NAKH = struct.Struct(">BBH")
_RANGE = struct.Struct(">II")
_FIN = struct.Struct(">B32sd")


def max_nak_ranges(frame_bytes: int) -> int:
    """How many ranges fit in a NAK of at most ``frame_bytes`` bytes."""
    return max(1, (frame_bytes - HEADER_SIZE - _NAKH.size) // _RANGE.size)


def _tid(tid: bytes) -> bytes:
    if not isinstance(tid, bytes) or len(tid) != 16:
        raise WireError("transfer id must be 16 bytes")
    return tid


def encode(msg: Message) -> bytes:
    """Serialise one message (the inverse of :func:`decode`)."""
    if isinstance(msg, MetadataMsg):
        body = json.dumps(msg.manifest.to_dict(), separators=(",", ":")).encode()
        if len(body) > MAX_MANIFEST_BYTES:
            raise WireError("manifest too large")
        t = MsgType.METADATA
    elif isinstance(msg, Fragment):
        body = _FRAG.pack(msg.index, msg.count, msg.offset) + msg.data
        t = MsgType.FRAGMENT
    elif isinstance(msg, Eof):
        body = _EOF.pack(msg.count, msg.size, msg.sha256)
        t = MsgType.EOF
    elif isinstance(msg, Nak):
        body = _NAKH.pack(int(msg.kind), int(msg.more), len(msg.ranges)) + b"".join(
            _RANGE.pack(a, b) for a, b in msg.ranges
        )
        t = MsgType.NAK
    elif isinstance(msg, Finished):
        body = _FIN.pack(int(msg.status), msg.sha256, msg.accepted_s)
        t = MsgType.FINISHED
    elif isinstance(msg, Prompt):
        body, t = b"", MsgType.PROMPT
    elif isinstance(msg, Cancel):
        if len(msg.signature) not in (0, CANCEL_SIGNATURE_BYTES):
            raise WireError("CANCEL signature must be 64 bytes")
        body, t = bytes([msg.reason & 0xFF]) + msg.signature, MsgType.CANCEL
    else:
        raise WireError(f"not a protocol message: {type(msg).__name__}")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, int(t), _tid(msg.transfer_id)) + body


def decode(buf: bytes) -> Message:
    """Parse and validate one message; raises :class:`WireError` with the reason."""
    if len(buf) < HEADER_SIZE:
        raise WireError("message shorter than the header")
    magic, version, t, tid = HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise WireError("bad magic")
    if version != PROTOCOL_VERSION:
        raise WireError(f"unsupported protocol version {version}")
    body = bytes(buf[HEADER_SIZE:])
    try:
        mtype = MsgType(t)
    except ValueError:
        raise WireError(f"unknown message type {t}") from None
    if mtype is MsgType.METADATA:
        if len(body) > MAX_MANIFEST_BYTES:
            raise WireError("manifest too large")
        try:
            obj = json.loads(body.decode())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise WireError("manifest is not JSON") from e
        return MetadataMsg(tid, Manifest.from_dict(obj))
    if mtype is MsgType.FRAGMENT:
        if len(body) < _FRAG.size:
            raise WireError("fragment header truncated")
        index, count, offset = _FRAG.unpack_from(body)
        if not 0 < count <= MAX_FRAGMENTS or index >= count:
            raise WireError("fragment index/count out of range")
        return Fragment(tid, index, count, offset, body[_FRAG.size :])
    if mtype is MsgType.EOF:
        if len(body) != _EOF.size:
            raise WireError("EOF has the wrong length")
        count, size, sha = _EOF.unpack(body)
        return Eof(tid, count, size, sha)
    if mtype is MsgType.NAK:
        if len(body) < _NAKH.size:
            raise WireError("NAK header truncated")
        kind, more, n = _NAKH.unpack_from(body)
        if len(body) != _NAKH.size + n * _RANGE.size:
            raise WireError("NAK length does not match its range count")
        try:
            nk = NakKind(kind)
        except ValueError:
            raise WireError(f"unknown NAK kind {kind}") from None
        ranges = tuple(_RANGE.unpack_from(body, _NAKH.size + i * _RANGE.size) for i in range(n))
        prev = -1
        for a, b in ranges:
            if not (prev <= a < b <= MAX_FRAGMENTS):
                raise WireError("NAK ranges must be non-empty, sorted and disjoint")
            prev = b
        return Nak(tid, nk, ranges, bool(more))
    if mtype is MsgType.FINISHED:
        if len(body) != _FIN.size:
            raise WireError("FINISHED has the wrong length")
        status, sha, acc = _FIN.unpack(body)
        try:
            st = FinishedStatus(status)
        except ValueError:
            raise WireError(f"unknown FINISHED status {status}") from None
        if acc != acc or acc in (float("inf"), float("-inf")):
            raise WireError("FINISHED time is not finite")
        return Finished(tid, st, sha, acc)
    if mtype is MsgType.PROMPT:
        if body:
            raise WireError("PROMPT carries no body")
        return Prompt(tid)
    if len(body) not in (1, 1 + CANCEL_SIGNATURE_BYTES):
        raise WireError("CANCEL has the wrong length")
    return Cancel(tid, body[0], body[1:])

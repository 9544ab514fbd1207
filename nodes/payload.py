"""Payload files: manifests for files, and the aggregator's safetensors gate.

A payload is a safetensors file (LoRA tensors of some experts and/or the gate) described by
a :class:`nodes.wire.Manifest`. :func:`validate_safetensors` is what the aggregator runs on
every file it takes from ``accepted/`` before using it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from nodes.wire import Manifest

__all__ = [
    "PayloadError",
    "derived_transfer_id",
    "manifest_for",
    "new_transfer_id",
    "read_safetensors_header",
    "validate_safetensors",
]

MAX_HEADER_BYTES = 16 * 1024 * 1024
_DTYPES = {
    "F64": (np.float64, 8),
    "F32": (np.float32, 4),
    "F16": (np.float16, 2),
    "BF16": (None, 2),
    "I64": (np.int64, 8),
    "I32": (np.int32, 4),
    "I16": (np.int16, 2),
    "I8": (np.int8, 1),
    "U8": (np.uint8, 1),
    "BOOL": (np.bool_, 1),
}


class PayloadError(ValueError):
    """A payload file that must not be used."""


def new_transfer_id() -> bytes:
    """A random 128-bit transfer id."""
    return os.urandom(16)


def derived_transfer_id(m: Manifest, nonce: int = 0) -> bytes:
    """A transfer id derived from what is sent (128 bits of SHA-256 over sender, kind, round,
    the payload's SHA-256 and ``nonce``), so the same inputs give the same bytes on the air
    — and, with the emulator's position-keyed noise, the same emulated records."""
    h = hashlib.sha256(f"satfl-tid|{m.sender}|{m.kind}|{m.round}|{m.sha256}|{int(nonce)}".encode())
    return h.digest()[:16]


def manifest_for(
    data: bytes,
    sender: str,
    round: int,
    fragment_size: int,
    expert_ids: Iterable[int] = (),
    kind: str = "lora",
    name: str = "payload.safetensors",
    created_s: float = 0.0,
) -> Manifest:
    """Manifest of in-memory payload bytes (SHA-256 computed here)."""
    return Manifest(
        sender=sender,
        round=round,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        fragment_size=fragment_size,
        expert_ids=tuple(expert_ids),
        kind=kind,
        name=name,
        created_s=created_s,
    )


def read_safetensors_header(
    path: str | Path, max_header_bytes: int = MAX_HEADER_BYTES
) -> tuple[dict, int]:
    """Parse a safetensors header with bounds checks; returns (header, data offset)."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise PayloadError(f"{p.name}: shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > max_header_bytes or 8 + n > size:
            raise PayloadError(f"{p.name}: header length {n} out of bounds")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise PayloadError(f"{p.name}: header is not JSON") from e
    if not isinstance(header, dict):
        raise PayloadError(f"{p.name}: header is not an object")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise PayloadError(f"{p.name}: tensor {name!r} has a malformed entry")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in _DTYPES:
            raise PayloadError(f"{p.name}: tensor {name!r} has unsupported dtype {dt}")
        if (
            not isinstance(shape, list)
            or any(not isinstance(s, int) or s < 0 for s in shape)
            or not isinstance(offs, list)
            or len(offs) != 2
        ):
            raise PayloadError(f"{p.name}: tensor {name!r} has a bad shape or offsets")
        a, b = offs
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b <= data_len):
            raise PayloadError(f"{p.name}: tensor {name!r} offsets out of the file")
        if b - a != math.prod(shape) * _DTYPES[dt][1]:
            raise PayloadError(f"{p.name}: tensor {name!r} size does not match its shape")
        spans.append((a, b))
    spans.sort()
    for (_, b0), (a1, _) in itertools.pairwise(spans):
        if a1 < b0:
            raise PayloadError(f"{p.name}: tensors overlap")
    return header, 8 + n


def validate_safetensors(
    path: str | Path,
    expected: Mapping[str, tuple[str, tuple[int, ...]]] | None = None,
    sha256: str | None = None,
    max_bytes: int = 1 << 31,
) -> dict[str, np.ndarray]:
    """Check a payload before the aggregator uses it, and load it as NumPy arrays.

    Checks: size ≤ ``max_bytes``; SHA-256 (if given); bounded, well-formed header; tensor
    names, dtypes and shapes equal to ``expected`` (if given: name → (dtype, shape));
    every floating value finite. Raises :class:`PayloadError` naming the problem.
    """
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise PayloadError(f"{p.name}: {size} bytes exceeds the limit of {max_bytes}")
    blob = p.read_bytes()
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise PayloadError(f"{p.name}: SHA-256 does not match the manifest")
    header, off = read_safetensors_header(p)
    names = {k for k in header if k != "__metadata__"}
    if expected is not None:
        if names != set(expected):
            missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
            raise PayloadError(
                f"{p.name}: tensor names differ (missing {missing[:5]}, unexpected {extra[:5]})"
            )
        for name, (dt, shape) in expected.items():
            if header[name]["dtype"] != dt or tuple(header[name]["shape"]) != tuple(shape):
                raise PayloadError(
                    f"{p.name}: tensor {name!r} is {header[name]['dtype']}"
                    f"{header[name]['shape']}, expected {dt}{list(shape)}"
                )
    out: dict[str, np.ndarray] = {}
    for name in sorted(names):
        info = header[name]
        a, b = info["data_offsets"]
        raw = blob[off + a : off + b]
        npdt = _DTYPES[info["dtype"]][0]
        if npdt is None:  # bf16 → f32 by widening the bits
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(npdt).newbyteorder("<"))
        arr = arr.reshape(info["shape"])
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise PayloadError(f"{p.name}: tensor {name!r} has non-finite values")
        out[name] = arr
    return out

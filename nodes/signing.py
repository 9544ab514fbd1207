"""End-to-end authenticity of payloads: Ed25519 signatures over manifests and cancels.

The link and the emulator are an untrusted bit pipe. A sender signs each manifest with its
node key (:mod:`flowgraphs.keys`); the receiver verifies it before it opens, supersedes or
commits anything, and the satellite again before aggregation. The signed bytes are::

    b"satfl-manifest/1\\x00" | transfer_id (16 bytes) | canonical JSON of the manifest

where the canonical JSON is ``Manifest.to_dict()`` without ``signature`` (``signer``
included), keys sorted, no spaces. So the signature covers the transfer id, sender, kind,
round, size, SHA-256, fragment size, expert ids, name and creation time: any change to any
of them, or replaying the manifest under another transfer id, fails verification. A CANCEL
is signed over ``b"satfl-cancel/1\\x00" | transfer_id | reason`` by the transfer's signer.

A signer may sign for itself and for its devices: sender ``S`` is covered by signer ``N``
when ``S == N`` or ``S`` starts with ``N + "-"`` (``munich`` signs for ``munich-d0``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from flowgraphs.keys import Keyring
from nodes.wire import Manifest

__all__ = [
    "cancel_bytes",
    "manifest_bytes",
    "manifest_problem",
    "sign_cancel",
    "sign_manifest",
    "signed",
    "signer_covers",
]

_MANIFEST = b"satfl-manifest/1\x00"
_CANCEL = b"satfl-cancel/1\x00"


def manifest_bytes(tid: bytes, m: Manifest) -> bytes:
    """The bytes a manifest's signature covers (see the module docstring)."""
    d = m.to_dict()
    d.pop("signature", None)
    d["signer"] = m.signer
    return _MANIFEST + tid + json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def cancel_bytes(tid: bytes, reason: int) -> bytes:
    """The bytes a CANCEL's signature covers."""
    return _CANCEL + tid + bytes([reason & 0xFF])


def signer_covers(signer: str, sender: str) -> bool:
    """Whether node ``signer`` may sign for ``sender`` (itself, or ``<signer>-...``)."""
    return bool(signer) and (sender == signer or sender.startswith(signer + "-"))


def sign_manifest(tid: bytes, m: Manifest, keys: Keyring) -> Manifest:
    """``m`` signed by this keyring's node for transfer ``tid``."""
    me = keys._mine().name
    if not signer_covers(me, m.sender):
        raise ValueError(f"node {me!r} may not sign for sender {m.sender!r}")
    unsigned = replace(m, signer=me, signature="0" * 128)
    sig = keys.sign(manifest_bytes(tid, unsigned))
    return replace(m, signer=me, signature=sig.hex())


def sign_cancel(tid: bytes, reason: int, keys: Keyring) -> bytes:
    """The 64-byte signature of a CANCEL of ``tid`` by this keyring's node."""
    return keys.sign(cancel_bytes(tid, reason))


def manifest_problem(
    tid: bytes, m: Manifest, keys: Keyring, signer: str | None = None
) -> str | None:
    """Why ``m`` is not authentic for ``tid`` (None when it is): unsigned, an unenrolled
    signer, a signer that may not sign for the sender, another ``signer`` than required, or a
    signature that does not verify."""
    if not m.signer:
        return "unsigned manifest"
    if signer is not None and m.signer != signer:
        return f"signed by {m.signer!r}, expected {signer!r}"
    if m.signer not in keys.nodes:
        return f"signer {m.signer!r} is not enrolled"
    if not signer_covers(m.signer, m.sender):
        return f"signer {m.signer!r} may not sign for sender {m.sender!r}"
    if not keys.verify(m.signer, manifest_bytes(tid, m), bytes.fromhex(m.signature)):
        return "bad signature"
    return None


def signed(
    tid: bytes, m: Manifest, keys: Keyring | None
) -> tuple[Manifest, Callable[[bytes, int], bytes] | None]:
    """(the manifest to send, the CANCEL signer) for a :class:`nodes.sender.SenderEngine`:
    ``m`` signed and a signer with ``keys``; ``m`` unchanged and None without."""
    if keys is None:
        return m, None
    return sign_manifest(tid, m, keys), lambda t, r: sign_cancel(t, r, keys)

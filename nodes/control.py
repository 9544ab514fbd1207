"""Control messages between the satellite and the cluster nodes (not payload data).

The satellite binds a ROUTER, each cluster connects a DEALER whose identity is its id. A
message is one JSON frame ``{"v": 1, "type": ..., ...}``, optionally followed by one binary
frame (a downloaded model payload). :func:`encode`/:func:`decode` are the only codec.
Uploads never travel here: they cross the channel emulator (docs/protocol.md).

========== ============ =================================================================
type       direction    fields
========== ============ =================================================================
hello      cluster→sat  cluster
assign     sat→cluster  cycle, assignment {cluster index: [expert ids]}
upload     sat→cluster  cycle, stage, t_start, deadline (emulated s; LOS of the window)
uploaded   cluster→sat  cycle, stage, t_end, records [upload records]
train      sat→cluster  cycle, mode, t_start
trained    cluster→sat  cycle, mode, t_end, wall_s, loss, peak_memory_bytes
download   sat→cluster  cycle, stage, t  + a binary frame (the payload, safetensors)
downloaded cluster→sat  cycle, stage
stop       sat→cluster  —
error      cluster→sat  message
========== ============ =================================================================
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CONTROL_VERSION", "TYPES", "ControlError", "decode", "encode"]

CONTROL_VERSION = 1
TYPES = (
    "hello",
    "assign",
    "upload",
    "uploaded",
    "train",
    "trained",
    "download",
    "downloaded",
    "stop",
    "error",
)
_MAX_JSON = 1 << 20


class ControlError(ValueError):
    """A malformed control message."""


def encode(mtype: str, blob: bytes | None = None, **fields: Any) -> list[bytes]:
    """Frames of one control message."""
    if mtype not in TYPES:
        raise ControlError(f"unknown control message type {mtype!r}")
    frames = [json.dumps({"v": CONTROL_VERSION, "type": mtype, **fields}).encode()]
    if blob is not None:
        frames.append(blob)
    return frames


def decode(frames: list[bytes]) -> tuple[dict[str, Any], bytes | None]:
    """Parse the frames of one message (after any ROUTER identity frame)."""
    if not frames or len(frames) > 2:
        raise ControlError(f"expected 1 or 2 frames, got {len(frames)}")
    if len(frames[0]) > _MAX_JSON:
        raise ControlError("control message too large")
    try:
        msg = json.loads(frames[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ControlError("control message is not JSON") from e
    if not isinstance(msg, dict) or msg.get("v") != CONTROL_VERSION:
        raise ControlError("control message has no supported version")
    if msg.get("type") not in TYPES:
        raise ControlError(f"unknown control message type {msg.get('type')!r}")
    return msg, (frames[1] if len(frames) == 2 else None)

"""CRC-32 check and delivery stamp: the last stage before a PDU leaves the emulator."""

from __future__ import annotations

import time
from typing import Any

from flowgraphs import frame
from flowgraphs import pdu as wire
from flowgraphs.burst_stage import CTL, BurstStage, Dropped

__all__ = ["CrcCheck"]


class CrcCheck(BurstStage):
    """Checks and strips each PDU's CRC-32 (as ``digital.crc_check`` does, with the same byte
    order), drops and counts failures (``crc_fail``), stamps ``crc_ok`` and ``wall_proc_s``
    (wall-clock time since the link clock built the frame [s]) and removes the internal
    ``_``-prefixed keys.

    The link clock's safe-time markers leave here as public control PDUs on ``out``:
    meta ``{"cmd": "safe", "t": t, "link": id}``, empty payload — no PDU delivered after the
    marker has ``rx_end`` < t (docs/emulator.md, "Conservative synchronisation").
    """

    def __init__(self) -> None:
        super().__init__("satfl_crc_check", "u8", "u8")

    def control(self, meta: dict[str, Any]) -> list[dict[str, Any]]:
        if meta.get(CTL) == "safe":
            return [{wire.KEY_CMD: "safe", "t": float(meta["t"]), wire.KEY_LINK: meta.get("link")}]
        return []

    def process(self, meta: dict[str, Any], data: Any) -> tuple[dict[str, Any], Any]:
        body = bytes(data)
        if not frame.check_crc32(body):
            self.count("pdus_lost")
            raise Dropped("crc_fail")
        wall_t0 = meta.get("_wall_t0")
        out = {k: v for k, v in meta.items() if not str(k).startswith("_")}
        out[wire.KEY_CRC_OK] = True
        if wall_t0 is not None:
            out[wire.KEY_WALL_PROC_S] = time.monotonic() - float(wall_t0)
        return out, body[: -frame.CRC_LEN]

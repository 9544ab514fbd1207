"""Encapsulation of PDUs into frame data fields, GSE-style (pure Python/NumPy).

A data field (the information word of one LDPC codeword) carries a sequence of packets, then
its CRC-32::

    | packet | packet | ... | padding (zeros, < 5 bytes) | CRC-32 |

    packet = | S:1 E:1 length:14 | pdu_id:16 | length bytes of the PDU |

``S`` marks the packet that carries a PDU's first byte, ``E`` the one with its last; a PDU
too long for the space left in a frame continues in the next frame(s) (fragmentation, as the
Generic Stream Encapsulation of DVB, ETSI TS 102 606, does). A header word of zero marks the
start of padding. Every PDU carries its own CRC-32 (appended upstream by
``digital.crc_append``), which the receiver checks after reassembly; the frame counter in the
PL header lets the reassembler drop a partial PDU whose continuation frame was lost.

Packing happens in the emulator's link clock (:class:`flowgraphs.burst_scheduler`), which
decides per frame what it carries; :class:`Reassembler` undoes it at the receiver.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "PACKET_HEADER",
    "Piece",
    "Reassembler",
    "pack",
    "packed_size",
    "unpack",
]

PACKET_HEADER = 4
_MAX_LEN = (1 << 14) - 1
_S, _E = 0x8000, 0x4000


@dataclass(frozen=True)
class Piece:
    """One packet of a data field: ``data`` of PDU ``pdu_id``; ``start``/``end`` flags."""

    pdu_id: int
    data: bytes
    start: bool
    end: bool


def packed_size(n_bytes: int) -> int:
    """Data field bytes that ``n_bytes`` of one PDU occupy unfragmented (header + data)."""
    return PACKET_HEADER + n_bytes


def pack(items: Iterable[tuple[int, bytes, int]], capacity: int) -> tuple[bytes, list[Piece]]:
    """Fill up to ``capacity`` bytes (excluding the CRC) from PDUs in order.

    Parameters
    ----------
    items : ``(pdu_id, body, offset)`` in transmission order; ``offset`` bytes of ``body`` went
        out in earlier frames
    capacity : bytes available for packets [bytes]

    Returns
    -------
    packets : the packet bytes (no padding; the caller appends the CRC-32, and padding only
        where the code requires a fixed length)
    pieces : what went into this frame, in order
    """
    out = bytearray()
    pieces: list[Piece] = []
    for pdu_id, body, offset in items:
        room = capacity - len(out) - PACKET_HEADER
        if room < 1:
            break
        n = min(room, len(body) - offset, _MAX_LEN)
        if n <= 0:
            continue
        start, end = offset == 0, offset + n == len(body)
        word = n | (_S if start else 0) | (_E if end else 0)
        out += struct.pack(">HH", word, pdu_id & 0xFFFF) + body[offset : offset + n]
        pieces.append(Piece(pdu_id & 0xFFFF, body[offset : offset + n], start, end))
        if not end:
            break  # the frame is full: this PDU continues in the next frame
    return bytes(out), pieces


def unpack(packets: bytes) -> list[Piece] | None:
    """Split the packet area of a data field (CRC already checked and removed).

    Returns None if the packet structure is inconsistent (a length beyond the field).
    """
    pieces: list[Piece] = []
    i = 0
    while i + PACKET_HEADER <= len(packets):
        word, pid = struct.unpack_from(">HH", packets, i)
        if word == 0:
            break  # padding
        n = word & _MAX_LEN
        i += PACKET_HEADER
        if n == 0 or i + n > len(packets):
            return None
        pieces.append(Piece(pid, packets[i : i + n], bool(word & _S), bool(word & _E)))
        i += n
    return pieces


@dataclass
class Reassembler:
    """Rebuilds PDUs from the pieces of consecutive frames of one link.

    Feed each correctly decoded frame with :meth:`push` in arrival order; a gap in the 5-bit
    frame counter (a lost frame) discards a PDU that was being reassembled. Counters:
    ``completed``, ``dropped_partial`` (a partial PDU whose continuation was lost),
    ``orphan`` (a continuation without its start).
    """

    _pid: int | None = None
    _buf: bytearray = field(default_factory=bytearray)
    _last_counter: int | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: {"completed": 0, "dropped_partial": 0, "orphan": 0}
    )

    def push(self, counter: int, pieces: list[Piece]) -> list[tuple[int, bytes]]:
        """The PDUs ``(pdu_id, body)`` completed by this frame."""
        if self._last_counter is not None and (self._last_counter + 1) % 32 != counter % 32:
            self._drop()  # a frame in between was lost
        self._last_counter = counter % 32
        done: list[tuple[int, bytes]] = []
        for p in pieces:
            if p.start:
                self._drop()
                self._pid, self._buf = p.pdu_id, bytearray(p.data)
            elif self._pid is None or self._pid != p.pdu_id:
                self.counters["orphan"] += 1
                self._drop()
                continue
            else:
                self._buf += p.data
            if p.end:
                done.append((p.pdu_id, bytes(self._buf)))
                self.counters["completed"] += 1
                self._pid, self._buf = None, bytearray()
        return done

    def _drop(self) -> None:
        if self._pid is not None:
            self.counters["dropped_partial"] += 1
        self._pid, self._buf = None, bytearray()

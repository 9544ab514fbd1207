"""The burst frame format of the emulator's modem (pure NumPy, no GNU Radio).

One PDU is one burst. In transmission order, at the symbol rate :math:`R_s`::

    | preamble 64 | ASM 32 | header 3×32 | data D | pilots P | data D | ... | pilots P |

* **preamble**: 64 fixed pseudo-random BPSK symbols, used for burst detection, coarse and fine
  frequency, timing and the first channel estimate;
* **ASM**: the CCSDS attached sync marker ``0x1ACFFC1D`` (32 BPSK symbols); it confirms frame
  sync (at most :data:`ASM_MAX_ERRORS` bit errors) and, being known, fixes the phase;
* **header**: 32 bits, ``version:4 | modulation:4 | length:16 | crc8:8`` (CRC-8 poly 0x07
  over the first three bytes), sent three times (soft repetition combining);
* **data**: the PDU body (payload followed by its CRC-32, appended upstream by
  ``digital.crc_append``), additively scrambled with the CCSDS randomiser
  (:math:`x^8+x^7+x^5+x^3+1`, all-ones seed), mapped to the burst's constellation (Gray);
* **pilots**: :data:`PILOT_LEN` known BPSK symbols after every :data:`PILOT_SPACING` data
  symbols and once at the end; the receiver tracks phase and gain across the burst from them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ASM",
    "ASM_MAX_ERRORS",
    "CRC_LEN",
    "HEADER_BITS",
    "HEADER_REPEAT",
    "MAX_BODY_BYTES",
    "MODULATION_IDS",
    "PILOTS",
    "PILOT_LEN",
    "PILOT_SPACING",
    "PREAMBLE",
    "FrameLayout",
    "append_crc32",
    "bits_to_bytes",
    "bytes_to_bits",
    "check_crc32",
    "crc8",
    "frame_layout",
    "pack_header",
    "scramble",
    "unpack_header",
]

FRAME_VERSION = 1
#: modulation name -> 4-bit id in the header
MODULATION_IDS: dict[str, int] = {"bpsk": 1, "qpsk": 2, "8psk": 3, "16qam": 4}
#: bits per symbol of each modulation
BITS_PER_SYMBOL: dict[str, int] = {"bpsk": 1, "qpsk": 2, "8psk": 3, "16qam": 4}

CRC_LEN = 4
#: largest body (payload + CRC-32) the 16-bit length field carries [bytes]
MAX_BODY_BYTES = 0xFFFF
HEADER_BITS = 32
HEADER_REPEAT = 3
PILOT_SPACING = 256
PILOT_LEN = 16
ASM_MAX_ERRORS = 4


def _bpsk(bits: np.ndarray) -> np.ndarray:
    return (1.0 - 2.0 * bits.astype(np.float32)).astype(np.complex64)


def bytes_to_bits(data: bytes | np.ndarray) -> np.ndarray:
    """MSB-first bits of ``data``, uint8 array of length 8·len."""
    return np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    """Inverse of :func:`bytes_to_bits` (length a multiple of 8)."""
    return np.packbits(bits.astype(np.uint8)).tobytes()


_rng = np.random.RandomState(0x5A7F1)
#: 64 preamble symbols (fixed pseudo-random BPSK)
PREAMBLE = _bpsk(_rng.randint(0, 2, 64))
#: CCSDS attached sync marker 0x1ACFFC1D as BPSK (bit 0 -> +1)
ASM_BITS = bytes_to_bits(bytes.fromhex("1ACFFC1D"))
ASM = _bpsk(ASM_BITS)
#: pilot block symbols
PILOTS = _bpsk(_rng.randint(0, 2, PILOT_LEN))
#: all symbols known to the receiver before the header
KNOWN = np.concatenate([PREAMBLE, ASM])


def _ccsds_randomiser(n_bytes: int) -> np.ndarray:
    state = 0xFF
    out = np.empty(255 * 8, dtype=np.uint8)
    for i in range(out.size):
        out[i] = (state >> 7) & 1
        fb = ((state >> 7) ^ (state >> 5) ^ (state >> 3) ^ state) & 1
        state = ((state << 1) | fb) & 0xFF
    reps = -(-n_bytes * 8 // out.size)
    return np.tile(out, reps)[: n_bytes * 8]


_PN = _ccsds_randomiser(MAX_BODY_BYTES)


def scramble(bits: np.ndarray) -> np.ndarray:
    """XOR ``bits`` with the CCSDS randomiser sequence (its own inverse)."""
    return bits ^ _PN[: bits.size]


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, init 0 (ATM HEC without the coset)."""
    c = 0
    for b in data:
        c ^= b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
    return c


def append_crc32(payload: bytes) -> bytes:
    """payload ‖ CRC-32 (IEEE 802.3, little-endian), as ``digital.crc_append`` appends."""
    return payload + zlib.crc32(payload).to_bytes(4, "little")


def check_crc32(body: bytes) -> bool:
    """True when the last 4 bytes of ``body`` are the CRC-32 of the rest."""
    if len(body) < CRC_LEN:
        return False
    return zlib.crc32(body[:-CRC_LEN]).to_bytes(4, "little") == body[-CRC_LEN:]


def pack_header(modulation: str, n_body: int) -> np.ndarray:
    """Header bits (32, uint8) for a body of ``n_body`` bytes."""
    if not 0 < n_body <= MAX_BODY_BYTES:
        raise ValueError(f"body length {n_body} outside 1..{MAX_BODY_BYTES}")
    b = bytes([(FRAME_VERSION << 4) | MODULATION_IDS[modulation], n_body >> 8, n_body & 0xFF])
    return bytes_to_bits(b + bytes([crc8(b)]))


def unpack_header(bits: np.ndarray) -> tuple[str, int] | None:
    """(modulation, body length) from 32 header bits, or None if the header is invalid."""
    b = bits_to_bytes(bits)
    if crc8(b[:3]) != b[3] or b[0] >> 4 != FRAME_VERSION:
        return None
    mod_id = b[0] & 0x0F
    names = [k for k, v in MODULATION_IDS.items() if v == mod_id]
    n_body = (b[1] << 8) | b[2]
    if not names or n_body == 0:
        return None
    return names[0], n_body


@dataclass(frozen=True)
class FrameLayout:
    """Symbol layout of one frame.

    Attributes
    ----------
    n_data : data symbols
    n_pilot_blocks : pilot blocks (one after every ``PILOT_SPACING`` data symbols, one at the end)
    n_symbols : total symbols of the frame
    data_idx : indices (into the frame) of the data symbols
    pilot_idx : (n_pilot_blocks, PILOT_LEN) indices of the pilot symbols
    payload_start : index of the first symbol after the header
    """

    n_data: int
    n_pilot_blocks: int
    n_symbols: int
    data_idx: np.ndarray
    pilot_idx: np.ndarray
    payload_start: int


def frame_layout(modulation: str, n_body: int) -> FrameLayout:
    """Layout of a frame carrying ``n_body`` bytes with ``modulation``."""
    k = BITS_PER_SYMBOL[modulation]
    n_data = -(-8 * n_body // k)
    n_blocks = -(-n_data // PILOT_SPACING)
    start = KNOWN.size + HEADER_BITS * HEADER_REPEAT
    seg = PILOT_SPACING + PILOT_LEN
    pos = np.arange(n_data)
    data_idx = start + (pos // PILOT_SPACING) * seg + pos % PILOT_SPACING
    # pilots follow each (possibly short, the last) data segment
    seg_len = np.full(n_blocks, PILOT_SPACING)
    seg_len[-1] = n_data - PILOT_SPACING * (n_blocks - 1)
    pilot_start = start + np.arange(n_blocks) * seg + seg_len
    pilot_idx = pilot_start[:, None] + np.arange(PILOT_LEN)[None, :]
    n_symbols = int(pilot_idx[-1, -1]) + 1
    return FrameLayout(n_data, n_blocks, n_symbols, data_idx, pilot_idx, start)

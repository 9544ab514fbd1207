"""The physical-layer frame of the emulator's coded modem (pure NumPy, no GNU Radio).

One burst carries one LDPC codeword (a FECFRAME of n = 64800 bits, shortened when the data
field is not full). In transmission order, at the symbol rate :math:`R_s`::

    | preamble 256 | header 512 | data N_p | pilots 36 | data N_p | pilots 36 | ...
        ... | data ≤N_p | pilots 36 |

* **preamble**: :data:`PREAMBLE_LEN` fixed pseudo-random BPSK symbols: burst detection
  (segment-wise correlation, insensitive to a carrier offset up to ±R_s/(2·32)), timing,
  frequency and the first phase and gain estimate;
* **header** (the PL signalling): 32 bits ``modcod:6 | df_len:13 | counter:5 | crc8:8``, as 4
  bytes, each byte encoded by the (128, 8) first-order Reed–Muller (biorthogonal) code —
  7 bits select a Walsh–Hadamard row, 1 bit its sign — and scrambled by a fixed PN sequence;
  decoded with a fast Hadamard transform (maximum likelihood). At :math:`E_s/N_0 = -3` dB a
  byte sees :math:`E_b/N_0 = -3 + 10\\log_{10}(128/8) = 9` dB, so the header is far more
  robust than the lowest MODCOD;
* **data**: the transmitted codeword bits (the data field's ``8·df_len`` information bits,
  then the n − k parity bits; the shortened information bits are zero and not sent), bit-
  interleaved (:mod:`flowgraphs.interleaver`) and mapped to the MODCOD's constellation;
* **pilots**: :data:`PILOT_LEN` known BPSK symbols after every ``pilot_spacing`` data symbols
  and once at the end, for phase, frequency and gain tracking (spacing rule in
  :func:`pilot_spacing_for`).

The **data field** (the LDPC information word) is ``packets ‖ CRC-32`` (packets:
:mod:`flowgraphs.gse`), scrambled with the CCSDS randomiser before encoding.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CRC_LEN",
    "HEADER_BITS",
    "HEADER_SYMBOLS",
    "MAX_DF_BYTES",
    "PILOTS",
    "PILOT_LEN",
    "PREAMBLE",
    "PREAMBLE_LEN",
    "PREAMBLE_SEGMENTS",
    "FrameLayout",
    "Header",
    "append_crc32",
    "bits_to_bytes",
    "bytes_to_bits",
    "check_crc32",
    "crc8",
    "decode_header",
    "encode_header",
    "frame_layout",
    "pilot_spacing_for",
    "scramble_bytes",
]

CRC_LEN = 4
PREAMBLE_LEN = 256
PREAMBLE_SEGMENTS = 8  # segments of 32 symbols for the frequency-robust detector
HEADER_BITS = 32
HEADER_SYMBOLS = 4 * 128
PILOT_LEN = 36
#: largest data field the 13-bit length carries [bytes]
MAX_DF_BYTES = (1 << 13) - 1
MODCOD_ID_BITS = 6
COUNTER_BITS = 5


def _bpsk(bits: np.ndarray) -> np.ndarray:
    return (1.0 - 2.0 * bits.astype(np.float32)).astype(np.complex64)


def bytes_to_bits(data: bytes | np.ndarray) -> np.ndarray:
    """MSB-first bits of ``data``, uint8 array of length 8·len."""
    return np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    """Inverse of :func:`bytes_to_bits` (length a multiple of 8)."""
    return np.packbits(bits.astype(np.uint8)).tobytes()


_rng = np.random.RandomState(0x5A7F1)
#: the preamble (fixed pseudo-random BPSK)
PREAMBLE = _bpsk(_rng.randint(0, 2, PREAMBLE_LEN))
#: the pilot block symbols
PILOTS = _bpsk(_rng.randint(0, 2, PILOT_LEN))
#: the header's scrambling sequence (±1)
HEADER_PN = (1.0 - 2.0 * _rng.randint(0, 2, HEADER_SYMBOLS)).astype(np.float32)


def _sylvester(order: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < order:
        h = np.block([[h, h], [h, -h]])
    return h


#: Sylvester–Hadamard matrix of order 128 (±1): H[i, j] = (−1)^popcount(i & j)
HADAMARD_128 = _sylvester(128)


def _ccsds_randomiser(n_bytes: int) -> np.ndarray:
    state = 0xFF
    out = np.empty(255 * 8, dtype=np.uint8)
    for i in range(out.size):
        out[i] = (state >> 7) & 1
        fb = ((state >> 7) ^ (state >> 5) ^ (state >> 3) ^ state) & 1
        state = ((state << 1) | fb) & 0xFF
    reps = -(-n_bytes * 8 // out.size)
    return np.packbits(np.tile(out, reps)[: n_bytes * 8])


_PN_BYTES = _ccsds_randomiser(MAX_DF_BYTES)


def scramble_bytes(data: bytes | np.ndarray) -> np.ndarray:
    """XOR with the CCSDS randomiser (:math:`x^8+x^7+x^5+x^3+1`, all-ones seed); its own
    inverse. Returns a uint8 array."""
    a = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    return a ^ _PN_BYTES[: a.size]


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


@dataclass(frozen=True)
class Header:
    """The PL signalling of one frame.

    Attributes
    ----------
    modcod_id : MODCOD index (:mod:`flowgraphs.modcod`), 0 … 63
    df_len : data field length [bytes] (packets + CRC-32), 1 … :data:`MAX_DF_BYTES`
    counter : frame counter modulo 32 (gaps tell the reassembler a frame was lost)
    """

    modcod_id: int
    df_len: int
    counter: int

    def to_bytes(self) -> bytes:
        if not 0 <= self.modcod_id < (1 << MODCOD_ID_BITS):
            raise ValueError(f"modcod id {self.modcod_id} outside 0..63")
        if not 0 < self.df_len <= MAX_DF_BYTES:
            raise ValueError(f"data field length {self.df_len} outside 1..{MAX_DF_BYTES}")
        word = (self.modcod_id << 26) | (self.df_len << 13) | ((self.counter & 31) << 8)
        head = (word >> 8).to_bytes(3, "big")
        return head + bytes([crc8(head)])


def encode_header(h: Header) -> np.ndarray:
    """The 512 header symbols (BPSK, complex64) of ``h``.

    .. math::
        c_b = (1 - 2 s_b)\\, H_{128}[i_b], \\quad s_b = \\text{bit 7 of byte } b,\\;
        i_b = \\text{bits 6..0}, \\qquad x = (c_0 ‖ c_1 ‖ c_2 ‖ c_3) \\odot p
    """
    rows = []
    for byte in h.to_bytes():
        rows.append((1.0 - 2.0 * (byte >> 7)) * HADAMARD_128[byte & 0x7F])
    return (np.concatenate(rows) * HEADER_PN).astype(np.complex64)


def decode_header(soft: np.ndarray) -> Header | None:
    """ML decoding of the 512 real soft header values (positive ≈ +1); None if the CRC-8 fails.

    Each 128-value block is correlated with every Hadamard row (a fast transform in effect,
    here one 128×128 product); the row with the largest |correlation| gives 7 bits and the
    sign of that correlation the eighth.
    """
    y = (np.asarray(soft, dtype=np.float32).reshape(4, 128) * HEADER_PN.reshape(4, 128)) @ (
        HADAMARD_128
    )
    idx = np.argmax(np.abs(y), axis=1)
    sign = y[np.arange(4), idx] < 0
    b = bytes(int(i) | (int(s) << 7) for i, s in zip(idx, sign, strict=True))
    if crc8(b[:3]) != b[3]:
        return None
    word = int.from_bytes(b[:3], "big") << 8
    df_len = (word >> 13) & MAX_DF_BYTES
    if df_len == 0:
        return None
    return Header(word >> 26, df_len, (word >> 8) & 31)


def pilot_spacing_for(symbol_rate_hz: float, max_doppler_spread_hz: float) -> int:
    """Data symbols between pilot blocks: the rule the modem uses.

    .. math::
        N_p = 90 \\left\\lfloor \\frac{\\min(1440,\\; R_s / (10 f_D))}{90} \\right\\rfloor,
        \\quad N_p \\ge 90

    * ≤ 1440 symbols (DVB-S2's pilot period): the phase drift between pilot blocks from the
      residual frequency error of the preamble estimate stays well below π, so the pilot
      phases unwrap unambiguously down to the lowest MODCOD's Es/N0;
    * ≤ :math:`1/(10 f_D)` seconds: the fading gain is sampled ten times faster than its
      Doppler spread f_D, so linear interpolation between pilots errs by at most
      :math:`(\\pi f_D T_p)^2/2 \\approx 5\\,\\%` in amplitude (−26 dB).

    Parameters
    ----------
    symbol_rate_hz : R_s [Hz]
    max_doppler_spread_hz : f_D of the small-scale fading [Hz] (0: no fading)
    """
    limit = 1440.0
    if max_doppler_spread_hz > 0:
        limit = min(limit, symbol_rate_hz / (10.0 * max_doppler_spread_hz))
    return max(90, 90 * int(limit // 90))


@dataclass(frozen=True)
class FrameLayout:
    """Symbol layout of one frame.

    Attributes
    ----------
    n_data : data symbols
    n_pilot_blocks : pilot blocks (after every ``spacing`` data symbols, and at the end)
    n_symbols : total symbols of the frame
    header_start : index of the first header symbol
    data_idx : indices (into the frame) of the data symbols
    pilot_idx : (n_pilot_blocks, PILOT_LEN) indices of the pilot symbols
    """

    n_data: int
    n_pilot_blocks: int
    n_symbols: int
    header_start: int
    data_idx: np.ndarray
    pilot_idx: np.ndarray

    @property
    def overhead(self) -> float:
        """Fraction of the frame's symbols that carry no data."""
        return 1.0 - self.n_data / self.n_symbols


def frame_layout(n_data: int, spacing: int) -> FrameLayout:
    """Layout of a frame with ``n_data`` data symbols and pilots every ``spacing`` of them."""
    if n_data < 1 or spacing < 1:
        raise ValueError("a frame needs data symbols and a pilot spacing >= 1")
    n_blocks = math.ceil(n_data / spacing)
    start = PREAMBLE_LEN + HEADER_SYMBOLS
    seg = spacing + PILOT_LEN
    pos = np.arange(n_data)
    data_idx = start + (pos // spacing) * seg + pos % spacing
    seg_len = np.full(n_blocks, spacing)
    seg_len[-1] = n_data - spacing * (n_blocks - 1)
    pilot_start = start + np.arange(n_blocks) * seg + seg_len
    pilot_idx = pilot_start[:, None] + np.arange(PILOT_LEN)[None, :]
    n_symbols = int(pilot_idx[-1, -1]) + 1
    return FrameLayout(n_data, n_blocks, n_symbols, PREAMBLE_LEN, data_idx, pilot_idx)

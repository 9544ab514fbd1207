"""Reference encoder/decoder for the PDUs on the channel emulator's ZeroMQ ports.

A PDU is GNU Radio's ``pmt.cons(meta_dict, u8vector)`` in PMT's own serialisation
(``pmt.serialize_str``), so a GNU Radio flowgraph and a node without GNU Radio speak the
same bytes. This module implements the subset of the PMT serialisation the testbed uses,
in pure Python, byte-compatible with GNU Radio 3.10 (checked against ``pmt`` in tests):

======  ===========================  =====================================================
tag     PMT type                     layout after the tag byte (big endian)
======  ===========================  =====================================================
0x00    ``PMT_T``                    --
0x01    ``PMT_F``                    --
0x02    symbol                       u16 length, UTF-8 bytes
0x03    int32 (``from_long``)        i32
0x04    double                       f64
0x05    complex                      f64 real, f64 imag
0x06    ``PMT_NIL``                  --
0x07    pair                         car, cdr
0x08    vector                       u32 n, n items
0x09    dict                         first (key . value) pair, then the rest as a dict,
                                     ending in nil
0x0a    uniform vector               u8 type, u32 n, u8 npad, npad pad bytes, data
0x0b    uint64                       u64
0x0c    tuple                        u32 n, n items
0x0d    int64                        i64
======  ===========================  =====================================================

Anything else is rejected with :class:`PduError`; so are truncated buffers, trailing bytes,
nesting deeper than :data:`MAX_DEPTH` and PDUs larger than the caller's limit.
"""

from __future__ import annotations

import math
import struct
from typing import Any

__all__ = [
    "KEY_AIRTIME_S",
    "KEY_CMD",
    "KEY_CRC_OK",
    "KEY_DOPPLER_HZ",
    "KEY_DOPPLER_RATE_HZ_PER_S",
    "KEY_DST",
    "KEY_ELEVATION_DEG",
    "KEY_LINK",
    "KEY_MODCOD",
    "KEY_MODULATION",
    "KEY_PROP_DELAY_S",
    "KEY_RX_END",
    "KEY_SEQ",
    "KEY_SNR_DB",
    "KEY_SRC",
    "KEY_TX_END",
    "KEY_TX_START",
    "KEY_TX_TIME",
    "KEY_WALL_PROC_S",
    "MAX_DEPTH",
    "PduError",
    "decode_pdu",
    "decode_pmt",
    "encode_pdu",
    "encode_pmt",
    "finite_float",
]

# Metadata keys (symbols in the PMT dict). Inbound, set by the sender:
KEY_TX_TIME = "tx_time"  # requested emulated transmit time [s since scenario epoch]
KEY_SEQ = "seq"  # sender's sequence number (uint64), echoed
KEY_SRC = "src"  # sender id (symbol), echoed
KEY_DST = "dst"  # receiver id (symbol), echoed
KEY_CMD = "cmd"  # control request instead of data (e.g. "stats")
# Set by the emulator on delivered PDUs and status reports:
KEY_LINK = "link"  # link id (symbol)
KEY_TX_START = "tx_start"  # emulated burst start [s] = max(tx_time, link free)
KEY_TX_END = "tx_end"  # emulated end of the radiated burst [s]
KEY_RX_END = "rx_end"  # emulated end of reception [s] = tx_end + propagation delay
KEY_AIRTIME_S = "airtime_s"  # burst duration [s] = n_samples / sample_rate
KEY_PROP_DELAY_S = "prop_delay_s"  # slant range / c [s]
KEY_SNR_DB = "snr_db"  # large-scale mean SNR at the burst [dB]
KEY_ELEVATION_DEG = "elevation_deg"
KEY_DOPPLER_HZ = "doppler_hz"
KEY_DOPPLER_RATE_HZ_PER_S = "doppler_rate_hz_per_s"
KEY_MODULATION = "modulation"
KEY_MODCOD = "modcod"  # the frame's MODCOD name, e.g. "8psk-2/3"
KEY_CRC_OK = "crc_ok"
KEY_WALL_PROC_S = "wall_proc_s"  # wall-clock processing time of the burst [s]

MAX_DEPTH = 16

_T, _F, _SYM, _I32, _DBL, _CPLX, _NIL, _PAIR, _VEC, _DICT, _UVEC, _U64, _TUP, _I64 = range(14)
_UV_U8 = 0x00
_UV_SIZES = {
    0x00: 1,
    0x01: 1,
    0x02: 2,
    0x03: 2,
    0x04: 4,
    0x05: 4,
    0x06: 8,
    0x07: 8,
    0x08: 4,
    0x09: 8,
    0x0A: 8,
    0x0B: 16,
}


class PduError(ValueError):
    """The bytes are not a valid PMT / PDU of the supported subset."""


class _Nil:
    """Marker for ``PMT_NIL`` where it is a value (``None`` is used for it on decode)."""


def _enc(obj: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PduError("PMT nesting too deep")
    if obj is True:
        out.append(_T)
    elif obj is False:
        out.append(_F)
    elif obj is None:
        out.append(_NIL)
    elif isinstance(obj, str):
        b = obj.encode()
        if len(b) > 0xFFFF:
            raise PduError("symbol longer than 65535 bytes")
        out += struct.pack(">BH", _SYM, len(b)) + b
    elif isinstance(obj, int):
        if -(2**31) <= obj < 2**31:
            out += struct.pack(">Bi", _I32, obj)
        elif 0 <= obj < 2**64:
            out += struct.pack(">BQ", _U64, obj)
        elif -(2**63) <= obj < 0:
            out += struct.pack(">Bq", _I64, obj)
        else:
            raise PduError(f"integer {obj} does not fit 64 bits")
    elif isinstance(obj, float):
        out += struct.pack(">Bd", _DBL, obj)
    elif isinstance(obj, complex):
        out += struct.pack(">Bdd", _CPLX, obj.real, obj.imag)
    elif isinstance(obj, bytes | bytearray | memoryview):
        b = bytes(obj)
        out += struct.pack(">BBIB", _UVEC, _UV_U8, len(b), 1) + b"\x00" + b
    elif isinstance(obj, dict):
        if not obj:
            out.append(_NIL)  # an empty PMT dict is nil
            return
        # GNU Radio writes the most recently added entry first.
        for key, value in reversed(list(obj.items())):
            if not isinstance(key, str):
                raise PduError(f"dict key {key!r} is not a string")
            out.append(_DICT)
            out.append(_PAIR)
            _enc(key, out, depth + 1)
            _enc(value, out, depth + 1)
        out.append(_NIL)
    elif isinstance(obj, tuple):
        out += struct.pack(">BI", _TUP, len(obj))
        for item in obj:
            _enc(item, out, depth + 1)
    elif isinstance(obj, list):
        out += struct.pack(">BI", _VEC, len(obj))
        for item in obj:
            _enc(item, out, depth + 1)
    else:
        raise PduError(f"cannot encode {type(obj).__name__} as PMT")


def encode_pmt(obj: Any) -> bytes:
    """Serialise a Python value to PMT bytes.

    Mapping: bool → ``PMT_T``/``PMT_F``; None → nil; str → symbol; int → int32, else
    uint64 (non-negative) or int64; float → double; complex → complex; bytes → u8vector;
    dict[str, …] → dict; tuple → tuple; list → vector.
    """
    out = bytearray()
    _enc(obj, out, 0)
    return bytes(out)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise PduError("truncated PMT")
        chunk = self.buf[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def _dec(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise PduError("PMT nesting too deep")
    (tag,) = r.take(1)
    if tag == _T:
        return True
    if tag == _F:
        return False
    if tag == _NIL:
        return None
    if tag == _SYM:
        (n,) = r.unpack(">H")
        try:
            return r.take(n).decode()
        except UnicodeDecodeError as e:
            raise PduError("symbol is not UTF-8") from e
    if tag == _I32:
        return r.unpack(">i")[0]
    if tag == _DBL:
        return r.unpack(">d")[0]
    if tag == _CPLX:
        re, im = r.unpack(">dd")
        return complex(re, im)
    if tag == _U64:
        return r.unpack(">Q")[0]
    if tag == _I64:
        return r.unpack(">q")[0]
    if tag == _PAIR:
        return (_dec(r, depth + 1), _dec(r, depth + 1))  # a bare pair: (car, cdr)
    if tag in (_VEC, _TUP):
        (n,) = r.unpack(">I")
        if n > len(r.buf) - r.pos:  # every item takes at least one byte
            raise PduError("vector length exceeds the buffer")
        items = [_dec(r, depth + 1) for _ in range(n)]
        return items if tag == _VEC else tuple(items)
    if tag == _DICT:
        result: dict[str, Any] = {}
        entries = []
        while True:
            if r.take(1)[0] != _PAIR:
                raise PduError("dict entry is not a pair")
            key = _dec(r, depth + 1)
            if not isinstance(key, str):
                raise PduError("dict key is not a symbol")
            entries.append((key, _dec(r, depth + 1)))
            (nxt,) = r.take(1)
            if nxt == _NIL:
                break
            if nxt != _DICT:
                raise PduError("malformed dict tail")
            if len(entries) > 4096:
                raise PduError("dict has too many entries")
        for key, value in reversed(entries):  # restore insertion order
            result[key] = value
        return result
    if tag == _UVEC:
        utype, n, npad = r.unpack(">BIB")
        if utype not in _UV_SIZES:
            raise PduError(f"unknown uniform vector type {utype}")
        r.take(npad)
        nbytes = n * _UV_SIZES[utype]
        data = r.take(nbytes)
        if utype == _UV_U8:
            return data
        raise PduError("only u8 uniform vectors are accepted")
    raise PduError(f"unsupported PMT tag 0x{tag:02x}")


def decode_pmt(buf: bytes) -> Any:
    """Parse PMT bytes (inverse of :func:`encode_pmt`); the whole buffer must be used."""
    r = _Reader(bytes(buf))
    obj = _dec(r, 0)
    if r.pos != len(r.buf):
        raise PduError(f"{len(r.buf) - r.pos} trailing bytes after the PMT")
    return obj


def encode_pdu(meta: dict[str, Any], payload: bytes) -> bytes:
    """Serialise a PDU ``(meta . u8vector)`` exactly as ``pmt.serialize_str`` would."""
    if not isinstance(meta, dict):
        raise PduError("PDU metadata must be a dict")
    out = bytearray([_PAIR])
    _enc(meta, out, 1)
    _enc(bytes(payload), out, 1)
    return bytes(out)


def decode_pdu(buf: bytes, max_bytes: int | None = None) -> tuple[dict[str, Any], bytes]:
    """Parse a serialised PDU into ``(meta, payload)``.

    Raises
    ------
    PduError
        Not a PMT pair of (dict or nil, u8vector); too large; truncated; trailing bytes.
    """
    if max_bytes is not None and len(buf) > max_bytes:
        raise PduError(f"PDU of {len(buf)} bytes exceeds the limit of {max_bytes}")
    obj = decode_pmt(buf)
    if not isinstance(obj, tuple) or len(obj) != 2:
        raise PduError("PDU is not a (meta . data) pair")
    meta, payload = obj
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise PduError("PDU metadata is not a dict")
    if not isinstance(payload, bytes):
        raise PduError("PDU data is not a u8vector")
    return meta, payload


def finite_float(meta: dict[str, Any], key: str) -> float:
    """Return ``meta[key]`` as a finite float, or raise :class:`PduError` naming the key."""
    if key not in meta:
        raise PduError(f"missing metadata key {key!r}")
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PduError(f"metadata key {key!r} is {type(value).__name__}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise PduError(f"metadata key {key!r} is not finite")
    return value

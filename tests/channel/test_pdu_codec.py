"""The pure-Python PDU codec is byte-compatible with GNU Radio's pmt."""

import pmt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowgraphs.pdu import PduError, decode_pdu, decode_pmt, encode_pdu, encode_pmt

pytestmark = pytest.mark.integration


def _gr_pdu(meta: dict, payload: bytes) -> bytes:
    d = pmt.make_dict()
    for k, v in meta.items():  # same insertion order as ours
        if isinstance(v, bool):
            pv = pmt.from_bool(v)
        elif isinstance(v, int) and -(2**31) <= v < 2**31:
            pv = pmt.from_long(v)
        elif isinstance(v, int):
            pv = pmt.from_uint64(v)
        elif isinstance(v, float):
            pv = pmt.from_double(v)
        else:
            pv = pmt.intern(v)
        d = pmt.dict_add(d, pmt.intern(k), pv)
    return pmt.serialize_str(pmt.cons(d, pmt.init_u8vector(len(payload), list(payload))))


def test_bytes_identical_to_gnuradio():
    meta = {"tx_time": 12.5, "seq": 2**40, "src": "cluster-1", "ok": True, "n": -3}
    assert encode_pdu(meta, b"\x00\x01payload") == _gr_pdu(meta, b"\x00\x01payload")


def test_decodes_what_gnuradio_serialises():
    meta = {"a": 1.0, "b": "x", "c": 7}
    m, p = decode_pdu(_gr_pdu(meta, b"xyz"))
    assert (m, p) == (meta, b"xyz")


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
values = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, max_size=8), st.binary(max_size=300))
def test_roundtrip_and_gnuradio_agree(meta, payload):
    buf = encode_pdu(meta, payload)
    assert decode_pdu(buf) == (meta, payload)
    gr_obj = pmt.deserialize_str(buf)
    assert bytes(pmt.u8vector_elements(pmt.cdr(gr_obj))) == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_pdu_error_only(buf):
    try:
        decode_pdu(buf)
    except PduError:
        pass


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        b"\x07",
        b"\x07\x06",
        b"\x07\x06\x0a\x00\x00\x00\x00\x09",
        encode_pmt(3),
        encode_pdu({}, b"ab") + b"\x00",
        b"\x07\x02\x00\x01a\x0a\x00\x00\x00\x00\x00",
    ],
)
def test_malformed_is_rejected(buf):
    with pytest.raises(PduError):
        decode_pdu(buf)


def test_size_limit():
    with pytest.raises(PduError, match="exceeds"):
        decode_pdu(encode_pdu({}, b"x" * 100), max_bytes=50)


def test_depth_limit():
    nested: list = []
    for _ in range(40):
        nested = [nested]
    with pytest.raises(PduError):
        decode_pmt(b"\x08\x00\x00\x00\x01" * 40 + b"\x06")
    with pytest.raises(PduError):
        encode_pmt(nested)

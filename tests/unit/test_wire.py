"""The header frame: exact round trips, and a decoder that only ever says ProtocolError."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partisan.errors import ProtocolError
from partisan.transport.wire import (
    HEADER_FIXED_SIZE,
    MAX_DEST_BYTES,
    MAX_NAME_BYTES,
    WIRE_VERSION,
    Header,
    Kind,
    WireVersionError,
    decode_header,
    encode_header,
)


def _text(max_bytes: int) -> st.SearchStrategy[str]:
    # Any Unicode except lone surrogates (not encodable), within a UTF-8 byte budget.
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=max_bytes).filter(
        lambda s: len(s.encode("utf-8")) <= max_bytes
    )


U64 = st.integers(min_value=0, max_value=2**64 - 1)
headers = st.builds(
    Header,
    kind=st.sampled_from(Kind),
    sender=_text(MAX_NAME_BYTES),
    incarnation=U64,
    channel=_text(MAX_NAME_BYTES),
    dest=_text(MAX_DEST_BYTES),
    seq=U64,
    flags=st.integers(min_value=0, max_value=0xFFFF),
)

# No per-example deadline: the machine is shared, and a scheduling hiccup is not a bug.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLE = Header(Kind.DATA, "n1", 1_700_000_000_123_456_789, "default", "$runtime", 42, 0x0102)


@RELAXED
@given(headers)
def test_valid_headers_round_trip(header: Header) -> None:
    data = encode_header(header)
    assert decode_header(data) == header
    assert decode_header(memoryview(data)) == header
    assert decode_header(bytearray(data)) == header


def test_layout_is_the_documented_one() -> None:
    data = encode_header(SAMPLE)
    assert data[:2] == b"PZ"
    assert data[2] == WIRE_VERSION
    assert data[3] == Kind.DATA
    assert struct.unpack_from("!HQQBBH", data, 4) == (0x0102, SAMPLE.incarnation, 42, 2, 7, 8)
    assert data[HEADER_FIXED_SIZE:] == b"n1default$runtime"
    decoded = decode_header(data)
    assert decoded.kind is Kind.DATA
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.seq = 43  # type: ignore[misc]
    assert hash(decoded) == hash(SAMPLE)


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        header = decode_header(data)
    except ProtocolError:
        return
    # Whatever decodes is a well-formed header that encodes back to the same bytes.
    assert isinstance(header, Header)
    assert isinstance(header.kind, Kind)
    assert encode_header(header) == data


@RELAXED
@given(st.binary(max_size=2 * HEADER_FIXED_SIZE + 600))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@RELAXED
@given(st.binary(max_size=200))
def test_random_bytes_after_a_valid_prefix(tail: bytes) -> None:
    # Right magic and version, so the later checks are what gets exercised.
    _decode_or_protocol_error(b"PZ" + bytes([WIRE_VERSION]) + tail)


@RELAXED
@given(headers, st.data())
def test_truncated_headers_raise_protocol_error(header: Header, data: st.DataObject) -> None:
    encoded = encode_header(header)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    with pytest.raises(ProtocolError):
        decode_header(encoded[:cut])


@RELAXED
@given(headers, st.data())
def test_bit_flipped_headers_decode_or_raise_protocol_error(
    header: Header, data: st.DataObject
) -> None:
    encoded = bytearray(encode_header(header))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        bit = data.draw(st.integers(min_value=0, max_value=len(encoded) * 8 - 1))
        encoded[bit // 8] ^= 1 << (bit % 8)
    _decode_or_protocol_error(bytes(encoded))


@RELAXED
@given(headers, st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_rejected(header: Header, extra: bytes) -> None:
    with pytest.raises(ProtocolError, match="lengths say"):
        decode_header(encode_header(header) + extra)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"XX" + b[2:], "bad magic"),
        (lambda b: b[:3] + bytes([99]) + b[4:], "unknown message kind 99"),
        (lambda b: b[:3] + bytes([0]) + b[4:], "unknown message kind 0"),
        (lambda b: b[:10], "too short"),
        (lambda b: b[:24] + struct.pack("!H", MAX_DEST_BYTES + 1) + b[26:], "dest is 1025 bytes"),
        (lambda b: b[:-1] + b"\xff", "not UTF-8"),
    ],
)
def test_each_check_has_a_clear_message(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError, match=message):
        decode_header(mutate(encode_header(SAMPLE)))


def test_another_version_is_a_typed_error_carrying_the_version() -> None:
    data = bytearray(encode_header(SAMPLE))
    data[2] = WIRE_VERSION + 1
    with pytest.raises(WireVersionError) as info:
        decode_header(bytes(data))
    assert info.value.version == WIRE_VERSION + 1
    assert isinstance(info.value, ProtocolError)
    assert f"speaks {WIRE_VERSION}" in str(info.value)


def test_non_buffer_input_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_header("PZ not bytes")  # type: ignore[arg-type]


def test_non_byte_memoryview_is_read_as_bytes() -> None:
    raw = encode_header(SAMPLE)
    data = raw + bytes(-len(raw) % 4 or 4)  # pad to a multiple of 4 ...
    view = memoryview(data).cast("I")  # ... then view it as 32-bit ints
    with pytest.raises(ProtocolError, match="lengths say"):  # padding: trailing bytes
        decode_header(view)
    assert decode_header(memoryview(encode_header(SAMPLE)).cast("c")) == SAMPLE


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sender": "x" * (MAX_NAME_BYTES + 1)}, "sender is 256 UTF-8 bytes"),
        ({"channel": "é" * 128}, "channel is 256 UTF-8 bytes"),
        ({"dest": "d" * (MAX_DEST_BYTES + 1)}, "dest is 1025 UTF-8 bytes"),
        ({"sender": "\ud800"}, "not encodable"),
        ({"dest": 5}, "must be a str"),
        ({"seq": -1}, "seq must be an int"),
        ({"incarnation": 2**64}, "incarnation must be an int"),
        ({"flags": 0x10000}, "flags must be an int"),
        ({"seq": True}, "seq must be an int"),
        ({"kind": 42}, "not a Kind"),
    ],
)
def test_encode_rejects_our_own_bad_fields(changes: dict[str, object], message: str) -> None:
    fields = {
        "kind": SAMPLE.kind,
        "sender": SAMPLE.sender,
        "incarnation": SAMPLE.incarnation,
        "channel": SAMPLE.channel,
        "dest": SAMPLE.dest,
        "seq": SAMPLE.seq,
        "flags": SAMPLE.flags,
    }
    fields.update(changes)
    with pytest.raises(ValueError, match=message):
        encode_header(Header(**fields))  # type: ignore[arg-type]


def test_limits_are_inclusive() -> None:
    header = Header(
        Kind.HELLO, "s" * MAX_NAME_BYTES, 2**64 - 1, "c" * MAX_NAME_BYTES, "d" * MAX_DEST_BYTES, 0
    )
    assert decode_header(encode_header(header)) == header


def test_kind_values_are_stable() -> None:
    # These numbers are on the wire: renumbering breaks every running node.
    assert {k.name: k.value for k in Kind} == {
        "HELLO": 1,
        "WELCOME": 2,
        "REFUSE": 3,
        "DATA": 4,
        "BYE": 5,
        "PING": 6,
        "PONG": 7,
        "CREDIT": 8,
        "ACK": 9,
        "BATCH": 10,
    }

"""BATCH frames: the documented layout splits back into its records; anything else is a ProtocolError."""

from __future__ import annotations

import contextlib
import pickle
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partisan.errors import ProtocolError
from partisan.transport.backpressure import LaneQueue, Pending
from partisan.transport.batch import BATCH_BYTES, BATCH_PREFIX, RECORD, pack_run, split_batch
from partisan.transport.lanes import FLAG_INLINE
from partisan.transport.wire import WIRE_VERSION, Header, Kind, encode_header

RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _record(
    seq: int, payload: object, *, kind: Kind = Kind.DATA, flags: int = FLAG_INLINE
) -> bytes:
    header = Header(kind, "a", 1_700_000_000_000_000_000, "default", "sink", seq, flags)
    return encode_header(header) + pickle.dumps(payload, 5)


def _batch(*records: bytes) -> bytes:
    return BATCH_PREFIX + b"".join(struct.pack("!I", len(r)) + r for r in records)


@pytest.mark.timeout(10)
def test_a_batch_splits_into_its_records_in_order() -> None:
    records = [_record(seq, ("msg", seq)) for seq in range(1, 6)]
    assert b"PZ" + bytes((WIRE_VERSION, Kind.BATCH)) == BATCH_PREFIX
    assert split_batch(_batch(*records)) == records


@pytest.mark.timeout(10)
def test_the_record_struct_is_a_length_then_the_data_headers_fixed_start() -> None:
    # What the sender packs per record: length, magic/version/kind, flags, incarnation, seq.
    record = _record(7, "x")
    head = RECORD.pack(len(record), record[:4], FLAG_INLINE, record[6:14], 7)
    assert head == struct.pack("!I", len(record)) + record[:22]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("frame", "says"),
    [
        (BATCH_PREFIX, "empty batch"),
        (b"PZ" + bytes((WIRE_VERSION - 1, Kind.BATCH)) + b"\0\0\0\0", "not a BATCH frame"),
        (BATCH_PREFIX + b"\0\0", "truncated length"),
        (_batch(_record(1, 1))[:-1], "announced"),
        (BATCH_PREFIX + struct.pack("!I", 3) + b"abc", "not an inline DATA message"),
        (_batch(_record(1, 1), _record(2, 2, kind=Kind.PING)), "record 1 is not an inline DATA"),
        (_batch(_record(1, 1, flags=0)), "record 0 is not an inline DATA"),
        (_batch(_record(1, 1)) + b"\0", "truncated length"),
    ],
)
def test_a_malformed_batch_says_what_is_wrong(frame: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        split_batch(frame)


@RELAXED
@given(st.binary(max_size=300))
def test_random_bytes_after_the_prefix_only_ever_raise_protocol_error(tail: bytes) -> None:
    try:
        records = split_batch(BATCH_PREFIX + tail)
    except ProtocolError:
        return
    assert records and all(r[:4] == b"PZ" + bytes((WIRE_VERSION, Kind.DATA)) for r in records)


@RELAXED
@given(st.integers(0, 10_000), st.integers(0, 7), st.booleans())
def test_truncated_or_bit_flipped_batches_only_ever_raise_protocol_error(
    where: int, bit: int, truncate: bool
) -> None:
    frame = bytearray(_batch(*(_record(seq, "p" * seq) for seq in range(1, 4))))
    where %= len(frame)
    if truncate:
        del frame[where:]
    else:
        frame[where] ^= 1 << bit
    with contextlib.suppress(ProtocolError):
        split_batch(bytes(frame))


def _template(channel: str, dest: str) -> tuple[bytes, bytes, bytes]:
    # As `Outbound._template` cuts a DATA header around its flags and seq.
    raw = encode_header(Header(Kind.DATA, "a", 1_700_000_000_000_000_000, channel, dest, 0, 0))
    return raw[:4], raw[6:14], raw[22:]


def _queue(*messages: tuple[str, str, list[bytes]]) -> LaneQueue:
    queue = LaneQueue()
    for channel, dest, frames in messages:
        size = 22 + len(_template(channel, dest)[2]) + sum(len(f) for f in frames)
        queue.push(Pending(channel, dest, 0, list(frames), size))
    return queue


@pytest.mark.timeout(10)
def test_what_the_sender_packs_splits_into_the_messages_it_would_have_sent_alone() -> None:
    payloads = [pickle.dumps(("m", i), 5) for i in range(4)]
    queue = _queue(*(("default", f"d{i % 2}", [p]) for i, p in enumerate(payloads)))
    run = pack_run(queue, 41, _template)
    assert run is not None
    frame, count, size, channel = run
    assert (count, channel, size) == (4, "default", queue.bytes)
    alone = [
        encode_header(
            Header(
                Kind.DATA,
                "a",
                1_700_000_000_000_000_000,
                "default",
                f"d{i % 2}",
                42 + i,
                FLAG_INLINE,
            )
        )
        + p
        for i, p in enumerate(payloads)
    ]
    assert split_batch(frame) == alone
    assert len(queue) == 4  # the caller pops once ZeroMQ took the frame


@pytest.mark.timeout(10)
def test_a_run_stops_at_another_channel_a_multipart_message_or_the_size_cap() -> None:
    small = pickle.dumps("x", 5)
    other = _queue(("default", "d", [small]), ("default", "d", [small]), ("data", "d", [small]))
    assert pack_run(other, 0, _template)[1] == 2  # type: ignore[index]
    multipart = _queue(("default", "d", [small]), ("default", "d", [small, b"buffer"]))
    assert pack_run(multipart, 0, _template) is None  # a run of one goes alone
    big = b"y" * (BATCH_BYTES // 3)
    capped = _queue(*(("default", "d", [big]) for _ in range(5)))
    run = pack_run(capped, 0, _template)
    assert run is not None and run[1] == 2 and len(run[0]) <= BATCH_BYTES

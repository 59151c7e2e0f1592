"""Coalescing: several small DATA messages of one lane carried as one ZeroMQ message.

Why
---
A ZeroMQ message costs a fixed amount whatever its size: the send call, a
wake-up of libzmq's I/O thread, a CURVE box (encryption and its MAC) on the
sender and the same in reverse on the receiver. For a stream of small casts
that fixed cost is most of the work; raw pyzmq pays it per message too, so
coalescing is what lets the links beat one-send-per-message.

What goes on the wire
---------------------
A BATCH frame is one ZeroMQ part (wire version 3)::

    offset  size  field
    0       2     magic b"PZ"
    2       1     version (WIRE_VERSION)
    3       1     kind  Kind.BATCH (10)
    4       ...   records, each: u32 length (big-endian), then that many bytes

Every record is a complete one-part DATA message exactly as it would travel
alone: its header (with its own sequence number and `FLAG_INLINE`) followed
by the pickle stream. So the receiver checks each record as it checks a lone
message (session, incarnation, sequence, names), and a record's size counts
against the byte budget exactly as the lone message would. Records of one
batch come from one lane and one channel, with consecutive sequence numbers.

Who batches and when (`Outbound`): a message sent on a lane within
`COALESCE_WINDOW` of the lane's previous hand-off waits in the lane's queue
until the end of the loop turn; the turn's queued messages then leave as
BATCH frames of at most `BATCH_BYTES`. A lone message (a call's request, a
reply) still goes at once, as a plain DATA message: latency does not change.

`split_batch` only ever raises `ProtocolError`, and validates the whole frame
before the caller delivers any record: a malformed batch is rejected whole
(counted, logged), and the sequence gap its lost records leave ends the link
like any other gap: nothing is lost silently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from partisan.errors import ProtocolError
from partisan.transport.backpressure import LaneQueue
from partisan.transport.lanes import FLAG_INLINE
from partisan.transport.wire import HEADER_FIXED_SIZE, MAGIC, WIRE_VERSION, Kind

__all__ = [
    "BATCH_BYTES",
    "BATCH_PREFIX",
    "COALESCE_WINDOW",
    "RECORD",
    "pack_run",
    "split_batch",
]

BATCH_PREFIX = MAGIC + bytes((WIRE_VERSION, Kind.BATCH))
#: At most this many bytes of records per BATCH frame (one CURVE box, one receive).
BATCH_BYTES = 64 * 1024
#: Seconds: a send this soon after the lane's previous hand-off is coalesced.
#: Far below a round trip (~100 µs here), so a call's request is never held;
#: far above the gap between sends of a loop (~2-5 µs), so a stream is.
COALESCE_WINDOW = 20e-6
#: A record's start, packed in one call: u32 length, then the DATA header's
#: magic/version/kind (4 bytes), flags, incarnation (8 bytes, pre-packed), seq.
RECORD = struct.Struct("!I4sH8sQ")
_LENGTH = struct.Struct("!I")
_DATA_PREFIX = MAGIC + bytes((WIRE_VERSION, Kind.DATA))
_INLINE_BYTE = FLAG_INLINE >> 8


def pack_run(
    queue: LaneQueue, seq: int, template: Callable[[str, str], tuple[bytes, bytes, bytes]]
) -> tuple[bytes, int, int, str] | None:
    """The BATCH frame for the run of batchable messages at the head of a FIFO `queue`.

    A run is consecutive messages of the head's channel whose payload is one
    `bytes` frame, within `BATCH_BYTES`; they take sequence numbers from
    ``seq + 1``. `template` gives a (channel, dest)'s DATA header parts
    (`Outbound._template`). Returns (frame, messages, their budgeted size,
    channel), or None for a run shorter than two (the head then goes alone).
    The queue is not changed: the caller pops the messages once ZeroMQ took them.
    """
    channel = queue.peek().channel
    parts: list[bytes] = [BATCH_PREFIX]
    append = parts.append
    first = seq
    room = BATCH_BYTES - 4
    last_dest = None
    head = incarnation = strings = b""
    pack = RECORD.pack
    for msg in queue:
        frames = msg.frames
        size = msg.size + 4  # with its length prefix
        if msg.channel != channel or len(frames) != 1 or size > room:
            break
        payload = frames[0]
        if type(payload) is not bytes:
            break
        if msg.dest != last_dest:
            last_dest = msg.dest
            head, incarnation, strings = template(channel, last_dest)
        seq += 1
        append(pack(size - 4, head, msg.flags | FLAG_INLINE, incarnation, seq))
        append(strings)
        append(payload)
        room -= size
    count = seq - first
    if count < 2:
        return None
    return b"".join(parts), count, BATCH_BYTES - 4 - room - 4 * count, channel


def split_batch(blob: bytes) -> list[bytes]:
    """The records of a BATCH frame, each a one-part inline DATA message.

    Raises `ProtocolError` naming the first problem: a truncated length or
    record, a record too short to hold a header, a record that is not an
    inline DATA message of this wire version, or no record at all.
    """
    if blob[:4] != BATCH_PREFIX:
        raise ProtocolError("not a BATCH frame of this wire version")
    records: list[bytes] = []
    size = len(blob)
    offset = 4
    unpack = _LENGTH.unpack_from
    while offset < size:
        if offset + 4 > size:
            raise ProtocolError(f"batch record {len(records)}: truncated length at byte {offset}")
        (length,) = unpack(blob, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise ProtocolError(
                f"batch record {len(records)}: {length} bytes announced, {size - offset} left"
            )
        record = blob[offset:end]
        if length < HEADER_FIXED_SIZE or record[:4] != _DATA_PREFIX or not record[4] & _INLINE_BYTE:
            raise ProtocolError(f"batch record {len(records)} is not an inline DATA message")
        records.append(record)
        offset = end
    if not records:
        raise ProtocolError("empty batch")
    return records

"""Acked streams' records and the pure parts of selective acknowledgement.

`Data` and `Ack` are what travels (to the peer's ``$runtime``); `OutStream`
and `InStream` are one stream's state on the sending and the receiving node
(`partisan.delivery.acked` owns them), `HeldBytes` the sender's byte bound. `sack_ranges` is what a receiver
reports beyond its cumulative point; `holes` is what a sender resends given
that report. Both are pure: no clock, no I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "ACKED_DEST",
    "BURST",
    "SACK_RANGES",
    "Ack",
    "Data",
    "DeliveryStatistics",
    "HeldBytes",
    "InStream",
    "OutStream",
    "Wire",
    "holes",
    "sack_ranges",
]

#: Most messages resent per stream per timer tick.
BURST = 2048
#: Most selective-ack ranges per `Ack` (the lowest ones: the gaps that block delivery).
SACK_RANGES = 32


#: Where acked data goes on the peer (its runtime hands it to `Delivery.on_data`).
ACKED_DEST = "$acked"


class Data(NamedTuple):
    """One acked message: the receiver's view of the wire tuple.

    On the wire (to `ACKED_DEST`) and in the sender's stream it is a *plain*
    tuple in this field order (`Data._make` reads it): the sender keeps
    thousands at once, and a plain tuple of plain values is cheap to pickle
    (0.3 us against 2.3 for a dataclass) and untracked by the garbage
    collector, which otherwise rescans every kept message in each full
    collection.
    """

    channel: str
    lane: int
    to_inc: int
    seq: int
    dest: str
    payload: Any
    deps: tuple[tuple[str, int, str, int, int], ...] | None = None


#: A `Data` as a plain tuple (what `Delivery.prepare` returns and the wire carries).
Wire = tuple[str, int, int, int, str, Any, Any]


class Ack(NamedTuple):
    """Everything up to `seq` on (channel, lane) arrived; for sender incarnation `to_inc`.

    `ranges` (flat ``start, end, start, end ...``, inclusive, ascending) name
    what else arrived beyond `seq`: the sender does not resend those.
    """

    channel: str
    lane: int
    to_inc: int
    seq: int
    ranges: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    """Counters of the acked/causal layer."""

    sent: int
    retransmitted: int
    acked: int
    delivered: int
    duplicates: int
    stale: int
    lost: int
    unacked: int
    causal_waiting: int
    causal_released: int
    causal_held: int


@dataclass(slots=True)
class OutStream:
    """One sending stream: numbering, what is unacknowledged, the retransmission timer."""

    peer_inc: int
    next_seq: int = 1
    #: seq -> (Data, partition key, waiter future or None, last sent at, bytes on
    #: the wire or 0 until known); a tuple, replaced on resend: thousands live at
    #: once and lists would load the GC
    unacked: dict[int, tuple[Any, Any, Any, float, int]] = field(default_factory=dict)
    #: the latest ack's selective ranges (flat, inclusive) and its cumulative point
    sacked: tuple[int, ...] = ()
    sack_seq: int = 0
    rto: float = 0.0
    last_tx: float = 0.0
    progress: float = 0.0


@dataclass(slots=True)
class InStream:
    """One receiving stream: the next expected number, the ack point, the reorder buffer."""

    expected: int = 1
    acked: int = 0
    buffer: dict[int, Data] = field(default_factory=dict)


class HeldBytes:
    """Unacknowledged bytes per (node, channel), and the senders waiting for room under them."""

    def __init__(self) -> None:
        self.bytes: dict[tuple[str, str], int] = {}
        self._room: dict[tuple[str, str], asyncio.Event] = {}

    def of(self, node: str, channel: str) -> int:
        return self.bytes.get((node, channel), 0)

    def add(self, node: str, channel: str, size: int) -> None:
        key = (node, channel)
        self.bytes[key] = self.bytes.get(key, 0) + size

    def release(self, node: str, channel: str, size: int) -> None:
        """`size` bytes are no longer held (acknowledged or given up)."""
        if size:
            key = (node, channel)
            left = self.bytes.get(key, 0) - size
            if left > 0:
                self.bytes[key] = left
            else:
                self.bytes.pop(key, None)

    def wake(self, node: str, channel: str) -> None:
        """Something of (node, channel) was released: waiting senders look again."""
        event = self._room.get((node, channel))
        if event is not None:
            event.set()

    async def changed(self, node: str, channel: str, timeout: float | None) -> None:
        """Wait for the next `wake` of (node, channel); TimeoutError at `timeout`."""
        event = self._room.get((node, channel))
        if event is None:
            event = self._room[(node, channel)] = asyncio.Event()
        event.clear()
        await asyncio.wait_for(event.wait(), timeout)


def holes(stream: OutStream, now: float, age: float, everything: bool, limit: int) -> Iterator[int]:
    """The sequence numbers to resend now, oldest first, at most `limit`.

    A hole is an unacknowledged message below the highest one the receiver
    reported holding, last sent `age` or more ago: it was sent before
    something that arrived, so it is lost (or delayed). Above that point a
    message may still be in flight, so only the newest is resent (a
    tail-loss probe, as TCP's TLP): once it arrives, the receiver's ack turns
    the lost ones below it into holes. `everything` (after a reconnect)
    yields every unreported message.
    """
    ranges, r, nr = stream.sacked, 0, len(stream.sacked)
    top = ranges[-1] if ranges else stream.sack_seq
    unacked = stream.unacked
    count = 0
    for seq, entry in unacked.items():
        if (seq > top and not everything) or count >= limit:
            break
        while r < nr and ranges[r + 1] < seq:
            r += 2
        if r < nr and ranges[r] <= seq:
            continue  # the receiver holds it
        if now - entry[3] < age:
            continue  # sent (or resent) too recently
        count += 1
        yield seq
    if not everything and unacked and count < limit:
        seq = next(reversed(unacked))
        if seq > top and now - unacked[seq][3] >= age:
            yield seq


def sack_ranges(stream: InStream) -> tuple[int, ...]:
    """What `stream` holds beyond its ack point, as at most `SACK_RANGES` flat ranges."""
    held: list[int] = []
    if stream.expected - 1 > stream.acked:  # in order, waiting for a causal dependency
        held.extend(range(stream.acked + 1, stream.expected))
    if stream.buffer:
        held.extend(sorted(stream.buffer))
    if not held:
        return ()
    out: list[int] = []
    start = prev = held[0]
    for seq in held[1:]:
        if seq != prev + 1:
            out += (start, prev)
            if len(out) >= 2 * SACK_RANGES:
                return tuple(out)
            start = seq
        prev = seq
    out += (start, prev)
    return tuple(out)

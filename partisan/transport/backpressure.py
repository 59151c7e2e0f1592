"""Backpressure: a byte budget per (peer, channel) and the per-lane queue of unsent messages.

Theory of operation
-------------------
ZeroMQ's high-water marks count messages, not bytes (reliability.md §1: 200 MB
sat in one DEALER before it blocked), so they cannot bound memory. We bound it
ourselves with credit-based flow control:

* the sender counts every byte it accepts for a peer on a channel
  (`ByteBudget.queued` while the message waits in our `LaneQueue`, then
  `sent` once handed to ZeroMQ); each (peer, channel) has its own budget of
  `send_buffer_bytes`, so bulk traffic on one channel cannot starve another
  (Partisan's reason for channels);
* the receiver counts the bytes it has read per channel and returns
  cumulative CREDIT frames (see `inflow`): the credit, recorded as `acked`,
  and what it has read from its sockets, recorded as `received`. It may hold
  the credit back while its actors have not read what it delivered; it never
  holds back `received`;
* ``outstanding = queued + sent - acked`` is everything in our queues, in
  ZeroMQ's pipes, in kernel buffers and unread in the receiver. A send that
  would take it over the budget raises `Overloaded` (or waits, with
  `send_wait`). A single message larger than the whole budget is admitted
  only when nothing else is outstanding, so it can always go.

Waiting senders queue on the budget (`ByteBudget.waiters`) and are let in
first come, first served: only the oldest is woken when credit arrives, and a
plain send does not overtake them (it raises `Overloaded` while any wait).

Nothing is dropped silently: a message is either refused at the call site or
counted as outstanding until it is credited, or lost with its session (which
is reported as PeerDown).

Monotonic channels (Partisan's `monotonic` option) carry state where only the
newest value matters, so their queue keeps one message per destination: a newer
message replaces the queued older one and moves to the back.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ByteBudget", "LaneQueue", "Pending"]


@dataclass(slots=True)
class Pending:
    """A message accepted by `send` but not yet handed to ZeroMQ.

    The header is encoded when the message leaves the queue, because the
    lane's sequence number is assigned at that moment (a monotonic replacement
    must not leave a gap in the sequence).
    """

    channel: str
    dest: str
    flags: int
    frames: list[bytes | memoryview]
    size: int


class ByteBudget:
    """Outstanding-bytes accounting for one channel of one peer session."""

    __slots__ = ("acked", "limit", "queued", "received", "sent", "waiters")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self.sent = 0
        self.acked = 0
        #: Bytes the receiver has read from its sockets (cumulative, >= acked).
        self.received = 0
        #: Futures of senders waiting for room, oldest first (see `flow`).
        self.waiters: deque[Any] = deque()

    @property
    def unread(self) -> int:
        """Bytes accepted for the peer that it has not even read from its sockets yet."""
        return self.queued + self.sent - self.received

    @property
    def outstanding(self) -> int:
        """Bytes accepted for this peer and not yet credited by it."""
        return self.queued + self.sent - self.acked

    def admits(self, size: int, freed: int = 0) -> bool:
        """True when a message of `size` bytes fits (an empty budget admits anything).

        `freed` is what the message replaces (a monotonic lane's older message).
        """
        outstanding = self.queued + self.sent - self.acked - freed
        return outstanding <= 0 or outstanding + size <= self.limit

    def credit(self, total_consumed: int) -> bool:
        """Record the receiver's cumulative credit; True if it freed room.

        Credits are cumulative, so a lost or reordered one is harmless; a
        credit above what we sent is a peer bug and is clamped.
        """
        total = min(total_consumed, self.sent)
        if total <= self.acked:
            return False
        self.acked = total
        self.received = max(self.received, total)
        return True

    def wake(self) -> None:
        """Wake the oldest waiting sender, if any (it re-checks for room itself)."""
        if self.waiters:
            head = self.waiters[0]
            if not head.done():
                head.set_result(None)


class LaneQueue:
    """FIFO of `Pending` messages for one lane; monotonic lanes keep the newest per dest."""

    __slots__ = ("_fifo", "_latest", "bytes", "monotonic", "replaced")

    def __init__(self, *, monotonic: bool = False) -> None:
        self.monotonic = monotonic
        self._fifo: deque[Pending] = deque()
        self._latest: OrderedDict[str, Pending] = OrderedDict()
        self.bytes = 0
        self.replaced = 0

    def __len__(self) -> int:
        return len(self._latest) if self.monotonic else len(self._fifo)

    def __bool__(self) -> bool:
        return bool(self._latest) if self.monotonic else bool(self._fifo)

    def __iter__(self) -> Iterator[Pending]:
        return iter(self._latest.values()) if self.monotonic else iter(self._fifo)

    def replaces(self, dest: str) -> int:
        """Bytes a new message for `dest` would free (monotonic lanes only)."""
        if not self.monotonic:
            return 0
        old = self._latest.get(dest)
        return old.size if old is not None else 0

    def push(self, msg: Pending) -> int:
        """Append `msg`; return the bytes of a replaced older message (else 0)."""
        freed = 0
        if self.monotonic:
            old = self._latest.pop(msg.dest, None)
            if old is not None:
                freed = old.size
                self.bytes -= freed
                self.replaced += 1
            self._latest[msg.dest] = msg
        else:
            self._fifo.append(msg)
        self.bytes += msg.size
        return freed

    def peek(self) -> Pending:
        """The oldest message (IndexError/StopIteration when empty)."""
        if self.monotonic:
            return next(iter(self._latest.values()))
        return self._fifo[0]

    def pop(self) -> Pending:
        """Remove and return the oldest message."""
        msg = self._latest.popitem(last=False)[1] if self.monotonic else self._fifo.popleft()
        self.bytes -= msg.size
        return msg

    def pop_many(self, count: int, size: int) -> None:
        """Remove the `count` oldest messages, `size` bytes in all, of a FIFO queue (a batch left)."""
        popleft = self._fifo.popleft
        for _ in range(count):
            popleft()
        self.bytes -= size

    def clear(self) -> tuple[int, int]:
        """Drop everything; return (messages, bytes) dropped."""
        count, size = len(self), self.bytes
        self._fifo.clear()
        self._latest.clear()
        self.bytes = 0
        return count, size

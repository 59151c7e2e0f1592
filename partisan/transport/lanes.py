"""Lanes: which lane a message takes, and the outgoing state of one lane.

A channel has `parallelism` lanes; each lane is one ZeroMQ pipe (a DEALER of
ours, or, towards a hidden peer, our ROUTER addressed by the peer's routing
id), so messages on one lane stay in order and lanes do not block each other.
The lane is ``crc32(repr(partition_key)) % parallelism`` — never ``hash()``,
which is salted per process — so the same key always takes the same lane on
every node and every run.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from partisan.transport.backpressure import LaneQueue

if TYPE_CHECKING:
    import zmq

__all__ = ["FLAG_INLINE", "OutLane", "lane_for"]

#: Header.flags bit (the links own the high byte): the payload follows the
#: header in the same ZeroMQ part. Used for single-frame payloads under 64 KiB,
#: so the common message is one part, not two.
FLAG_INLINE = 0x0100


def lane_for(partition_key: object, parallelism: int) -> int:
    """The lane index for `partition_key` on a channel with `parallelism` lanes."""
    if parallelism <= 1:
        return 0
    return zlib.crc32(repr(partition_key).encode()) % parallelism


class OutLane:
    """One outgoing lane of a session: socket, sequence counter and unsent queue.

    `sock` is our DEALER for this lane, or our ROUTER when the peer is hidden
    (then `prefix` is ``[peer_routing_id]`` and every send is addressed).
    `up` says the ZeroMQ handshake of this lane's connection completed.
    """

    __slots__ = (
        "channel",
        "flush_due",
        "index",
        "monitor",
        "prefix",
        "queue",
        "rid",
        "sent_at",
        "seq",
        "slot",
        "sock",
        "up",
    )

    def __init__(
        self,
        *,
        channel: str,
        index: int,
        slot: int,
        rid: bytes,
        sock: zmq.Socket[bytes],
        monitor: zmq.Socket[bytes] | None,
        monotonic: bool,
        prefix: list[bytes] | None = None,
        up: bool = False,
    ) -> None:
        self.channel = channel
        self.index = index
        self.slot = slot
        self.rid = rid
        self.sock = sock
        self.monitor = monitor
        self.prefix = prefix or []
        self.queue = LaneQueue(monotonic=monotonic)
        self.seq = 0
        self.up = up
        #: When a message last left this lane (`time.perf_counter`): `Outbound` coalesces
        #: sends that follow soon after (`batch.COALESCE_WINDOW`).
        self.sent_at = 0.0
        #: A flush of coalesced messages is scheduled for the end of this loop turn.
        self.flush_due = False

    def next_seq(self) -> int:
        """Assign the next sequence number (at hand-off to ZeroMQ)."""
        self.seq += 1
        return self.seq

    @property
    def routed(self) -> bool:
        """True for the ROUTER lane towards a hidden peer."""
        return bool(self.prefix)

    def __repr__(self) -> str:
        return f"<OutLane {self.channel}[{self.index}] slot={self.slot} up={self.up} queued={len(self.queue)}>"

"""The receiving half of flow control: what we read per (peer, channel), and what is still unread.

Theory of operation
-------------------
A sender may have `send_buffer_bytes` outstanding per channel to us (see
`backpressure`). We give bytes back with cumulative CREDIT frames, one per
channel: the frame's ``seq`` is the credit (bytes the sender may forget) and
its 8-byte payload is what we have *read* from our sockets so far.

Credit used to go back as soon as the transport handed a message to the
runtime, so a slow actor's mailbox could grow the node without limit. Now the
runtime tells us what sits unread in mailboxes: each delivered message's
bytes are *held* by its `Inflow` (its (peer, channel) account) and by the
node's `InboundGauge` until an actor takes it (`Mailbox.put_held`). While the
gauge is over `inbound_buffer_bytes`, an account that holds unread bytes gets
no new credit, so its sender sees `Overloaded` or waits. The credit goes back
at once when the gauge falls under its low mark. Accounts that hold nothing
(membership traffic, replies to calls, a peer whose messages were all read)
keep their credit flowing, and the ZMTP heartbeats and PINGs are not
budgeted at all, so a full node keeps its links and its membership.

The control path (replies, Down and exit signals) is never refused by the
sender's budget. It is bounded here from the other side: when a peer has not
even *read* more than one budget of what we sent it (`ByteBudget.unread`,
which only control envelopes can push over the budget), we stop crediting
that peer's channels until it reads, since what we send it is mostly caused
by what it asks of us. `received` grows whenever the peer's loop reads its
sockets, whatever either side's credit, so two nodes can never wait for each
other's credit in a cycle.

Memory bound: unread bytes in mailboxes stay under ``inbound_buffer_bytes``
plus, per (peer, channel) that was sending when the gauge crossed it, at most
one `send_buffer_bytes` more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from partisan.transport.peer import Peer

__all__ = ["InboundGauge", "Inflow"]


class Inflow:
    """What we read on one channel of one peer session, credited and still unread."""

    __slots__ = ("channel", "consumed", "credited", "held", "peer", "reported")

    def __init__(self, peer: Peer, channel: str) -> None:
        self.peer = peer
        self.channel = channel
        self.consumed = 0  # bytes of the peer's DATA we read (this session)
        self.credited = 0  # the last cumulative credit we sent
        self.reported = 0  # the last cumulative `received` we sent
        self.held = 0  # bytes delivered into mailboxes and not yet taken by an actor

    def __repr__(self) -> str:
        return (
            f"<Inflow {self.peer.name}/{self.channel} consumed={self.consumed} "
            f"credited={self.credited} held={self.held}>"
        )


class InboundGauge:
    """Bytes of peers' messages sitting unread in this node's mailboxes, against a bound.

    The links set `account` and `size` just before they hand a message to the
    runtime; the runtime calls `hold` for what it puts into a mailbox and
    `release` when an actor takes it (or dies with it queued).
    """

    __slots__ = ("account", "held", "limit", "low", "on_release", "over", "peak", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: Withholding stops once held bytes fall to this mark (hysteresis,
        #: so a gauge hovering at the bound does not flip per message).
        self.low = limit - min(limit // 8, 4 * 1024 * 1024)
        self.held = 0
        self.peak = 0
        self.over = False
        self.account: Inflow | None = None
        self.size = 0
        self.on_release: Callable[[], None] | None = None

    def hold(self, account: Inflow, size: int) -> None:
        """Count `size` more unread bytes of `account` (the mailbox inlines the common case)."""
        account.held += size
        held = self.held = self.held + size
        if held > self.peak:
            self.peak = held
        if held > self.limit:
            self.over = True

    def release(self, account: Inflow, size: int) -> None:
        """Count `size` bytes of `account` as read (the mailbox inlines the common case)."""
        account.held -= size
        self.held -= size
        if self.over and self.held <= self.low:
            self.over = False
            if self.on_release is not None:
                self.on_release()

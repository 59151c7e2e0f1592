"""Waiting for room in a send budget, first come first served; taking CREDIT from peers.

Each (peer, channel) budget keeps a FIFO of waiting senders
(`ByteBudget.waiters`). A sender that finds no room, or finds others already
waiting, joins the back; only the oldest is woken when credit arrives, takes
its turn (`Links.send(..., waiting=True)`), and on success wakes the next. A
plain `send` meanwhile raises `Overloaded` rather than overtake them. Before,
every waiter raced on one event per peer and a lucky late sender could starve
an early one (and a plain send could take the room a waiter was woken for).

The budgets themselves live on each `Peer` (`Peer.budgets`); this part owns
only `flushed`, the event `Links.close` waits on while peers credit what we sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import TYPE_CHECKING, Any

from partisan.errors import NotConnected, Overloaded
from partisan.transport.peer import Peer, PeerTable
from partisan.transport.statistics import Rejections

if TYPE_CHECKING:
    from partisan.transport.credits import Credits
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.outbound import Outbound

__all__ = ["Flow", "backlogged"]

log = logging.getLogger(__name__)

_RECEIVED = struct.Struct("!Q")  # a CREDIT frame's payload: bytes read so far (cumulative)


def backlogged(peer: Peer) -> bool:
    """True when the peer has not read more than a budget of what we sent it.

    Only control envelopes (never refused) can take `unread` over the
    budget; see `inflow` for why we then withhold credit from that peer.
    """
    for budget in peer.budgets.values():
        if budget.queued + budget.sent - budget.received > budget.limit:
            return True
    return False


class Flow:
    """Fair waiting for send budgets, and the sender's side of CREDIT frames."""

    def __init__(
        self,
        local: Endpoint,
        table: PeerTable,
        reject: Rejections,
        outbound: Outbound,
        credits: Credits,
    ) -> None:
        self._local = local
        self._peers = table.peers
        self._reject = reject
        self._outbound = outbound
        self._credits = credits
        #: Set whenever credit arrives or a link ends: `Links.close` re-checks what is outstanding.
        self.flushed = asyncio.Event()

    async def send_wait(
        self,
        peer: str,
        channel: str,
        dest: str,
        payload: object,
        *,
        partition_key: object = None,
        timeout: float | None = None,
    ) -> None:
        """Like `send`, but wait (up to `timeout`, None = forever) for room in the budget.

        Waiters on one (peer, channel) budget are served in the order they
        started waiting. Raises `Overloaded` if there is still no room at the
        timeout, `NotConnected` if the link goes down meanwhile.
        """
        state = self._peers.get(peer)
        if state is None or state.closing or self._local.closed:
            raise NotConnected(f"{self._local.name} has no link to {peer}")
        budget = state.budget(channel)
        send = self._outbound.send
        if not budget.waiters:
            try:
                send(peer, channel, dest, payload, partition_key=partition_key)
                return
            except Overloaded:
                pass
        loop = self._local.running()
        deadline = None if timeout is None else loop.time() + timeout
        waiter: asyncio.Future[None] = loop.create_future()
        budget.waiters.append(waiter)
        try:
            while True:
                if budget.waiters[0] is waiter:  # our turn
                    if self._peers.get(peer) is not state:
                        raise NotConnected(f"link to {peer} went down while waiting for room")
                    try:
                        send(
                            peer, channel, dest, payload, partition_key=partition_key, waiting=True
                        )
                        return
                    except Overloaded:
                        pass
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise Overloaded(
                        f"no room to send to {peer} on {channel!r} within {timeout} s "
                        f"({budget.outstanding} of {budget.limit} bytes outstanding)"
                    )
                if waiter.done():  # woken, but not enough room: wait again in place
                    fresh: asyncio.Future[None] = loop.create_future()
                    budget.waiters[budget.waiters.index(waiter)] = fresh
                    waiter = fresh
                await asyncio.wait((waiter,), timeout=remaining)
        finally:
            with contextlib.suppress(ValueError):
                budget.waiters.remove(waiter)
            # The next in line may fit in what is left (or must see the link is gone).
            if budget.waiters and (
                budget.outstanding < budget.limit or self._peers.get(peer) is not state
            ):
                budget.wake()

    def take_credit(self, peer: Peer, channel: str, credit: int, payload: list[Any]) -> None:
        """A CREDIT frame for `channel`: record it, wake the oldest waiter, re-check withholding."""
        budget = peer.budgets.get(channel)
        if budget is None:
            self._reject("protocol_error", peer, f"CREDIT for {channel!r}, which we never sent on")
            return
        if payload:
            try:
                (received,) = _RECEIVED.unpack(bytes(payload[0]))
            except struct.error:
                self._reject("protocol_error", peer, "malformed CREDIT payload")
                return
            was_backlogged = budget.unread > budget.limit
            budget.received = max(budget.received, min(received, budget.sent))
            if was_backlogged and budget.unread <= budget.limit:
                # We may have withheld credit from this peer for it (`inflow`).
                self._credits.hurry()
                self._local.running().call_soon(self._credits.send, True)
        if budget.credit(credit):
            budget.wake()
            peer.room.set()
            self.flushed.set()

    def wake_all(self, peer: Peer) -> None:
        """The link is gone: every waiting sender must learn it (they raise NotConnected)."""
        for budget in peer.budgets.values():
            for waiter in budget.waiters:
                if not waiter.done():
                    waiter.set_result(None)

"""Returning CREDIT to senders: the receiving half of the per-channel byte budgets.

A sender may have at most `send_buffer_bytes` in flight to a peer on each
channel; the peer gives bytes back with CREDIT frames, one per channel, as it
reads them (see `partisan.transport.backpressure` and `inflow`, which also
says when credit is withheld). The receive path records what it read per
(peer, channel) `Inflow` and puts the account in `due`; this part decides
when to tell the sender, and owns the `InboundGauge` the runtime reports
unread mailbox bytes to.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING

import zmq

from partisan.transport.flow import backlogged
from partisan.transport.inflow import InboundGauge, Inflow
from partisan.transport.peer import PeerTable
from partisan.transport.wire import Header, Kind, encode_header

if TYPE_CHECKING:
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.receive import Receiver

__all__ = ["CREDIT_CHUNK", "Credits"]

log = logging.getLogger(__name__)

CREDIT_CHUNK = 1 << 20  # bytes read before a CREDIT goes at once (at most)
_CREDIT_DELAY = 0.01  # seconds before a smaller credit goes anyway
_RECEIVED = struct.Struct("!Q").pack
#: Channels whose credit is never withheld: the membership manager reads them at once.
_NEVER_WITHHELD = frozenset({"membership"})


class Credits:
    """Batch CREDIT frames back to the peers whose messages we read."""

    def __init__(self, local: Endpoint, table: PeerTable, receiver: Receiver) -> None:
        self._local = local
        self._table = table
        self._receiver = receiver
        #: Accounts read since their last CREDIT (the receive path adds to it).
        self.due: set[Inflow] = set()
        #: Unreported bytes of one account that make its CREDIT go at once.
        self.chunk = min(local.config.send_buffer_bytes // 4, CREDIT_CHUNK)
        #: Bytes of peers' messages unread in our mailboxes (the runtime holds and releases).
        self.gauge = InboundGauge(local.config.inbound_buffer_bytes)
        self.gauge.on_release = self._release
        self._timer = False  # a `_later` call is scheduled
        self._urgent = False  # some account's unreported bytes reached `chunk`

    def hurry(self) -> None:
        """An account reached `chunk`: the next `send` must not wait for the timer."""
        self._urgent = True

    def forget(self, inflows: list[Inflow]) -> None:
        """The link of these accounts is gone: nothing is due to it any more."""
        for inflow in inflows:
            self.due.discard(inflow)

    def _withheld(self, inflow: Inflow, verdicts: dict[object, bool]) -> bool:
        """True while `inflow`'s credit must wait (see `inflow`'s theory of operation)."""
        if inflow.channel in _NEVER_WITHHELD:
            return False
        if inflow.held and self.gauge.over:
            return True  # its messages sit unread in mailboxes and the node is over its bound
        peer = inflow.peer
        verdict = verdicts.get(peer)
        if verdict is None:
            verdict = verdicts[peer] = backlogged(peer)
        return verdict

    def send(self, force: bool = False) -> None:
        """Return CREDIT for accounts whose read bytes grew enough (or all, if `force`).

        A send from this thread can cost a context switch to libzmq's I/O
        thread (measured ~0.3-1 ms on 2 busy cores, against ~1.5 µs per
        received message), so credits are batched: one when an account's
        unreported bytes reach `chunk` (a quarter of the budget, at most
        1 MiB: the sender never stalls while three quarters are still in
        flight), and the rest within `_CREDIT_DELAY` seconds. An account whose
        credit is withheld still reports what was read (the sender's
        `received`), and stays due until its credit can go.
        """
        if not self.due:
            return
        if not force and self._timer and not self._urgent:
            return  # no account reached a chunk, and the timer will send the rest
        self._urgent = False
        local = self._local
        chunk = self.chunk
        router_used = False
        waiting = False  # some account is due for its own reasons (not only withheld)
        verdicts: dict[object, bool] = {}
        for inflow in list(self.due):
            peer = inflow.peer
            if not self._table.current(peer):
                self.due.discard(inflow)
                continue
            consumed = inflow.consumed
            withheld = consumed > inflow.credited and self._withheld(inflow, verdicts)
            credit = inflow.credited if withheld else consumed
            if credit == inflow.credited and consumed == inflow.reported:
                if not withheld:
                    self.due.discard(inflow)
                continue  # nothing new to say: a withheld account waits for a release
            if not force and consumed - inflow.reported < chunk:
                waiting = True
                continue
            header = encode_header(
                Header(Kind.CREDIT, local.name, local.incarnation, inflow.channel, "", credit, 0)
            )
            frames = [header, _RECEIVED(consumed)]
            try:
                if peer.credit_rid is not None and local.router is not None:
                    local.router.send_multipart([peer.credit_rid, *frames], zmq.NOBLOCK)
                    router_used = True
                elif peer.credit_lane is not None and not peer.credit_lane.sock.closed:
                    peer.credit_lane.sock.send_multipart(frames, zmq.NOBLOCK)
                    self._receiver.mark_dirty(peer, peer.credit_lane)
            except zmq.Again:
                waiting = True
                continue  # retried by the timer below
            except zmq.ZMQError as exc:
                log.debug("credit to %s not sent: %s", peer.name, exc)
            inflow.credited = credit
            inflow.reported = consumed
            if not withheld:
                self.due.discard(inflow)
        if router_used:
            self._receiver.recheck_router()
        if waiting and not self._timer and local.loop is not None:
            self._timer = True
            local.loop.call_later(_CREDIT_DELAY, self._later)

    def _later(self) -> None:
        self._timer = False
        self.send(force=True)

    def _release(self) -> None:
        """The node's unread bytes fell under the bound: credit what was withheld."""
        if self._local.loop is not None and not self._local.closed:
            self._local.loop.call_soon(self.send, True)

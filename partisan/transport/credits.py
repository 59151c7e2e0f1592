"""Returning CREDIT to senders: the receiving half of the per-channel byte budgets.

A sender may have at most `send_buffer_bytes` in flight to a peer on each
channel; the peer gives bytes back with CREDIT frames, one per channel, as it
reads them (see `partisan.transport.backpressure` and `inflow`, which also
says when credit is withheld). The receive path records what it read per
(peer, channel) `Inflow` and puts the account in `_credit_due`; this mixin
decides when to tell the sender.
"""

from __future__ import annotations

import logging
import struct

import zmq

from partisan.transport.core import LinksCore
from partisan.transport.inflow import Inflow
from partisan.transport.wire import Header, Kind, encode_header

__all__ = ["CREDIT_CHUNK", "CreditReturn"]

log = logging.getLogger(__name__)

CREDIT_CHUNK = 1 << 20  # bytes read before a CREDIT goes at once (at most)
_CREDIT_DELAY = 0.01  # seconds before a smaller credit goes anyway
_RECEIVED = struct.Struct("!Q").pack
#: Channels whose credit is never withheld: the membership manager reads them at once.
_NEVER_WITHHELD = frozenset({"membership"})


class CreditReturn(LinksCore):
    """Batch CREDIT frames back to the peers whose messages we read."""

    def _withheld(self, inflow: Inflow, backlogged: dict[object, bool]) -> bool:
        """True while `inflow`'s credit must wait (see `inflow`'s theory of operation)."""
        if inflow.channel in _NEVER_WITHHELD:
            return False
        if inflow.held and self.gauge.over:
            return True  # its messages sit unread in mailboxes and the node is over its bound
        peer = inflow.peer
        verdict = backlogged.get(peer)
        if verdict is None:
            verdict = backlogged[peer] = self._backlogged(peer)
        return verdict

    def _send_credits(self, force: bool = False) -> None:
        """Return CREDIT for accounts whose read bytes grew enough (or all, if `force`).

        A send from this thread can cost a context switch to libzmq's I/O
        thread (measured ~0.3-1 ms on 2 busy cores, against ~1.5 µs per
        received message), so credits are batched: one when an account's
        unreported bytes reach `_credit_chunk` (a quarter of the budget, at
        most 1 MiB: the sender never stalls while three quarters are still in
        flight), and the rest within `_CREDIT_DELAY` seconds. An account whose
        credit is withheld still reports what was read (the sender's
        `received`), and stays due until its credit can go.
        """
        if not self._credit_due:
            return
        if not force and self._credit_timer and not self._credit_urgent:
            return  # no account reached a chunk, and the timer will send the rest
        self._credit_urgent = False
        chunk = self._credit_chunk
        router_used = False
        waiting = False  # some account is due for its own reasons (not only withheld)
        backlogged: dict[object, bool] = {}
        for inflow in list(self._credit_due):
            peer = inflow.peer
            if self._peers.get(peer.name) is not peer:
                self._credit_due.discard(inflow)
                continue
            consumed = inflow.consumed
            withheld = consumed > inflow.credited and self._withheld(inflow, backlogged)
            credit = inflow.credited if withheld else consumed
            if credit == inflow.credited and consumed == inflow.reported:
                if not withheld:
                    self._credit_due.discard(inflow)
                continue  # nothing new to say: a withheld account waits for a release
            if not force and consumed - inflow.reported < chunk:
                waiting = True
                continue
            header = encode_header(
                Header(Kind.CREDIT, self.name, self.incarnation, inflow.channel, "", credit, 0)
            )
            frames = [header, _RECEIVED(consumed)]
            try:
                if peer.credit_rid is not None and self._router is not None:
                    self._router.send_multipart([peer.credit_rid, *frames], zmq.NOBLOCK)
                    router_used = True
                elif peer.credit_lane is not None and not peer.credit_lane.sock.closed:
                    peer.credit_lane.sock.send_multipart(frames, zmq.NOBLOCK)
                    self._mark_dirty(peer, peer.credit_lane)
            except zmq.Again:
                waiting = True
                continue  # retried by the timer below
            except zmq.ZMQError as exc:
                log.debug("credit to %s not sent: %s", peer.name, exc)
            inflow.credited = credit
            inflow.reported = consumed
            if not withheld:
                self._credit_due.discard(inflow)
        if router_used:
            self._recheck_router()
        if waiting and not self._credit_timer and self._loop is not None:
            self._credit_timer = True
            self._loop.call_later(_CREDIT_DELAY, self._credit_later)

    def _credit_later(self) -> None:
        self._credit_timer = False
        self._send_credits(force=True)

    def _release_credits(self) -> None:
        """The node's unread bytes fell under the bound: credit what was withheld."""
        if self._loop is not None and not self._closed:
            self._loop.call_soon(self._send_credits, True)

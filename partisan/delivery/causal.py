"""Causal channels: deliver a message only after everything that causally precedes it.

Theory of operation
-------------------
Partisan (reference §5.2) keeps one vector clock per causal label and sends,
with each message, the clock of the last message this node sent to the same
destination (Schiper-Eggli-Sandoz); its merged order buffer is computed and
then dropped, so transitive dependencies are lost. We use an exact scheme
built on the acked streams, which already number every (sender incarnation
→ receiver incarnation) pair's messages on a causal channel 1, 2, 3 ...:

* Each node keeps, per causal channel, its **knowledge**: for each stream
  (src, src incarnation, dst, dst incarnation), the highest sequence number
  in this node's causal past. Sending message n on stream s sets
  knowledge[s] = n; the message carries a copy (`Data.deps`).
* A receiver delivers a message (in stream order, after the acked layer's
  deduplication) only when, for every entry naming itself as destination,
  it has already delivered that many messages from that source. Delivering
  merges the message's knowledge into the receiver's (entry-wise max), so
  whatever it sends afterwards depends on it, transitively.
* A dependency on an incarnation known to be over (restarted, left, or a
  stream that gave up) is released with a ``causal.released`` event; so is a
  message that waited longer than `ack_timeout`. Nothing waits forever.

Cost: a message carries one entry per stream active on the channel in the
sender's causal past (3 nodes sending to each other: at most 6); the
benchmark measures it. The receiver acknowledges a causal message only once
delivered, so what waits here is bounded by the senders' `ack_window` and a
sender past it gets `Overloaded`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from partisan.identity import NodeSpec

__all__ = ["Causal"]

logger = logging.getLogger(__name__)

Stream = tuple[str, int, str, int]  # src, src incarnation, dst, dst incarnation


class Causal:
    """One node's causal state across its causal channels."""

    def __init__(
        self,
        name: str,
        incarnation: int,
        hand_up: Callable[[NodeSpec, Any, Any], None],
        event: Callable[..., None],
    ) -> None:
        self.name = name
        self.incarnation = incarnation
        self._hand_up = hand_up
        self._event = event
        #: channel -> stream -> highest seq in our causal past
        self.knowledge: dict[str, dict[Stream, int]] = {}
        #: channel -> (src, src incarnation) -> messages delivered here
        self.delivered: dict[str, dict[tuple[str, int], int]] = {}
        #: (src, src inc, channel, lane) -> (sender, [(data, arrived)])
        self.pending: dict[tuple[str, int, str, int], tuple[NodeSpec, deque[Any]]] = {}
        #: node -> its newest incarnation known to be over (it and older ones are dead)
        self.dead: dict[str, int] = {}
        self.waiting = 0
        self.released = 0
        #: messages that arrived before a dependency and had to wait (cumulative)
        self.held = 0
        #: the loop's time, set by the acked layer before each offer
        self.now = 0.0

    def stamp(self, node: str, peer_inc: int, channel: str, seq: int) -> tuple[Any, ...]:
        """Record our send of `seq` to `node` and return the dependencies it carries."""
        known = self.knowledge.setdefault(channel, {})
        known[(self.name, self.incarnation, node, peer_inc)] = seq
        return tuple((*stream, n) for stream, n in known.items())

    def unstamp(self, node: str, peer_inc: int, channel: str, seq: int) -> None:
        """The send of `seq` did not happen after all."""
        known = self.knowledge.get(channel)
        if known is not None:
            stream = (self.name, self.incarnation, node, peer_inc)
            if seq > 1:
                known[stream] = seq - 1
            else:
                known.pop(stream, None)

    def offer(self, sender: NodeSpec, key: tuple[str, int, str, int], data: Any) -> None:
        """An in-order message of a causal stream: deliver it (and what it unblocks) or wait."""
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = (sender, deque())
        entry[1].append((data, self.now))
        self.waiting += 1
        self._drain()
        if entry[1] and entry[1][-1][0] is data:
            self.held += 1

    def _ready(self, channel: str, src: tuple[str, int], deps: Any) -> bool:
        delivered = self.delivered.get(channel, {})
        for s, si, d, di, n in deps:
            if d != self.name or (di and di != self.incarnation) or (s, si) == src:
                continue
            if delivered.get((s, si), 0) < n and si > self.dead.get(s, -1):
                return False
        return True

    def _drain(self) -> None:
        progress = True
        while progress:
            progress = False
            for key, (sender, queue) in list(self.pending.items()):
                while queue:
                    data, _ = queue[0]
                    if not self._ready(data.channel, (key[0], key[1]), data.deps):
                        break
                    queue.popleft()
                    self._deliver(sender, key, data)
                    progress = True
                if not queue:
                    self.pending.pop(key, None)

    def _deliver(self, sender: NodeSpec, key: tuple[str, int, str, int], data: Any) -> None:
        self.waiting -= 1
        channel = data.channel
        delivered = self.delivered.setdefault(channel, {})
        delivered[(key[0], key[1])] = data.seq
        known = self.knowledge.setdefault(channel, {})
        for s, si, d, di, n in data.deps:
            stream = (s, si, d, di)
            if known.get(stream, 0) < n:
                known[stream] = n
        self._hand_up(sender, key, data)

    def incarnation_ended(self, node: str, incarnation: int) -> None:
        """Dependencies on `node`'s `incarnation` (and older) are released."""
        if incarnation <= self.dead.get(node, -1):
            return
        self.dead[node] = incarnation
        for key in [k for k in self.pending if k[0] == node and k[1] <= incarnation]:
            _, queue = self.pending.pop(key)
            self.waiting -= len(queue)  # a dead sender's undelivered tail: never acked
        before = self.waiting
        self._drain()
        if before != self.waiting:
            self.released += 1
            self._event(
                "causal.released", peer=node, peer_incarnation=incarnation, reason="restarted"
            )

    def expire(self, now: float, timeout: float) -> None:
        """Deliver heads that waited past `timeout` (a dependency that never came)."""
        self.now = now
        for key, (sender, queue) in list(self.pending.items()):
            if queue and now - queue[0][1] > timeout:
                data, _ = queue.popleft()
                self.released += 1
                self._event("causal.released", peer=key[0], peer_incarnation=key[1],
                            reason="timeout", channel=data.channel, seq=data.seq)  # fmt: skip
                self._deliver(sender, key, data)
        self._drain()

"""Flood broadcast over the overlay: HyParView's own dissemination (TR §4.1).

Theory of operation: the source delivers and sends the payload to every
neighbour; a node that receives a message it has not seen delivers it and
forwards it to every neighbour except the one it came from; a message seen
before is dropped. Over a connected symmetric overlay this reaches every node
deterministically (reliability 100%) at the price of redundancy: on a
k-regular overlay each node sends k-1 copies, so RMR = k-2 (3 for k = 5).

The neighbours are whatever the driver reports (the manager's active view).
With `fanout` set it is instead the classic gossip of Cyclon and Scamp: each
node forwards to `fanout` random neighbours (the HyParView paper's baselines
use 4), which is probabilistic and never quite reaches everyone.
Seen ids are kept for `PlumtreeConfig.message_ttl` seconds and forgotten
lazily (no timer), so memory stays bounded without keeping the simulator busy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL, Deliver, LayerAction
from partisan.membership.types import Random, Received, Send, TimerFired

__all__ = ["Flood", "FloodMessage"]


@dataclass(frozen=True, slots=True)
class FloodMessage:
    """A flooded payload; `hops` counts overlay hops from the source."""

    carries_payload: ClassVar[bool] = True

    msg_id: Hashable
    payload: Any
    hops: int


class Flood:
    """Flood broadcast state machine for one node."""

    # slotted: at n = 100,000 a flood is memory-bound, and a per-node dict of
    # attributes is one more cache miss for every copy a node receives
    __slots__ = ("_neighbors", "_seen", "_sorted", "dropped", "fanout", "rng", "spec", "ttl")

    name = "flood"

    def __init__(
        self, self_spec: NodeSpec, config: Config, rng: Random, *, fanout: int | None = None
    ) -> None:
        self.spec = self_spec
        self.rng = rng
        self.fanout = fanout
        self.ttl = config.plumtree.message_ttl
        self._neighbors: dict[str, NodeSpec] = {}
        # the neighbours sorted by name, rebuilt only when they change (a
        # flood forwards once per node per message; views change rarely)
        self._sorted: list[tuple[str, NodeSpec]] | None = []
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self.dropped = 0  # messages that were not FloodMessages (a peer's bad input)

    def neighbors(self) -> Sequence[NodeSpec]:
        return [self._neighbors[n] for n in sorted(self._neighbors)]

    def neighbor_up(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        self._neighbors[peer.name] = peer
        self._sorted = None
        return []

    def neighbor_down(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        if self._neighbors.get(peer.name) == peer:
            del self._neighbors[peer.name]
            self._sorted = None
        return []

    def broadcast(self, msg_id: Hashable, payload: Any, now: float) -> list[LayerAction]:
        if msg_id in self._seen:
            raise ValueError(f"broadcast id {msg_id!r} was already used")
        self._remember(msg_id, now)
        return [Deliver(msg_id, payload, 0, None), *self._forward(msg_id, payload, 1, None)]

    def handle(self, event: Received | TimerFired, now: float) -> list[LayerAction]:
        if not isinstance(event, Received) or not _well_formed(event.msg):
            self.dropped += 1  # a peer's bad input: counted and dropped, never raised
            return []
        msg = event.msg
        if msg.msg_id in self._seen:
            return []
        self._remember(msg.msg_id, now)
        return [
            Deliver(msg.msg_id, msg.payload, msg.hops, event.sender),
            *self._forward(msg.msg_id, msg.payload, msg.hops + 1, event.sender.name),
        ]

    def receive(self, sender: NodeSpec, msg: Any, now: float) -> list[LayerAction]:
        """``handle(Received(sender, msg), now)`` without building the event (simulator)."""
        # Most copies a node gets are duplicates (k-1 of every k on a k-regular
        # overlay): they cost one lookup. The checks are _well_formed's, inlined
        # (except the hash: an unhashable id raises here, as it always did).
        if type(msg) is FloodMessage:
            msg_id, hops = msg.msg_id, msg.hops
            if msg_id not in self._seen:
                if type(hops) is int and hops >= 0:
                    self._remember(msg_id, now)
                    return [
                        Deliver(msg_id, msg.payload, hops, sender),
                        *self._forward(msg_id, msg.payload, hops + 1, sender.name),
                    ]
            elif type(hops) is int and hops >= 0:
                return []
        self.dropped += 1
        return []

    def _forward(
        self, msg_id: Hashable, payload: Any, hops: int, skip: str | None
    ) -> list[LayerAction]:
        out = FloodMessage(msg_id, payload, hops)
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self._neighbors.items())
        if self.fanout is not None:
            targets = [name for name, _ in ordered if name != skip]
            if len(targets) > self.fanout:
                targets = sorted(self.rng.sample(targets, self.fanout))
            neighbors = self._neighbors
            return [_send(neighbors[name], out) for name in targets]
        return [_send(spec, out) for name, spec in ordered if name != skip]

    def _remember(self, msg_id: Hashable, now: float) -> None:
        seen = self._seen
        seen[msg_id] = now
        horizon = now - self.ttl
        while seen:
            first = next(iter(seen))
            if seen[first] >= horizon:
                break
            del seen[first]


def _well_formed(msg: object) -> bool:
    if type(msg) is not FloodMessage or type(msg.hops) is not int or msg.hops < 0:
        return False
    try:
        hash(msg.msg_id)
    except TypeError:
        return False
    return True


_new = object.__new__
_send_peer = Send.__dict__["peer"].__set__
_send_msg = Send.__dict__["msg"].__set__
_send_channel = Send.__dict__["channel"].__set__


def _send(peer: NodeSpec, msg: FloodMessage) -> Send:
    """``Send(peer, msg, BROADCAST_CHANNEL)`` built through its slots (the frozen
    dataclass's ``__init__`` costs twice as much; a flood makes one per edge)."""
    send = _new(Send)
    _send_peer(send, peer)
    _send_msg(send, msg)
    _send_channel(send, BROADCAST_CHANNEL)
    return send

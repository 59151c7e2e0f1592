"""`partisan.broadcast` on a real node: drive Plumtree (or flood) over the live overlay.

Theory of operation
-------------------
The broadcast layers (`partisan.membership.plumtree`, `.flood`) are pure state
machines; the simulator drives them in `partisan.membership.sim_engine`. This
module is the same thin loop over real links, owned by the `PeerService`:

* **Neighbours** are the manager's overlay — ``manager.active()`` — restricted
  to peers with a live, non-hidden link. HyParView: the active view. Full mesh:
  every other member. Client-server: a client's servers; a server's clients
  and other servers. Static: the configured (joined) links. After every step
  of the manager (`PeerService.handle`, which also follows every peer up and
  down) `sync` compares that set with what the layer was told and feeds it
  ``neighbor_down`` / ``neighbor_up`` — as the simulator's ``_sync_layer``.
* **Layer**: Plumtree for HyParView, full mesh and client-server; flood for
  static (its links are whatever the operator configured, so the contract
  floods them). Plumtree runs with ``announce_window`` set (see plumtree.py's
  deviations): a new neighbour hears the ids of the last
  ``heartbeat_timeout + handshake_timeout + lazy_tick`` seconds, so a
  broadcast sent while a failure cut the overlay still reaches the far side
  once HyParView has healed it.
* **Messages** travel to the destination ``"$broadcast"``: payload-carrying
  ones on the broadcast's channel (``partisan.broadcast(..., channel=)``,
  default ``"broadcast"``), announcements, grafts and prunes on the
  ``broadcast`` channel, all through `PeerService.send` (which dials a
  temporary link when a graft answers a peer that is no longer a neighbour).
* **Timers** use ``loop.call_at`` on the loop's clock, like the manager's.
* **Delivery**: the layer's payload is ``(channel, name, msg)``. `Deliver`
  puts `msg` in the mailbox of the actor registered as `name` here, or counts
  it in ``runtime.drops["unknown_name"]`` (and ``no_receiver`` here). The
  layer delivers each id once per node (ids are remembered
  ``plumtree.message_ttl`` seconds), so every live non-hidden node that the
  overlay connects gets it exactly once.
* **Ids** are ``(node name, incarnation, counter)``: unique cluster-wide.

Counters: ``payloads_received`` / ``delivered_remote`` give the relative
message redundancy of the whole cluster (`rmr`): RMR = payload messages
received / (nodes reached - 1) - 1, summed over broadcasts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partisan.errors import NotConnected
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL, Deliver, LayerAction
from partisan.membership.flood import Flood, FloodMessage
from partisan.membership.plumtree import Gossip, Plumtree
from partisan.membership.types import CancelTimer, Received, Send, SetTimer, TimerFired

if TYPE_CHECKING:
    from partisan.peer_service import PeerService

__all__ = ["BROADCAST_DEST", "BroadcastService", "BroadcastStatistics", "rmr"]

logger = logging.getLogger(__name__)

#: The destination Plumtree / flood messages are addressed to (like ``"$membership"``).
BROADCAST_DEST = "$broadcast"


@dataclass(frozen=True, slots=True)
class BroadcastStatistics:
    """One node's broadcast counters (an immutable snapshot).

    `delivered` counts first arrivals here, own broadcasts included;
    `delivered_remote` only those that came from a peer (the "nodes reached
    - 1" of RMR); `payloads_received` every payload-carrying message that
    arrived, duplicates included.
    """

    layer: str
    started: int
    delivered: int
    delivered_remote: int
    payloads_received: int
    payloads_sent: int
    no_receiver: int
    dropped: int
    neighbors: int
    eager: int
    lazy: int
    grafts: int
    prunes: int


def rmr(stats: Iterable[BroadcastStatistics]) -> float:
    """Relative message redundancy of a cluster from its nodes' statistics.

    Σ payload messages received / Σ (nodes reached - 1) - 1; 0 means each node
    got each payload once (a tree), k - 2 is a flood over a k-regular overlay.
    """
    received = reached = 0
    for s in stats:
        received += s.payloads_received
        reached += s.delivered_remote
    return received / reached - 1 if reached else 0.0


class BroadcastService:
    """The broadcast layer of one node, driven over its links (see the module docstring)."""

    def __init__(self, peer_service: PeerService) -> None:
        self.service = peer_service
        config = peer_service.config
        spec = peer_service.spec
        self.spec = spec
        rng = random.Random()  # neither layer draws from it unless given a fanout
        self.layer: Plumtree | Flood
        if config.manager == "static":
            self.layer = Flood(spec, config, rng)
        else:
            window = config.heartbeat_timeout + config.handshake_timeout
            self.layer = Plumtree(
                spec, config, rng, announce_window=window + config.plumtree.lazy_tick
            )
        self._known: dict[str, NodeSpec] = {}  # what the layer was told
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._counter = 0
        self._closed = False
        self._started = self._delivered = self._delivered_remote = 0
        self._payloads_received = self._payloads_sent = 0
        self._no_receiver = self._dropped = 0

    # ------------------------------------------------------------- public

    def broadcast(self, msg: Any, name: str, channel: str = BROADCAST_CHANNEL) -> Hashable:
        """Deliver `msg` to the actor `name` on every live node of the overlay; return its id.

        Raises `ValueError` for an unknown channel, `TypeError` for a name that
        is not a string, `NotConnected` once the node is stopping.
        """
        if not isinstance(name, str):
            raise TypeError(f"broadcast: name must be a registered name (str), got {name!r}")
        channels = self.service.links.channels
        if channel not in channels:
            raise ValueError(
                f"broadcast: unknown channel {channel!r}; configured: {', '.join(sorted(channels))}"
            )
        loop = self.service._loop
        if self._closed or loop is None:
            raise NotConnected(f"node {self.spec.name} is not running its overlay")
        self.sync()
        self._counter += 1
        msg_id = (self.spec.name, self.spec.incarnation, self._counter)
        self._started += 1
        self._apply(self.layer.broadcast(msg_id, (channel, name, msg), loop.time()))
        return msg_id

    def relay_peers(self) -> list[NodeSpec]:
        """The out-links of this node's broadcast tree: Plumtree's eager peers.

        Flood has no tree (every neighbour); a Plumtree node whose links are
        all lazy (a transient state) also uses every neighbour.
        """
        self.sync()
        layer = self.layer
        if isinstance(layer, Plumtree):
            eager = [layer.eager[n] for n in sorted(layer.eager) if n in self._known]
            if eager:
                return eager
        return [self._known[n] for n in sorted(self._known)]

    def neighbors(self) -> Sequence[NodeSpec]:
        return [self._known[n] for n in sorted(self._known)]

    def statistics(self) -> BroadcastStatistics:
        layer = self.layer
        if isinstance(layer, Plumtree):
            p = layer.statistics()
            eager, lazy, grafts, prunes, dropped = (
                p.eager,
                p.lazy,
                p.grafts_sent,
                p.prunes_sent,
                p.dropped,
            )
        else:
            eager, lazy, grafts, prunes, dropped = len(self._known), 0, 0, 0, layer.dropped
        return BroadcastStatistics(
            layer=layer.name,
            started=self._started,
            delivered=self._delivered,
            delivered_remote=self._delivered_remote,
            payloads_received=self._payloads_received,
            payloads_sent=self._payloads_sent,
            no_receiver=self._no_receiver,
            dropped=self._dropped + dropped,
            neighbors=len(self._known),
            eager=eager,
            lazy=lazy,
            grafts=grafts,
            prunes=prunes,
        )

    def close(self) -> None:
        """Cancel the layer's timers (idempotent); later messages are ignored."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -------------------------------------------------------------- events

    def on_message(self, sender: NodeSpec, channel: str, msg: Any) -> None:
        """A frame to ``"$broadcast"`` arrived (PeerService routes it here)."""
        loop = self.service._loop
        if self._closed or loop is None:
            return
        if sender.name in self.service.dist.hidden or not _well_formed(msg):
            self._dropped += 1  # a hidden peer is in no overlay; bad input is counted
            return
        if getattr(msg, "carries_payload", False):
            self._payloads_received += 1
        self.sync()
        self._apply(self.layer.handle(Received(sender, msg), loop.time()))

    def sync(self) -> None:
        """Tell the layer how the overlay (the manager's active view with live links) changed."""
        service = self.service
        loop = service._loop
        if self._closed or loop is None:
            return
        linked = service.links.is_connected
        current = {
            s.name: s
            for s in service.manager.active()
            if s.name != self.spec.name and linked(s.name)
        }
        known = self._known
        if current.keys() == known.keys() and all(current[n] == known[n] for n in current):
            return  # the common case: nothing changed
        now = loop.time()
        for name in list(known):
            if current.get(name) != known[name]:
                spec = known.pop(name)
                self._apply(self.layer.neighbor_down(spec, now))
        for name, spec in current.items():
            if name not in known:
                known[name] = spec
                self._apply(self.layer.neighbor_up(spec, now))

    # ------------------------------------------------------------- actions

    def _apply(self, actions: Sequence[LayerAction]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                self._send(action)  # type: ignore[arg-type]
            elif kind is Deliver:
                self._deliver(action)  # type: ignore[arg-type]
            elif kind is SetTimer:
                self._set_timer(action.name, action.at)  # type: ignore[union-attr]
            elif kind is CancelTimer:
                handle = self._timers.pop(action.name, None)  # type: ignore[union-attr]
                if handle is not None:
                    handle.cancel()

    def _send(self, action: Send) -> None:
        msg = action.msg
        channel = action.channel
        if getattr(msg, "carries_payload", False):
            self._payloads_sent += 1
            wanted = msg.payload[0]
            if wanted in self.service.links.channels:
                channel = wanted
        self.service.send(action.peer, channel, BROADCAST_DEST, msg)

    def _deliver(self, action: Deliver) -> None:
        self._delivered += 1
        if action.sender is not None:
            self._delivered_remote += 1
        _, name, msg = action.payload
        runtime = self.service.dist.runtime
        proc = runtime.names.get(name)
        if proc is None:
            self._no_receiver += 1
            runtime.drops["unknown_name"] += 1
            return
        proc.put(msg)

    def _set_timer(self, name: str, at: float) -> None:
        loop = self.service._loop
        assert loop is not None
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = loop.call_at(at, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        loop = self.service._loop
        if self._closed or loop is None:
            return
        self.sync()
        self._apply(self.layer.handle(TimerFired(name), loop.time()))


def _well_formed(msg: Any) -> bool:
    """Payload-carrying messages must hold ``(channel, name, msg)`` with string names."""
    if type(msg) is Gossip or type(msg) is FloodMessage:
        payload = msg.payload
        return (
            type(payload) is tuple
            and len(payload) == 3
            and type(payload[0]) is str
            and type(payload[1]) is str
        )
    return True  # announcements, grafts, prunes: the layer checks and counts them

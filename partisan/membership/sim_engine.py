"""The simulator's engine: the event heap, the run loop and what each action does.

`partisan.membership.sim.Simulator` is the user-facing half (nodes, faults,
queries); this half carries out the actions managers and broadcast layers
return, with the network model described in sim.py's docstring. Split out
because the two halves change for different reasons: faults and helpers grow
with the tests, the hot loop changes only for speed.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Hashable
from typing import Any

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL, BroadcastLayer, Deliver
from partisan.membership.sim_model import BroadcastRecord, LinkModel
from partisan.membership.sim_setup import (
    LayerFactory,
    ManagerFactory,
    gc_paused,
    resolve_layer,
    resolve_manager,
)
from partisan.membership.types import (
    CancelTimer,
    Connect,
    Disconnect,
    Manager,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

__all__ = [
    "BROADCAST",
    "MANAGER",
    "BroadcastRecord",
    "Engine",
    "LinkModel",
    "SimNode",
]

log = logging.getLogger(__name__)


MANAGER, BROADCAST = 0, 1  # layer ids (timers and routing)
_RECV, _EVENT, _TIMER, _CALL = 0, 1, 2, 3  # heap entry kinds
_heappush = heapq.heappush
_Entry = tuple[float, int, int, Any, Any, Any, Any]  # (time, seq, kind, node, a, b, c)
_TIMER_SLOTS = 64  # timer calendar slots per virtual second (see Engine._buckets)
# last-arrival entries per node before the past ones are dropped (64 kept up to
# ~4 KB of stale entries per node: ~400 MB at n = 100,000, and a cache miss per send)
_FIFO_PRUNE = 8
_MEMBERSHIP = "membership"  # Send's default channel (compared by identity first)


class SimNode:
    """One simulated node: its spec, manager, broadcast layer and timers."""

    # ordered by use (a message reads the first five), not by name
    __slots__ = (  # noqa: RUF023
        "alive", "manager", "receive", "spec", "last_arrival", "layer", "layer_receive",
        "timers", "conns", "neighbors", "rng",
    )  # fmt: skip

    def __init__(self, spec: NodeSpec, manager: Manager, layer: BroadcastLayer | None) -> None:
        self.spec = spec
        self.manager = manager
        # `manager.receive(sender, msg, now)`, when it has one, is `handle(Received(...))`
        # without building the event: one call per delivered message
        self.receive: Callable[[NodeSpec, Any, float], list[Any]] | None = getattr(
            manager, "receive", None
        )
        self.layer = layer
        self.layer_receive = _receiver(layer)
        self.alive = True
        self.timers: dict[tuple[int, str], int] = {}  # (layer, name) -> token
        self.conns: set[str] = set()  # peers connected by Connect (for crash notices)
        self.neighbors: dict[str, NodeSpec] = {}  # what the broadcast layer was told
        self.last_arrival: dict[str, float] = {}  # peer -> last arrival time (FIFO links)


class Engine:
    """State and action semantics shared by every `Simulator` (see sim.py)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        manager: str | ManagerFactory = "hyparview",
        broadcast: str | LayerFactory | None = None,
        config: Config | None = None,
        link: LinkModel | None = None,
        fifo: bool = True,
        crash_detect_delay: float | None = None,
    ) -> None:
        self.seed = seed
        self.config = config if config is not None else Config()
        self.link = link if link is not None else LinkModel()
        self.fifo = fifo
        self.crash_detect_delay = crash_detect_delay
        self._manager_factory = resolve_manager(manager)
        self._layer_factory = resolve_layer(broadcast)
        self.rng = random.Random(f"partisan-sim/{seed}/net")
        self._rand = self.rng.random
        self.now = 0.0
        self.events = 0
        self.nodes: dict[str, SimNode] = {}
        self.broadcasts: dict[Hashable, BroadcastRecord] = {}
        # (time, seq, kind, node or None, a, b, c): entries carry the SimNode of one
        # incarnation, so a restart's new node never receives the old one's mail. A
        # message is (..., _RECV, receiver, sender, msg, channel): no payload tuple
        # to build and unpack per message.
        self._heap: list[_Entry] = []
        # Timers wait apart from messages: they are ~1 entry per node (10,000
        # at n = 10,000) but ~1 event in 9, while messages are most events and
        # few are in flight at once. Popping messages from the small heap halved
        # the cost of a pop at n = 10,000. `_run` takes the smaller head of the
        # two; the global sequence number keeps the order exactly (time, seq).
        # The timers themselves sit in a calendar: one small heap per
        # 1/_TIMER_SLOTS s (`_buckets`), the non-empty slots in a heap of their
        # own (`_slots`), and `_timer_heap` is the earliest slot's heap. A pop
        # then sifts through ~100 entries that stay in cache instead of 100,000
        # scattered ones (at n = 100,000 the single timer heap's pops were the
        # largest cost of a round). Slots are ordered as their times, so the
        # order is exactly that of one heap.
        self._buckets: dict[int, list[_Entry]] = {}
        self._slots: list[int] = []
        self._timer_heap: list[_Entry] = []
        self._seq = 0
        # `_heap` holds messages, events and `_calls` scripted calls: in flight is the difference
        self._calls = 0
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._group: dict[str, int] = {}  # partition group per name; absent = group 0
        self._held: set[int] = set()
        self._deferred: list[tuple[float, int, SimNode, Any, Any]] = []
        self._bseq = 0
        self._fired: dict[str, TimerFired] = {}
        self._payload_msg: Any = None  # the last payload message counted, and its record
        self._payload_record: BroadcastRecord | None = None
        self._layer_epoch = 0
        self._spec_pool: dict[int, NodeSpec] = {}  # default specs made ahead (Simulator.add_node)

    # ------------------------------------------------------------ internals

    def _node(self, name: str) -> SimNode:
        node = self.nodes.get(name)
        if node is None:
            raise KeyError(f"no simulated node {name!r}")
        if not node.alive:
            raise ValueError(f"node {name!r} is not alive")
        return node

    def _start(self, spec: NodeSpec) -> None:
        rng = random.Random(f"partisan-sim/{self.seed}/{spec.name}/{spec.incarnation}")
        manager = self._manager_factory(spec, self.config, rng)
        layer = self._layer_factory(spec, self.config, rng) if self._layer_factory else None
        node = SimNode(spec, manager, layer)
        self.nodes[spec.name] = node
        self._apply(node, MANAGER, manager.start(self.now))

    def _stop(self, node: SimNode, notify: str | None) -> None:
        node.alive = False
        node.timers.clear()
        if notify is not None:
            extra = self.crash_detect_delay if notify == "connection_closed" else 0.0
            for peer in sorted(node.conns):
                other = self.nodes[peer]
                if other.alive and node.spec.name in other.conns:
                    other.conns.discard(node.spec.name)
                    # the reset (or BYE) travels one link delay, plus the detection delay
                    at = self.now + (extra or 0.0) + self._delay(node, peer)
                    self._push(at, _EVENT, other, None, PeerDown(node.spec, notify))
        node.conns.clear()

    def _push(self, at: float, kind: int, node: SimNode | None, a: Any, b: Any) -> None:
        self._seq += 1
        if kind == _CALL:
            self._calls += 1
        heapq.heappush(self._heap, (at, self._seq, kind, node, a, b, None))

    def _delay(self, src: SimNode, dst: str) -> float:
        model = self._links.get((src.spec.name, dst), self.link) if self._links else self.link
        return self.rng.uniform(model.delay_min, model.delay_max)

    def _push_timer(self, entry: _Entry) -> None:
        """Add a timer entry to its calendar slot (see `_buckets`)."""
        slot = int(entry[0] * _TIMER_SLOTS)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = []
            heapq.heappush(self._slots, slot)
            if self._slots[0] == slot:
                self._timer_heap = bucket
        heapq.heappush(bucket, entry)

    def _next_slot(self) -> list[_Entry]:
        """Drop the emptied earliest slot; the next one becomes `_timer_heap`."""
        del self._buckets[heapq.heappop(self._slots)]
        slots = self._slots
        self._timer_heap = self._buckets[slots[0]] if slots else []
        return self._timer_heap

    def _feed(self, node: SimNode, event: Any) -> None:
        self._apply(node, MANAGER, node.manager.handle(event, self.now))

    def _run(self, until: float, stop: Callable[[], bool] | None, mode: int = 0) -> bool:
        """Process events due by `until`; stop early when `mode`/`stop` says so.

        mode 1 stops when nothing is in flight, mode 2 when the heap is empty
        (checked inline: these are the hot loops of every experiment).
        """
        heap, timers, pop = self._heap, self._timer_heap, heapq.heappop
        held, apply, send = self._held, self._apply, self._send
        count = 0
        with gc_paused():  # nothing the loop allocates is cyclic
            try:
                while True:
                    # the earlier of the two heads; (time, seq) never ties (seq is unique)
                    timers = self._timer_heap  # an action may have opened an earlier slot
                    if heap:
                        src = timers if timers and timers[0] < heap[0] else heap
                    elif timers:
                        src = timers
                    else:
                        break
                    if src[0][0] > until:
                        break
                    at, seq, kind, node, a, b, c = pop(src)
                    if src is timers and not timers:
                        timers = self._next_slot()
                    self.now = at
                    count += 1
                    if kind == 0:  # _RECV: a message (a, b, c) = (sender, msg, channel)
                        if node.alive:
                            if c is _MEMBERSHIP or c != BROADCAST_CHANNEL or node.layer is None:
                                if node.receive is not None:
                                    # through the manager, not the bound method kept in
                                    # `node.receive`: one object (and cache miss) less
                                    actions = node.manager.receive(a, b, at)
                                    # most messages (a shuffle walk's hops) cause one Send
                                    if len(actions) == 1 and type(actions[0]) is Send:
                                        send(node, actions[0])
                                    elif actions:
                                        apply(node, MANAGER, actions)
                                else:
                                    apply(node, MANAGER, node.manager.handle(Received(a, b), at))
                            else:
                                if node.layer_receive is not None:
                                    actions = node.layer.receive(a, b, at)  # as for managers
                                    if actions:  # most flood copies are duplicates: none
                                        apply(node, BROADCAST, actions)
                                else:
                                    apply(node, BROADCAST, node.layer.handle(Received(a, b), at))
                    elif kind == _TIMER:
                        if node.alive and node.timers.get(a) == b:
                            if a[0] in held:
                                self._deferred.append((at, seq, node, a, b))
                                continue
                            del node.timers[a]
                            # events are values: one TimerFired per timer name serves every node
                            fired = self._fired.get(a[1])
                            if fired is None:
                                fired = self._fired[a[1]] = TimerFired(a[1])
                            if a[0] == MANAGER:
                                apply(node, MANAGER, node.manager.handle(fired, at))
                            elif node.layer is not None:
                                apply(node, BROADCAST, node.layer.handle(fired, at))
                    elif kind == _EVENT:
                        if node.alive:
                            apply(node, MANAGER, node.manager.handle(b, at))
                    else:
                        self._calls -= 1
                        a()
                    if mode:
                        if mode == 1:
                            if len(heap) == self._calls:
                                return True
                        elif mode == 2 and not heap and not self._timer_heap:
                            return True
                    elif stop is not None and stop():
                        return True
            finally:
                self.events += count
        if mode == 1:
            return len(heap) == self._calls
        if mode == 2:
            return not heap and not self._timer_heap
        return stop is None or stop()

    def _apply(self, node: SimNode, layer: int, actions: list[Any]) -> None:
        """Carry out `actions` returned by `node`'s `layer`."""
        for action in actions:
            kind = type(action)
            if kind is Send:
                self._send(node, action)
            elif kind is SetTimer:
                self._seq += 1
                key = (layer, action.name)
                node.timers[key] = self._seq
                at = action.at if action.at > self.now else self.now
                self._push_timer((at, self._seq, _TIMER, node, key, self._seq, None))
            elif kind is CancelTimer:
                node.timers.pop((layer, action.name), None)
            elif kind is Deliver:
                self._record_delivery(node, action)
            elif kind is MembersChanged:
                if node.layer is not None:
                    self._sync_layer(node)
            elif kind is Connect:
                self._connect(node, action.peer)
            elif kind is Disconnect:
                node.conns.discard(action.peer.name)
                other = self.nodes.get(action.peer.name)
                if other is not None:
                    other.conns.discard(node.spec.name)
            else:
                raise TypeError(f"unknown action {action!r} from {node.spec.name}")

    def _unreachable(self, node: SimNode, peer: NodeSpec) -> str | None:
        """Why `peer` cannot be reached from `node` now, or None when it can."""
        other = self.nodes.get(peer.name)
        if other is None or not other.alive:
            return "unreachable"
        if other.spec is not peer and other.spec != peer:
            return "restarted" if other.spec.incarnation > peer.incarnation else "unreachable"
        group = self._group
        if group and group.get(node.spec.name, 0) != group.get(peer.name, 0):
            return "unreachable"
        return None

    def _send(self, node: SimNode, action: Send) -> None:
        peer, msg, channel = action.peer, action.msg, action.channel
        if (
            channel is not _MEMBERSHIP
            and channel == BROADCAST_CHANNEL
            and getattr(msg, "carries_payload", False)
        ):
            if msg is not self._payload_msg:
                # a flood sends one message object to every neighbour: one lookup
                self._payload_msg = msg
                self._payload_record = self.broadcasts.get(msg.msg_id)
            record = self._payload_record
            if record is not None:
                record.payload_sends += 1
        pname = peer.name
        other = self.nodes.get(pname)
        if (
            other is None
            or not other.alive
            or (other.spec is not peer and other.spec != peer)
            or (self._group and self._unreachable(node, peer))
        ):
            why = self._unreachable(node, peer) or "unreachable"
            self._push(self.now, _EVENT, node, None, PeerDown(peer, why))
            return
        model = self._links.get((node.spec.name, pname), self.link) if self._links else self.link
        if model.loss or model.duplicate:
            rng = self.rng
            if model.loss and rng.random() < model.loss:
                return
            if model.duplicate and rng.random() < model.duplicate:
                self._arrive(node, other, model, msg, channel)
            self._arrive(node, other, model, msg, channel)
            return
        # `_arrive` inlined: one call per message saved on the hot path
        now = self.now
        at = now + model.delay_min + (model.delay_max - model.delay_min) * self._rand()
        if self.fifo:
            last_arrival = node.last_arrival
            last = last_arrival.get(pname, 0.0)
            if at < last:
                at = last
            last_arrival[pname] = at
            if len(last_arrival) > _FIFO_PRUNE:
                # an arrival already past can no longer hold a message back
                node.last_arrival = {k: v for k, v in last_arrival.items() if v > now}
        seq = self._seq = self._seq + 1
        _heappush(self._heap, (at, seq, _RECV, other, node.spec, msg, channel))

    def _arrive(
        self, node: SimNode, other: SimNode, model: LinkModel, msg: Any, channel: str
    ) -> None:
        """Schedule one copy of a message after the link's delay (FIFO per link)."""
        at = self.now + model.delay_min + (model.delay_max - model.delay_min) * self._rand()
        if self.fifo:
            last_arrival = node.last_arrival
            pname = other.spec.name
            last = last_arrival.get(pname, 0.0)
            if at < last:
                at = last
            last_arrival[pname] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, _RECV, other, node.spec, msg, channel))

    def _connect(self, node: SimNode, peer: NodeSpec) -> None:
        why = self._unreachable(node, peer)
        if why is not None:
            self._push(self.now, _EVENT, node, None, PeerDown(peer, why))
            return
        if peer.name in node.conns:
            return
        other = self.nodes[peer.name]
        node.conns.add(peer.name)
        other.conns.add(node.spec.name)
        at = self.now + self._delay(node, peer.name)
        self._push(at, _EVENT, node, None, PeerUp(peer))
        self._push(at, _EVENT, other, None, PeerUp(node.spec))

    def _sync_layer(self, node: SimNode) -> None:
        """Tell the broadcast layer how the manager's active view changed."""
        layer = node.layer
        assert layer is not None
        current = {p.name: p for p in node.manager.active()}
        known = node.neighbors
        # dict orders are insertion orders, identical in every run: no sort needed
        for name in list(known):
            spec = current.get(name)
            if spec is not known[name] and spec != known[name]:
                spec = known.pop(name)
                self._apply(node, BROADCAST, layer.neighbor_down(spec, self.now))
        for name in current:
            if name not in known:
                known[name] = current[name]
                self._apply(node, BROADCAST, layer.neighbor_up(current[name], self.now))

    def _record_delivery(self, node: SimNode, action: Deliver) -> None:
        record = self.broadcasts.get(action.msg_id)
        if record is None:
            return
        name = node.spec.name
        if name in record.deliveries:
            record.duplicates += 1
            log.warning("broadcast %r delivered twice at %s", action.msg_id, name)
        else:
            record.deliveries[name] = action.hops


def _receiver(layer: Any) -> Callable[[NodeSpec, Any, float], list[Any]] | None:
    """`layer.receive` (``handle(Received(...))`` without the event), if it has one."""
    return getattr(layer, "receive", None) if layer is not None else None

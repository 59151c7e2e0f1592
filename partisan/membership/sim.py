"""A deterministic discrete-event simulator for membership managers and broadcasts.

Theory of operation
-------------------
One process holds thousands of simulated nodes. Each node is the *same* manager
class a real node runs (``Cls(self_spec, config, rng)``), optionally with a
broadcast layer (flood or Plumtree) stacked on it. The simulator is their
driver: it feeds events with the virtual time ``now`` and carries out the
actions they return. Everything pending lives in one heap ordered by
``(time, sequence number)``, so ties resolve in the order events were created
and a run is a pure function of the seed.

Network model (TCP-like, what HyParView's paper assumes):

* ``Send`` to a reachable peer is delivered after a delay drawn from the
  link's `LinkModel` (uniform ``[delay_min, delay_max]``), in FIFO order per
  directed link (a TCP stream never reorders); it may be lost (``loss``) or
  delivered twice (``duplicate``) when the model says so (default: neither).
* ``Send`` or ``Connect`` to a crashed node, an unknown name, an old
  incarnation, or across a partition fails *at once*: the sender gets
  ``PeerDown(peer, "unreachable")`` (``"restarted"`` when a newer incarnation
  of that name is alive) as the next event at the same instant. This is the
  paper's "TCP as failure detector": a dead neighbour is found when used.
* ``Connect`` to a reachable peer gives both ends ``PeerUp`` one delay later
  (the HELLO exchange); connecting an already connected pair does nothing.
  A ``Send`` to an unconnected peer dials implicitly without any ``PeerUp``
  (HyParView's temporary connections). ``Disconnect`` closes silently.
* A crash is silent by default (peers detect it on use); with
  ``crash_detect_delay`` set, peers connected by ``Connect`` get
  ``PeerDown(spec, "connection_closed")`` one link delay plus that delay later
  (0.0 models a process crash whose OS resets its TCP connections; a larger
  value models a heartbeat timeout). A restart creates a
  fresh manager with the next incarnation. A graceful ``leave`` feeds
  ``Leave()``, lets the node's last messages go out, then stops it; connected
  peers get ``PeerDown(spec, "left")``.

Timers are per node and per layer (``SetTimer`` replaces a pending timer of
the same name). `hold_timers` defers a layer's timers (e.g. the manager's
shuffle rounds while nodes join or broadcasts are measured, the paper's "no
membership cycle in between"); `release_timers` fires the overdue ones at the
current time in their original order.

Determinism: all randomness derives from ``seed`` via ``random.Random`` seeded
with strings (SHA-512 based, independent of PYTHONHASHSEED); nothing iterates a
set or depends on ``hash(str)`` order; node lists are sorted before sampling.

API (stable; the property tests of every manager use it)::

    sim = Simulator(seed=1, manager="hyparview", broadcast="plumtree",
                    config=Config(), link=LinkModel(0.001, 0.01))
    a = sim.add_node()            # NodeSpec n1, started; sim.add_node("x") names it
    b = sim.add_node(); sim.join("n2", "n1")
    sim.run_until_quiet()         # until no message is in flight
    sim.run_for(10.0); sim.run_until_idle(); sim.run_until(pred, max_time=5)
    sim.crash("n2"); sim.restart("n2"); sim.leave("n2")
    sim.feed("n1", PeerDown(b))   # hand any event to a manager
    sim.hold_timers(); sim.release_timers()   # MANAGER (default) or BROADCAST layer
    sim.partition(["n1"], ["n2", "n3"]); sim.heal()
    sim.set_link("n1", "n2", LinkModel(loss=1.0))
    sim.manager("n1").active(); sim.spec("n1"); sim.live_names()
    sim.active_graph()            # {name: (neighbour names...)} over live nodes
    mid = sim.broadcast("n1"); sim.broadcasts[mid].reliability(...)
    sim.events                    # events processed so far
"""

from __future__ import annotations

import functools
import heapq
import logging
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL, BroadcastLayer, Deliver
from partisan.membership.types import (
    CancelTimer,
    Connect,
    Disconnect,
    Join,
    Leave,
    Manager,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

__all__ = ["BroadcastRecord", "LinkModel", "SimNode", "Simulator"]

log = logging.getLogger(__name__)

ManagerFactory = Callable[[NodeSpec, Config, random.Random], Manager]
LayerFactory = Callable[[NodeSpec, Config, random.Random], BroadcastLayer]

MANAGER, BROADCAST = 0, 1  # layer ids (timers and routing)
_RECV, _EVENT, _TIMER, _CALL = 0, 1, 2, 3  # heap entry kinds


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Delay (uniform, seconds), loss and duplication probabilities of a link."""

    delay_min: float = 0.001
    delay_max: float = 0.010
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_min <= self.delay_max:
            raise ValueError(f"LinkModel: need 0 <= delay_min <= delay_max, got {self}")
        for p in (self.loss, self.duplicate):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"LinkModel: probabilities must be in [0, 1], got {self}")


@dataclass(slots=True)
class BroadcastRecord:
    """What happened to one broadcast: who delivered it, how far, at what cost."""

    msg_id: Hashable
    source: str
    sent_at: float
    live: int  # live nodes when it was sent (the reliability denominator)
    deliveries: dict[str, int] = field(default_factory=dict)  # node -> hops
    duplicates: int = 0  # a node delivered it more than once (must stay 0)
    payload_sends: int = 0  # payload messages sent for it (the RMR numerator)

    @property
    def reliability(self) -> float:
        """Fraction of the nodes live at send time that delivered it."""
        return len(self.deliveries) / self.live if self.live else 1.0

    @property
    def rmr(self) -> float:
        """Relative message redundancy m/(n-1) - 1 (0 when n <= 1)."""
        n = len(self.deliveries)
        return self.payload_sends / (n - 1) - 1.0 if n > 1 else 0.0

    @property
    def last_delivery_hop(self) -> int:
        """Largest hop count of any delivery."""
        return max(self.deliveries.values(), default=0)


class SimNode:
    """One simulated node: its spec, manager, broadcast layer and timers."""

    __slots__ = (
        "alive", "conns", "last_arrival", "layer", "manager", "neighbors", "rng", "spec", "timers",
    )  # fmt: skip

    def __init__(self, spec: NodeSpec, manager: Manager, layer: BroadcastLayer | None) -> None:
        self.spec = spec
        self.manager = manager
        self.layer = layer
        self.alive = True
        self.timers: dict[tuple[int, str], int] = {}  # (layer, name) -> token
        self.conns: set[str] = set()  # peers connected by Connect (for crash notices)
        self.neighbors: dict[str, NodeSpec] = {}  # what the broadcast layer was told
        self.last_arrival: dict[str, float] = {}  # peer -> last arrival time (FIFO links)


class Simulator:
    """Drive many managers over a simulated network; see the module docstring."""

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
        self._manager_factory = _resolve_manager(manager)
        self._layer_factory = _resolve_layer(broadcast)
        self.rng = random.Random(f"partisan-sim/{seed}/net")
        self.now = 0.0
        self.events = 0
        self.nodes: dict[str, SimNode] = {}
        self.broadcasts: dict[Hashable, BroadcastRecord] = {}
        self._heap: list[tuple[float, int, int, str, Any, Any]] = []
        self._seq = 0
        self._in_flight = 0
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._group: dict[str, int] = {}  # partition group per name; absent = group 0
        self._held: set[int] = set()
        self._deferred: list[tuple[float, int, str, Any, Any]] = []
        self._bseq = 0
        self._layer_epoch = 0

    # ------------------------------------------------------------ topology

    def add_node(self, name: str | None = None, *, role: str | None = None) -> NodeSpec:
        """Create and start a node (named ``n<k>`` by default); returns its spec."""
        if name is None:
            name = f"n{len(self.nodes) + 1}"
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists; use restart() for a new incarnation")
        spec = NodeSpec(name, "sim", 1 + len(self.nodes) % 65535, role=role, incarnation=1)
        self._start(spec)
        return spec

    def join(self, name: str, contact: str | NodeSpec) -> None:
        """Feed ``Join(contact)`` to node `name` now."""
        target = contact if isinstance(contact, NodeSpec) else self.nodes[contact].spec
        self._feed(self._node(name), Join(target))

    def feed(self, name: str, event: Any) -> None:
        """Hand any membership event to `name`'s manager now (tests script with it)."""
        self._feed(self._node(name), event)

    def leave(self, name: str, node: str | NodeSpec | None = None) -> None:
        """Make `name` leave (or, with `node`, remove that node from its view).

        A self-leave sends the node's farewell messages, stops it, and tells
        its connected peers ``PeerDown(spec, "left")`` one delay later.
        """
        sim_node = self._node(name)
        if node is not None:
            target = node if isinstance(node, NodeSpec) else self.nodes[node].spec
            self._feed(sim_node, Leave(target))
            return
        self._feed(sim_node, Leave())
        self._stop(sim_node, "left")

    def crash(self, name: str) -> None:
        """Kill `name` silently (peers notice on use, or after crash_detect_delay)."""
        self._stop(
            self._node(name), "connection_closed" if self.crash_detect_delay is not None else None
        )

    def restart(self, name: str, *, join: str | NodeSpec | None = None) -> NodeSpec:
        """Start a crashed or left node again as its next incarnation."""
        old = self.nodes[name]
        if old.alive:
            self.crash(name)
        spec = NodeSpec(
            name, old.spec.host, old.spec.port, role=old.spec.role,
            incarnation=old.spec.incarnation + 1,
        )  # fmt: skip
        self._start(spec)
        if join is not None:
            self.join(name, join)
        return spec

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes in different groups cannot reach each other.

        Nodes not listed stay in group 0 (with the first listed group).
        """
        self._group = {}
        for index, group in enumerate(groups):
            for name in group:
                self._group[name] = index

    def heal(self) -> None:
        """Remove every partition."""
        self._group = {}

    def set_link(self, a: str, b: str, model: LinkModel | None, *, both: bool = True) -> None:
        """Override the link model a->b (and b->a); None restores the default."""
        for key in ((a, b), (b, a)) if both else ((a, b),):
            if model is None:
                self._links.pop(key, None)
            else:
                self._links[key] = model

    # --------------------------------------------------------------- queries

    def spec(self, name: str) -> NodeSpec:
        """The current spec (incarnation) of `name`."""
        return self.nodes[name].spec

    def manager(self, name: str) -> Manager:
        """The manager of `name`'s current incarnation."""
        return self.nodes[name].manager

    def layer(self, name: str) -> BroadcastLayer | None:
        """The broadcast layer of `name`, if any."""
        return self.nodes[name].layer

    def is_alive(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and node.alive

    def live_names(self) -> list[str]:
        """Names of live nodes in creation order (deterministic)."""
        return [name for name, node in self.nodes.items() if node.alive]

    def reachable(self, a: str, b: str) -> bool:
        """True when a and b are both alive and on the same side of any partition."""
        group = self._group
        return (
            self.is_alive(a) and self.is_alive(b) and group.get(a, 0) == group.get(b, 0)
        )  # fmt: skip

    def active_graph(self, *, live_only: bool = True) -> dict[str, tuple[str, ...]]:
        """``{name: sorted active-view names}``; with live_only, live nodes and edges."""
        nodes = self.nodes
        out: dict[str, tuple[str, ...]] = {}
        for name, node in nodes.items():
            if live_only and not node.alive:
                continue
            peers = sorted(p.name for p in node.manager.active())
            if live_only:
                peers = [p for p in peers if nodes[p].alive] if peers else peers
            out[name] = tuple(peers)
        return out

    @property
    def in_flight(self) -> int:
        """Messages and connection events not yet delivered."""
        return self._in_flight

    # ------------------------------------------------------------ broadcasts

    def set_broadcast(self, broadcast: str | LayerFactory | None) -> None:
        """Give every node a fresh broadcast layer (flood vs Plumtree on one overlay).

        Each layer learns its neighbours from the manager's active view at once.
        """
        self._layer_factory = _resolve_layer(broadcast)
        self._layer_epoch += 1
        for name, node in self.nodes.items():
            node.neighbors = {}
            node.timers = {k: v for k, v in node.timers.items() if k[0] != BROADCAST}
            if self._layer_factory is None or not node.alive:
                node.layer = None
                continue
            rng = random.Random(f"partisan-sim/{self.seed}/{name}/layer/{self._layer_epoch}")
            node.layer = self._layer_factory(node.spec, self.config, rng)
            self._sync_layer(node)

    def broadcast(self, name: str, payload: Any = None) -> Hashable:
        """Start a broadcast at `name` through its broadcast layer; returns its id."""
        node = self._node(name)
        if node.layer is None:
            raise ValueError("this simulator has no broadcast layer (pass broadcast=...)")
        self._bseq += 1
        msg_id = (name, self._bseq)
        live = sum(1 for n in self.nodes.values() if n.alive)
        self.broadcasts[msg_id] = BroadcastRecord(msg_id, name, self.now, live)
        self._apply(node, BROADCAST, node.layer.broadcast(msg_id, payload, self.now))
        return msg_id

    # ------------------------------------------------------------- running

    def run_for(self, seconds: float) -> None:
        """Advance the clock by `seconds`, processing everything due."""
        end = self.now + seconds
        self._run(end, None)
        self.now = max(self.now, end)

    def run_until(self, predicate: Callable[[], bool], *, max_time: float) -> bool:
        """Run until `predicate()` holds (checked after each event) or `max_time` passes."""
        if predicate():
            return True
        return self._run(self.now + max_time, predicate)

    def run_until_quiet(self, *, max_time: float = 3600.0) -> bool:
        """Run until no message or connection event is in flight; False on timeout."""
        return self._in_flight == 0 or self._run(self.now + max_time, None, 1)

    def run_until_idle(self, *, max_time: float = 3600.0) -> bool:
        """Run until nothing at all is pending (held timers aside); False on timeout."""
        return not self._heap or self._run(self.now + max_time, None, 2)

    def call_at(self, at: float, fn: Callable[[], object]) -> None:
        """Schedule `fn()` at virtual time `at` (scripted faults in tests)."""
        self._push(max(at, self.now), _CALL, "", fn, None)

    def hold_timers(self, layer: int = MANAGER) -> None:
        """Defer every timer of `layer` (MANAGER or BROADCAST) until released."""
        self._held.add(layer)

    def release_timers(self, layer: int = MANAGER) -> None:
        """Stop deferring `layer`'s timers; overdue ones fire now, in order."""
        self._held.discard(layer)
        keep = []
        for at, seq, name, key, token in self._deferred:
            if key[0] == layer:
                heapq.heappush(self._heap, (max(at, self.now), seq, _TIMER, name, key, token))
            else:
                keep.append((at, seq, name, key, token))
        self._deferred = keep

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
                    self._push(at, _EVENT, peer, other.spec, PeerDown(node.spec, notify))
        node.conns.clear()

    def _push(self, at: float, kind: int, name: str, a: Any, b: Any) -> None:
        self._seq += 1
        if kind <= _EVENT:
            self._in_flight += 1
        heapq.heappush(self._heap, (at, self._seq, kind, name, a, b))

    def _delay(self, src: SimNode, dst: str) -> float:
        model = self._links.get((src.spec.name, dst), self.link) if self._links else self.link
        return self.rng.uniform(model.delay_min, model.delay_max)

    def _feed(self, node: SimNode, event: Any) -> None:
        self._apply(node, MANAGER, node.manager.handle(event, self.now))

    def _run(self, until: float, stop: Callable[[], bool] | None, mode: int = 0) -> bool:
        """Process events due by `until`; stop early when `mode`/`stop` says so.

        mode 1 stops when nothing is in flight, mode 2 when the heap is empty
        (checked inline: these are the hot loops of every experiment).
        """
        heap, pop, nodes, held = self._heap, heapq.heappop, self.nodes, self._held
        count = 0
        try:
            while heap and heap[0][0] <= until:
                at, seq, kind, name, a, b = pop(heap)
                self.now = at
                count += 1
                if kind == _RECV:
                    self._in_flight -= 1
                    node = nodes[name]
                    spec = node.spec
                    if node.alive and (spec is a or spec == a):
                        sender, msg, channel = b
                        layer = node.layer
                        if channel == BROADCAST_CHANNEL and layer is not None:
                            self._apply(node, BROADCAST, layer.handle(Received(sender, msg), at))
                        else:
                            self._apply(
                                node, MANAGER, node.manager.handle(Received(sender, msg), at)
                            )
                elif kind == _TIMER:
                    node = nodes[name]
                    if node.alive and node.timers.get(a) == b:
                        if a[0] in held:
                            self._deferred.append((at, seq, name, a, b))
                            continue
                        del node.timers[a]
                        if a[0] == MANAGER:
                            self._apply(node, MANAGER, node.manager.handle(TimerFired(a[1]), at))
                        elif node.layer is not None:
                            self._apply(node, BROADCAST, node.layer.handle(TimerFired(a[1]), at))
                elif kind == _EVENT:
                    self._in_flight -= 1
                    node = nodes[name]
                    if node.alive and (node.spec is a or node.spec == a):
                        self._apply(node, MANAGER, node.manager.handle(b, at))
                else:
                    a()
                if mode:
                    if mode == 1:
                        if not self._in_flight:
                            return True
                    elif mode == 2 and not heap:
                        return True
                elif stop is not None and stop():
                    return True
        finally:
            self.events += count
        if mode == 1:
            return not self._in_flight
        if mode == 2:
            return not heap
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
                heapq.heappush(self._heap, (at, self._seq, _TIMER, node.spec.name, key, self._seq))
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
        if channel == BROADCAST_CHANNEL and getattr(msg, "carries_payload", False):
            record = self.broadcasts.get(msg.msg_id)
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
            self._push(self.now, _EVENT, node.spec.name, node.spec, PeerDown(peer, why))
            return
        links = self._links
        model = links.get((node.spec.name, pname), self.link) if links else self.link
        rng = self.rng
        copies = 1
        if model.loss or model.duplicate:
            if model.loss and rng.random() < model.loss:
                return
            if model.duplicate and rng.random() < model.duplicate:
                copies = 2
        payload = (node.spec, msg, channel)
        lo, span = model.delay_min, model.delay_max - model.delay_min
        last_arrival = node.last_arrival
        for _ in range(copies):
            at = self.now + lo + span * rng.random()
            if self.fifo:
                last = last_arrival.get(pname, 0.0)
                if at < last:
                    at = last
                last_arrival[pname] = at
            self._seq += 1
            self._in_flight += 1
            heapq.heappush(self._heap, (at, self._seq, _RECV, pname, peer, payload))

    def _connect(self, node: SimNode, peer: NodeSpec) -> None:
        why = self._unreachable(node, peer)
        if why is not None:
            self._push(self.now, _EVENT, node.spec.name, node.spec, PeerDown(peer, why))
            return
        if peer.name in node.conns:
            return
        other = self.nodes[peer.name]
        node.conns.add(peer.name)
        other.conns.add(node.spec.name)
        at = self.now + self._delay(node, peer.name)
        self._push(at, _EVENT, node.spec.name, node.spec, PeerUp(peer))
        self._push(at, _EVENT, peer.name, peer, PeerUp(node.spec))

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


def _resolve_manager(manager: str | ManagerFactory) -> ManagerFactory:
    if not isinstance(manager, str):
        return manager
    from partisan.membership.registry import MANAGER_CLASSES, create_manager

    if manager not in MANAGER_CLASSES:
        create_manager(manager, NodeSpec("x", "sim", 1), Config(), random.Random(0))  # raises
    # a partial of a module-level function pickles, so a built Simulator can be snapshotted
    return functools.partial(create_manager, manager)


def _resolve_layer(broadcast: str | LayerFactory | None) -> LayerFactory | None:
    if broadcast is None or not isinstance(broadcast, str):
        return broadcast
    if broadcast == "flood":
        from partisan.membership.flood import Flood

        return Flood
    if broadcast == "plumtree":
        from partisan.membership.plumtree import Plumtree

        return Plumtree
    raise ValueError(f"unknown broadcast {broadcast!r}: expected 'flood' or 'plumtree'")

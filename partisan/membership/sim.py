"""A deterministic discrete-event simulator for membership managers and broadcasts.

Theory of operation
-------------------
One process holds thousands of simulated nodes. Each node is the *same* manager
class a real node runs (``Cls(self_spec, config, rng)``), optionally with a
broadcast layer (flood or Plumtree) stacked on it. The simulator is their
driver: it feeds events with the virtual time ``now`` and carries out the
actions they return. Everything pending waits in two heaps (timers in one,
messages and events in the other) popped together in ``(time, sequence
number)`` order, so ties resolve in the order events were created and a run is
a pure function of the seed.

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
    mid = sim.broadcast("n1")     # needs a broadcast layer; returns the message id
    rec = sim.broadcasts[mid]     # BroadcastRecord: .deliveries {name: hops},
    rec.reliability, rec.rmr, rec.last_delivery_hop, rec.duplicates
    sim.set_broadcast("flood")    # fresh layers on the same overlay
    sim.call_at(12.5, fn)         # scripted faults at a virtual time
    sim.events, sim.now, sim.in_flight

Module layout: this file is the public half (nodes, faults, queries);
`partisan.membership.sim_engine` holds the heap, the run loop and the action
semantics described above.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from partisan.identity import NodeSpec
from partisan.membership.broadcast import BroadcastLayer
from partisan.membership.sim_engine import (
    _CALL,
    _TIMER,
    BROADCAST,
    MANAGER,
    BroadcastRecord,
    Engine,
    LinkModel,
    SimNode,
    _receiver,
)
from partisan.membership.sim_setup import LayerFactory, ManagerFactory, resolve_layer
from partisan.membership.types import Join, Leave, Manager

__all__ = [
    "BROADCAST",
    "MANAGER",
    "BroadcastRecord",
    "LayerFactory",
    "LinkModel",
    "ManagerFactory",
    "SimNode",
    "Simulator",
]


class Simulator(Engine):
    """Drive many managers over a simulated network; see the module docstring."""

    # ------------------------------------------------------------ topology

    def add_node(self, name: str | None = None, *, role: str | None = None) -> NodeSpec:
        """Create and start a node (named ``n<k>`` by default); returns its spec."""
        k = len(self.nodes)
        spec = None
        if name is None:
            name = f"n{k + 1}"
            if role is None:
                if k not in self._spec_pool:
                    self._make_specs(k, max(64, k))
                spec = self._spec_pool.pop(k)
        if name in self.nodes:
            raise ValueError(f"node {name!r} already exists; use restart() for a new incarnation")
        if spec is None:
            spec = NodeSpec(name, "sim", 1 + k % 65535, role=role, incarnation=1)
        self._start(spec)
        return spec

    def _make_specs(self, first: int, count: int) -> None:
        """Make the default specs of nodes ``first .. first + count - 1`` now, side by side.

        Equal to what `add_node` would make one by one, but a spec and its name
        are read by every view holding them (~35 per node; a shuffle's merge
        reads 16), and made at each node's start they lay scattered among
        ~10 KB of that node's state. Made in batches they sit side by side:
        at n = 100,000 a round's event costs ~4.5% less CPU (measured side by
        side; output unchanged). Batches double with the node count, so a
        small simulation makes few extras.
        """
        self._spec_pool = {
            i: NodeSpec(f"n{i + 1}", "sim", 1 + i % 65535, incarnation=1)
            for i in range(first, first + count)
        }

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
        return len(self._heap) - self._calls

    # ------------------------------------------------------------ broadcasts

    def set_broadcast(self, broadcast: str | LayerFactory | None) -> None:
        """Give every node a fresh broadcast layer (flood vs Plumtree on one overlay).

        Each layer learns its neighbours from the manager's active view at once.
        """
        self._layer_factory = resolve_layer(broadcast)
        self._layer_epoch += 1
        for name, node in self.nodes.items():
            node.neighbors = {}
            node.timers = {k: v for k, v in node.timers.items() if k[0] != BROADCAST}
            if self._layer_factory is None or not node.alive:
                node.layer = node.layer_receive = None
                continue
            rng = random.Random(f"partisan-sim/{self.seed}/{name}/layer/{self._layer_epoch}")
            node.layer = self._layer_factory(node.spec, self.config, rng)
            node.layer_receive = _receiver(node.layer)
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
        return len(self._heap) == self._calls or self._run(self.now + max_time, None, 1)

    def run_until_idle(self, *, max_time: float = 3600.0) -> bool:
        """Run until nothing at all is pending (held timers aside); False on timeout."""
        return (not self._heap and not self._timer_heap) or self._run(self.now + max_time, None, 2)

    def call_at(self, at: float, fn: Callable[[], object]) -> None:
        """Schedule `fn()` at virtual time `at` (scripted faults in tests)."""
        self._push(max(at, self.now), _CALL, None, fn, None)

    def hold_timers(self, layer: int = MANAGER) -> None:
        """Defer every timer of `layer` (MANAGER or BROADCAST) until released."""
        self._held.add(layer)

    def release_timers(self, layer: int = MANAGER) -> None:
        """Stop deferring `layer`'s timers; overdue ones fire now, in order."""
        self._held.discard(layer)
        keep = []
        for at, seq, node, key, token in self._deferred:
            if key[0] == layer:
                self._push_timer((max(at, self.now), seq, _TIMER, node, key, token, None))
            else:
                keep.append((at, seq, node, key, token))
        self._deferred = keep

"""Plumtree in the simulator: exactly-once delivery, tree formation, repair.

The overlay under the broadcast layer is `Fixed`: a symmetric graph given by
the test, where a neighbour is dropped when the driver reports it down (what
HyParView's active view does, minus the repair). Delivery must then reach every
live node joined to the source by live nodes, whatever crashes happen.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.metrics import components
from partisan.membership.plumtree import Plumtree
from partisan.membership.sim import LinkModel, Simulator
from partisan.membership.types import (
    Action,
    Event,
    MembersChanged,
    PeerDown,
    TimerFired,
)

#: 1 in `make test` (derandomized: the same examples every run); `make test-props`
#: sets it (randomized, that many times the examples; see tests/conftest.py).
SCALE = max(1, int(os.environ.get("PROPS_SCALE") or 0))


class Fixed:
    """A static symmetric overlay; a peer reported down leaves the view for good."""

    name = "fixed"

    def __init__(self, spec: NodeSpec, config: Config, rng: random.Random) -> None:
        self.spec = spec
        self.peers: dict[str, NodeSpec] = {}

    def start(self, now: float) -> list[Action]:
        return []

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, PeerDown) and self.peers.get(event.peer.name) == event.peer:
            del self.peers[event.peer.name]
            return [MembersChanged(tuple(self.members()))]
        if isinstance(event, TimerFired) and event.name == "sync":
            return [MembersChanged(tuple(self.members()))]
        return []

    def members(self) -> Sequence[NodeSpec]:
        return sorted([self.spec, *self.peers.values()])

    def active(self) -> Sequence[NodeSpec]:
        return [self.peers[n] for n in sorted(self.peers)]

    def passive(self) -> Sequence[NodeSpec]:
        return []


def random_graph(n: int, degree: int, rng: random.Random) -> dict[str, set[str]]:
    """A connected symmetric graph: a random spanning tree plus random extra edges."""
    names = [f"n{i + 1}" for i in range(n)]
    graph: dict[str, set[str]] = {name: set() for name in names}
    order = names[:]
    rng.shuffle(order)
    for i in range(1, n):
        a, b = order[i], order[rng.randrange(i)]
        graph[a].add(b)
        graph[b].add(a)
    for _ in range(n * (degree - 2) // 2):
        a, b = rng.sample(names, 2)
        graph[a].add(b)
        graph[b].add(a)
    return graph


def build(seed: int, n: int, degree: int, link: LinkModel | None = None) -> Simulator:
    sim = Simulator(seed=seed, manager=Fixed, broadcast="plumtree", link=link)
    graph = random_graph(n, degree, random.Random(seed))
    for name in graph:
        sim.add_node(name)
    for name, peers in graph.items():
        manager = sim.manager(name)
        assert isinstance(manager, Fixed)
        manager.peers = {p: sim.spec(p) for p in sorted(peers)}
        sim.feed(name, TimerFired("sync"))
    return sim


schedules = st.lists(
    st.tuples(st.sampled_from(["broadcast", "crash", "crash-during"]), st.integers(0, 10**6)),
    min_size=1,
    max_size=12,
)


@pytest.mark.timeout(90 * SCALE)
@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    n=st.integers(2, 30),
    degree=st.integers(2, 6),
    schedule=schedules,
    duplicate=st.sampled_from([0.0, 0.0, 0.3]),
)
@example(seed=0, n=2, degree=2, schedule=[("broadcast", 0)], duplicate=0.0)
@example(
    seed=0, n=3, degree=2, schedule=[("crash-during", 1)], duplicate=0.0
)  # hypothesis found an oracle bug here
def test_every_broadcast_reaches_every_connected_live_node_exactly_once(
    seed: int, n: int, degree: int, schedule: list[tuple[str, int]], duplicate: float
) -> None:
    sim = build(seed, n, degree, LinkModel(duplicate=duplicate))
    topology = {name: {p.name for p in sim.manager(name).active()} for name in sim.nodes}
    pick = random.Random(seed)
    sent = []
    for step, arg in schedule:
        live = sim.live_names()
        if step == "crash" and len(live) > 1:
            sim.crash(live[arg % len(live)])
        elif step in ("broadcast", "crash-during"):
            source = live[arg % len(live)]
            sent.append(sim.broadcast(source, payload=arg))
            if step == "crash-during" and len(live) > 2:
                victims = [x for x in live if x != source]
                sim.run_for(pick.uniform(0.0, 0.03))
                sim.crash(victims[arg % len(victims)])
        assert sim.run_until_idle(max_time=600), "broadcast did not settle"
    # Survivors only: a path of nodes alive all along carries every broadcast.
    live = set(sim.live_names())
    graph = {a: [b for b in sorted(topology[a]) if b in live] for a in sorted(live)}
    component_of = {name: i for i, comp in enumerate(components(graph)) for name in comp}
    for msg_id in sent:
        record = sim.broadcasts[msg_id]
        assert record.duplicates == 0, f"seed={seed}: {msg_id} delivered twice"
        if record.source not in live:
            continue
        expected = {x for x in live if component_of[x] == component_of[record.source]}
        got = {x for x in record.deliveries if x in live}
        # nodes cut off by a later crash may have got it too; the connected ones must
        assert expected <= got, f"seed={seed} n={n}: {msg_id} missed {sorted(expected - got)}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rmr_drops_to_zero_once_the_tree_has_formed(seed: int) -> None:
    sim = build(seed, 200, 5)
    first = sim.broadcasts[sim.broadcast("n1")]
    sim.run_until_idle()
    assert first.reliability == 1.0 and first.rmr > 1.0  # the first one floods
    rng = random.Random(seed)
    for _ in range(10):
        record = sim.broadcasts[sim.broadcast(f"n{rng.randrange(1, 201)}")]
        sim.run_until_idle()
        assert record.reliability == 1.0
        assert record.rmr == 0.0 and record.duplicates == 0
    # the eager links are a spanning tree: 2(n-1) eager endpoints
    layers = [sim.layer(x) for x in sim.nodes]
    eager = sum(len(layer.eager_peers()) for layer in layers if isinstance(layer, Plumtree))
    assert eager == 2 * (200 - 1)


def test_tree_repairs_after_failures_and_settles_back_to_rmr_zero() -> None:
    sim = build(7, 300, 5)
    sim.broadcast("n1")
    sim.run_until_idle()
    rng = random.Random(7)
    for name in rng.sample(sorted(sim.nodes), 60):
        sim.crash(name)
    live = sim.live_names()
    records = []
    for _ in range(20):
        records.append(sim.broadcasts[sim.broadcast(rng.choice(live))])
        sim.run_until_idle()
    graph = {a: [p.name for p in sim.manager(a).active() if sim.is_alive(p.name)] for a in live}
    component_of = {name: i for i, comp in enumerate(components(graph)) for name in comp}
    for record in records:
        reach = {x for x in live if component_of[x] == component_of[record.source]}
        assert set(record.deliveries) == reach and record.duplicates == 0
    assert records[-1].rmr == 0.0


# --------------------------------------------------- over a live HyParView overlay

hv_ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "crash", "restart", "broadcast", "wait"]), st.integers(0, 10**6)
    ),
    max_size=15,
)


@pytest.mark.timeout(120 * SCALE)
@settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(3, 25), ops=hv_ops)
def test_plumtree_over_hyparview_under_churn(seed: int, n: int, ops: list[tuple[str, int]]) -> None:
    """Churn with broadcasts in flight, then settle: one tree, exactly once, RMR 0."""
    sim = Simulator(seed=seed, manager="hyparview", broadcast="plumtree", crash_detect_delay=0.0)
    sim.add_node()
    for _ in range(1, n):
        sim.join(sim.add_node().name, "n1")
        sim.run_for(0.2)
    round_length = sim.config.hyparview.shuffle_interval
    sent = []
    for op, arg in ops:
        live = sim.live_names()
        dead = [x for x in sim.nodes if not sim.is_alive(x)]
        if op == "join":
            sim.join(sim.add_node().name, live[arg % len(live)])
        elif op == "crash" and len(live) > 2:
            sim.crash(live[arg % len(live)])
        elif op == "restart" and dead:
            sim.restart(dead[arg % len(dead)], join=live[arg % len(live)])
        elif op == "broadcast":
            sent.append(sim.broadcast(live[arg % len(live)], payload=arg))
        sim.run_for((arg % 1000) / 1000 * round_length)
    sim.run_for(5 * round_length)  # let HyParView repair and shuffle
    sim.hold_timers()
    assert sim.run_until_idle(max_time=600)
    graph = sim.active_graph()
    component_of = {x: i for i, comp in enumerate(components(graph)) for x in comp}
    rng = random.Random(seed)
    checks = [sim.broadcasts[sim.broadcast(rng.choice(sim.live_names()))] for _ in range(1)]
    for _ in range(3):
        sim.run_until_idle()
        checks.append(sim.broadcasts[sim.broadcast(rng.choice(sim.live_names()))])
    sim.run_until_idle()
    assert sim.active_graph() == graph, f"seed={seed}: the overlay changed while idle"
    for msg_id in sent:
        assert sim.broadcasts[msg_id].duplicates == 0, f"seed={seed}: {msg_id} delivered twice"
    for record in checks:
        reach = {x for x in graph if component_of[x] == component_of[record.source]}
        got = {x for x in record.deliveries if sim.is_alive(x)}
        assert got == reach and record.duplicates == 0, f"seed={seed}: {record.msg_id}"
    assert checks[-1].rmr == 0.0, f"seed={seed}: the tree did not settle ({checks[-1].rmr})"

"""The HyParView paper's results (papers.md §6, T1-T14) at n = 1,000.

One overlay is built once per module (1,000 nodes join one by one through n1,
then 50 shuffle rounds) and every scenario runs on a pickled copy of it, so
the file costs one overlay build plus a few seconds per scenario.

Reliability and RMR targets are the paper's (they do not depend on n). Graph
bounds do: at n = 1,000 the paper's own formula would give smaller views, and
we keep the paper's 5/30, so path length and clustering are calibrated from
our runs (seeds 1-5 at n = 1,000 with the paper's 5/30 views, recalibrated
after passive probes and jittered shuffle periods were added: avg path
4.70-4.71, clustering 0.0024-0.0048, flood last-delivery hop 6.6-6.7 mean and
7 max, flood RMR 3.00; T9 heals in 0 rounds at 50/80/90% for all five) and the bounds below leave a margin around
them. `SEED` is pinned; a failing seed is printed by every assertion.
"""

from __future__ import annotations

import pickle
import random

import pytest

from partisan.membership import metrics
from partisan.membership.experiments import (
    ExperimentSpec,
    build_overlay,
    fail_and_broadcast,
    heal,
    measure_overlay,
    summarize,
)
from partisan.membership.sim import BroadcastRecord, Simulator

SEED = 1
N = 1000
SPEC = ExperimentSpec(n=N, seed=SEED, broadcasts=100)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def overlay() -> bytes:
    """The stable overlay after joins and 50 rounds, pickled (restore per test)."""
    return pickle.dumps(build_overlay(SPEC))


def restore(blob: bytes, broadcast: str = "flood") -> Simulator:
    sim: Simulator = pickle.loads(blob)
    if broadcast != "flood":
        sim.set_broadcast(broadcast)
    return sim


def send(sim: Simulator, rng: random.Random, k: int) -> list[BroadcastRecord]:
    out = []
    for _ in range(k):
        out.append(sim.broadcasts[sim.broadcast(rng.choice(sim.live_names()))])
        assert sim.run_until_idle(max_time=600), f"seed={SEED}: broadcast did not settle"
    return out


def test_t1_t2_t3_stable_overlay_shape(overlay: bytes) -> None:
    sim = restore(overlay)
    result = measure_overlay(sim, SPEC)
    hist = {int(k): v for k, v in result["in_degree"].items()}
    assert hist.get(5, 0) >= 0.95 * N, f"seed={SEED}: in-degree histogram {hist}"  # T1
    assert 0 not in hist, f"seed={SEED}: a node nobody knows: {hist}"
    assert max(hist) <= 5
    assert result["connected"] and result["symmetric"]
    assert result["clustering"] <= 0.006, f"seed={SEED}: {result['clustering']}"  # T2 (calibrated)
    assert 4.4 <= result["avg_path"] <= 5.0, f"seed={SEED}: {result['avg_path']}"  # T3 (calibrated)
    assert result["avg_path_sources"] == N  # exact at this size


def test_t4_t5_t11_flood_on_the_stable_overlay(overlay: bytes) -> None:
    sim = restore(overlay)
    records = send(sim, random.Random(SEED), 30)
    assert all(r.reliability == 1.0 for r in records), f"seed={SEED}"  # T5: every message
    stats = summarize(records)
    assert 2.9 <= stats["rmr"] <= 3.1, f"seed={SEED}: flood RMR {stats['rmr']}"  # T11: k - 2
    assert 6 <= stats["last_delivery_hop"] <= 8, f"seed={SEED}: LDH {stats}"  # T4 (calibrated)
    assert stats["duplicates"] == 0


@pytest.mark.parametrize(("fail", "target"), [(0.5, 0.995), (0.8, 0.98)])
def test_t6_t7_reliability_after_massive_failures(
    overlay: bytes, fail: float, target: float
) -> None:
    sim = restore(overlay)
    spec = ExperimentSpec(n=N, seed=SEED, fail=fail, broadcasts=100)
    records = fail_and_broadcast(sim, spec, random.Random(f"{SEED}/{fail}"))
    stats = summarize(records)
    assert stats["reliability"] >= target, f"seed={SEED} fail={fail}: {stats}"
    assert stats["duplicates"] == 0


@pytest.mark.parametrize(("fail", "max_rounds"), [(0.5, 1), (0.8, 2), (0.9, 5)])
def test_t9_healing_rounds(overlay: bytes, fail: float, max_rounds: int) -> None:
    sim = restore(overlay)
    spec = ExperimentSpec(n=N, seed=SEED, fail=fail, broadcasts=20, max_heal_rounds=10)
    rng = random.Random(f"{SEED}/heal/{fail}")
    records = fail_and_broadcast(sim, spec, rng)
    rounds = heal(sim, spec, rng, records)
    assert rounds is not None and rounds <= max_rounds, f"seed={SEED} fail={fail}: {rounds}"
    # healed means: the live active graph is one symmetric component again
    graph = sim.active_graph()
    assert metrics.is_connected(graph) and metrics.is_symmetric(graph), f"seed={SEED}"


def send_from(sim: Simulator, source: str, k: int) -> list[BroadcastRecord]:
    out = []
    for _ in range(k):
        out.append(sim.broadcasts[sim.broadcast(source)])
        assert sim.run_until_idle(max_time=600), f"seed={SEED}: broadcast did not settle"
    return out


def test_t12_t13_plumtree_rmr_after_tree_formation(overlay: bytes) -> None:
    """papers.md T12/T13: the 2nd and later broadcasts from the source that formed the tree.

    From that source the tree is a shortest-path tree (LDH equals flood's:
    7 and 7 for seeds 1 and 3). Other sources reuse the same tree, so their
    LDH is longer (~11 against flood's ~6.7, seeds 1-5) but RMR stays ~0.
    """
    rng = random.Random(SEED)
    source = rng.choice(restore(overlay).live_names())
    flood = summarize(send_from(restore(overlay), source, 20))
    sim = restore(overlay, "plumtree")
    first = send_from(sim, source, 1)[0]
    assert first.reliability == 1.0 and first.rmr > 2.0  # the first broadcast floods
    records = send_from(sim, source, 20)
    stats = summarize(records)
    assert all(r.reliability == 1.0 for r in records), f"seed={SEED}: {stats}"  # T12
    assert stats["rmr"] <= 0.05, f"seed={SEED}: {stats}"
    assert stats["last_delivery_hop"] <= flood["last_delivery_hop"] + 4, (
        f"seed={SEED}: plumtree {stats} vs flood {flood}"
    )  # T13
    others = send(sim, rng, 20)
    assert all(r.reliability == 1.0 for r in others), f"seed={SEED}: {summarize(others)}"
    assert summarize(others)["rmr"] <= 0.05, f"seed={SEED}: {summarize(others)}"


def test_t14_plumtree_recovers_after_failures(overlay: bytes) -> None:
    sim = restore(overlay, "plumtree")
    rng = random.Random(SEED)
    send(sim, rng, 1)  # form the tree
    spec = ExperimentSpec(n=N, seed=SEED, fail=0.4, broadcasts=40, broadcast="plumtree")
    records = fail_and_broadcast(sim, spec, rng)
    later = summarize(records[10:])
    assert later["reliability"] >= 0.99, f"seed={SEED}: {later}"
    assert summarize(records)["duplicates"] == 0
    assert records[-1].rmr <= 0.05, f"seed={SEED}: the tree settled again: {records[-1].rmr}"


@pytest.mark.timeout(120)
def test_t10_cyclon_baseline_shows_the_papers_gap() -> None:
    spec = ExperimentSpec(n=N, seed=SEED, manager="cyclon", fail=0.5, broadcasts=50)
    sim = build_overlay(spec)
    records = fail_and_broadcast(sim, spec, random.Random(SEED))
    reliability = summarize(records)["reliability"]
    # The paper: Cyclon 73.4% at 50% failures (n = 10,000) vs HyParView 100%.
    # Ours at n = 1,000, seeds 1-3: 70.3%, 69.9%, 64.8% (and ~97% without failures).
    assert 0.60 <= reliability <= 0.85, f"seed={SEED}: cyclon reliability {reliability}"


def lists(sim: Simulator, name: str, x: str) -> bool:
    return any(p.name == x for p in sim.manager(name).passive())


def test_t9_at_90_percent_a_survivor_that_knows_no_live_node_is_found_again(
    overlay: bytes,
) -> None:
    """The extreme case of T9, forced: every peer `x` knows dies; one survivor lists it.

    First 90% of the nodes fail and the survivors repair. Then every
    node `x` knows fails, and every node that lists `x` as a backup except one
    whose own neighbors all live (so it has no reason to ask anyone). `x` has
    nobody to ask; only that survivor's passive probe can find it (see the
    deviations in hyparview.py).
    """
    sim = restore(overlay)
    rng = random.Random(f"{SEED}/cut-off")
    for name in rng.sample(sim.live_names(), int(0.9 * N)):
        sim.crash(name)
    send(sim, rng, 10)  # reactive repair settles
    x, known, keeper, listing = "", set(), None, []
    for x in sim.live_names():  # the first survivor that some settled survivor lists
        mine = sim.manager(x)
        known = {p.name for p in (*mine.active(), *mine.passive())}
        listing = [n for n in sim.live_names() if n not in known and n != x and lists(sim, n, x)]
        keeper = next(
            (n for n in listing if not known & {p.name for p in sim.manager(n).active()}), None
        )
        if keeper is not None:
            break
    assert keeper is not None, f"seed={SEED}: no survivor can be cut off this way"
    for name in sorted(known) + [n for n in listing if n != keeper]:
        if sim.is_alive(name):
            sim.crash(name)
    records = send(sim, rng, 20)
    assert not any(sim.is_alive(p.name) for p in (*mine.active(), *mine.passive())), (
        f"seed={SEED}: {x} knows a live node"
    )
    assert not any(x in r.deliveries for r in records), f"seed={SEED}: {x} was reached"
    spec = ExperimentSpec(n=N, seed=SEED, fail=0.9, broadcasts=20, max_heal_rounds=10)
    rounds = heal(sim, spec, rng, records)
    assert rounds is not None and rounds <= 5, f"seed={SEED}: {rounds}"
    graph = sim.active_graph()
    assert metrics.is_connected(graph) and metrics.is_symmetric(graph), f"seed={SEED}"
    assert mine.active(), f"seed={SEED}: {x} is still cut off"

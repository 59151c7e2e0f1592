"""The HyParView paper's results (papers.md §6, T1-T14) at n = 1,000.

One overlay is built once per module (1,000 nodes join one by one through n1,
then 50 shuffle rounds) and every scenario runs on a pickled copy of it, so
the file costs one overlay build plus a few seconds per scenario.

Every bound comes from the paper (TR DI-FCUL TR-07-13) and papers.md §6, none
from our own output:

* Reliability (T5-T8), RMR (T11, T12), healing rounds (T9) and Cyclon's
  reliability (T10) do not depend on n: the bounds are papers.md §6's pass
  criteria for the paper's rows. They hold under the simulator's default
  failure model, ``reset`` (both ends of a TCP connection learn that it
  closed); docs/simulator.md shows why the paper's rows cannot hold under
  ``on-use`` (the dead peer found only when sent to) and gives both models'
  table at n = 10,000 (``make sim-table``).
* Graph metrics depend on n, and we keep the paper's 5/30 views at n = 1,000.
  For a random graph of fixed degree k, path lengths grow as log n (log_{k-1} n)
  and the clustering coefficient falls as 1/n, so the paper's n = 10,000 values
  are scaled to n = 1,000 and papers.md's tolerance scaled with them:
  average path 6.39 x log(1,000)/log(10,000) = 4.79, +-8% (log_4 n, the
  random-regular estimate, is 4% above the paper's 6.39 at n = 10,000; the
  tolerance is twice that); last delivery hop 9.0 x 3/4 = 6.75, +-1 hop as in
  papers.md T4; clustering 0.00092 x 10 = 0.0092, at most 2x that as papers.md
  T2 allows (0.002 at n = 10,000).

`SEED` is pinned; a failing seed is printed by every assertion.
"""

from __future__ import annotations

import math
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
assert SPEC.crash_detect_delay == 0.0  # the reset model (see the module docstring)

#: The paper's n = 10,000 graph metrics (TR Table 1) scaled to N (module docstring).
LOG_SCALE = math.log(N) / math.log(10_000)
AVG_PATH = (6.39 * LOG_SCALE * 0.92, 6.39 * LOG_SCALE * 1.08)
LAST_HOP = (9.0 * LOG_SCALE - 1, 9.0 * LOG_SCALE + 1)
CLUSTERING_MAX = 2 * 0.00092 * 10_000 / N

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
    assert result["clustering"] <= CLUSTERING_MAX, f"seed={SEED}: {result['clustering']}"  # T2
    assert AVG_PATH[0] <= result["avg_path"] <= AVG_PATH[1], f"seed={SEED}: {result}"  # T3
    assert result["avg_path_sources"] == N  # exact at this size


def test_t4_t5_t11_flood_on_the_stable_overlay(overlay: bytes) -> None:
    sim = restore(overlay)
    records = send(sim, random.Random(SEED), 30)
    assert all(r.reliability == 1.0 for r in records), f"seed={SEED}"  # T5: every message
    stats = summarize(records)
    assert 2.9 <= stats["rmr"] <= 3.1, f"seed={SEED}: flood RMR {stats['rmr']}"  # T11: k - 2
    assert LAST_HOP[0] <= stats["last_delivery_hop"] <= LAST_HOP[1], f"seed={SEED}: {stats}"  # T4
    assert stats["duplicates"] == 0


# papers.md §6: T6 >= 99.5% up to 70% failed, T7 >= 98% at 80/90%, over the paper's
# 1,000 broadcasts (the first goes out at the crash instant, before any reset
# arrives: from a survivor whose neighbours all died it reaches itself alone,
# which 100 broadcasts would weigh ten times as much as the paper does). T8
# (85-95% at 95%) is checked at n = 10,000 only (docs/simulator.md, `make
# sim-table`): here 50 nodes survive, and the mean is decided by how many of
# those 50 still hold a live passive entry (81% at seed 1, 91% with other victims).
# T6 is checked at 70%, its hardest row (50% costs 6 s more for the same rule;
# the n = 10,000 table has it).
@pytest.mark.parametrize(("fail", "low"), [(0.7, 0.995), (0.8, 0.98), (0.9, 0.98)])
def test_t6_t7_reliability_after_massive_failures(overlay: bytes, fail: float, low: float) -> None:
    sim = restore(overlay)
    spec = ExperimentSpec(n=N, seed=SEED, fail=fail, broadcasts=1000)
    records = fail_and_broadcast(sim, spec, random.Random(f"{SEED}/{fail}"))
    stats = summarize(records)
    assert stats["reliability"] >= low, f"seed={SEED} fail={fail}: {stats}"
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
    # The paper: Cyclon 73.4% at 50% failures (n = 10,000) vs HyParView 100%;
    # papers.md T10 accepts 65-80% (ours at n = 1,000, seeds 1-3: 70.3%, 69.9%, 64.8%).
    assert 0.65 <= reliability <= 0.80, f"seed={SEED}: cyclon reliability {reliability}"


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

"""HyParView properties over random schedules of join, leave, crash, restart and partition.

Each example builds a small cluster in the seeded simulator, applies a random
schedule, checks the always-invariants after every step, then heals the
network, lets it settle and checks the eventual ones: active views symmetric
and the active graph connected. Hypothesis prints a failing schedule; pin it
with ``@example`` below so it stays a regression test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from partisan.config import Config, HyParViewConfig
from partisan.membership.hyparview import HyParView
from partisan.membership.hyparview_messages import DisconnectNotice
from partisan.membership.sim import LinkModel, Simulator
from partisan.membership.types import Received

#: 1 in `make test` (derandomized: the same examples every run); `make test-props`
#: sets it (randomized, that many times the examples; see tests/conftest.py).
SCALE = max(1, int(os.environ.get("PROPS_SCALE") or 0))

# Heartbeat-like detection of crashed peers, as the real transport provides.
CRASH_DETECT = 1.0
SMALL = HyParViewConfig(active_size=3, active_min_size=2, passive_size=8, arwl=4, prwl=2)

Op = tuple[str, int]
ops_strategy = st.lists(
    st.tuples(
        st.sampled_from(["join", "join", "leave", "crash", "restart", "partition", "heal", "run"]),
        st.integers(0, 10_000),
    ),
    max_size=25,
)


def _views_ok(sim: Simulator, hv: HyParViewConfig) -> None:
    """The always-invariants, on every live node."""
    for name in sim.live_names():
        manager = sim.manager(name)
        assert isinstance(manager, HyParView)
        active = [p.name for p in manager.active()]
        passive = [p.name for p in manager.passive()]
        assert name not in active and name not in passive, f"{name} holds itself"
        assert len(active) <= hv.active_size, f"{name} active {active}"
        assert len(passive) <= hv.passive_size, f"{name} passive {passive}"
        assert not set(active) & set(passive), f"{name}: active and passive overlap"
        assert len(set(active)) == len(active) and len(set(passive)) == len(passive)
        assert [m.name for m in manager.members()] == sorted([*active, name])


def _components(graph: dict[str, tuple[str, ...]]) -> list[set[str]]:
    seen: set[str] = set()
    parts = []
    for start in sorted(graph):
        if start in seen:
            continue
        part, stack = {start}, [start]
        while stack:
            for peer in graph[stack.pop()]:
                if peer in graph and peer not in part:
                    part.add(peer)
                    stack.append(peer)
        seen |= part
        parts.append(part)
    return parts


def _settle_and_check(
    sim: Simulator, hv: HyParViewConfig, *, saturated_islands_allowed: bool = False
) -> None:
    sim.heal()
    sim.run_for(30 * hv.shuffle_interval)
    assert sim.run_until_quiet(max_time=60.0)
    _views_ok(sim, hv)
    graph = sim.active_graph()
    one_sided = [(a, b) for a, peers in graph.items() for b in peers if a not in graph[b]]
    assert not one_sided, f"asymmetric active links: {one_sided}"
    parts = _components(graph)
    if len(parts) > 1 and saturated_islands_allowed:
        # HyParView's one blind spot (docs/membership.md): islands in which
        # every node's active view is full never ask anyone outside. Anything
        # else (a short node, an empty view) must have merged.
        short = [n for n, peers in graph.items() if len(peers) < hv.active_size]
        assert not short, f"split into {[sorted(p) for p in parts]} with short nodes {short}"
        return
    assert len(parts) == 1, f"active graph split into {[sorted(p) for p in parts]}"


def _joined(sim: Simulator, name: str) -> None:
    """Wait until `name`'s join completed: a node knowing only a dead contact is lost."""
    assert sim.run_until(lambda: bool(sim.manager(name).active()), max_time=5.0)


def _run_schedule(seed: int, size: int, ops: Sequence[Op], hv: HyParViewConfig) -> Simulator:
    sim = Simulator(
        seed,
        manager=HyParView,
        config=Config(hyparview=hv),
        link=LinkModel(0.001, 0.05),
        crash_detect_delay=CRASH_DETECT,
    )
    sim.add_node()
    for _ in range(size - 1):
        spec = sim.add_node()
        sim.join(spec.name, "n1")
        sim.run_for(0.02)  # joins overlap (Partisan issue #75's islands)
    assert sim.run_until_quiet()
    for kind, k in ops:
        live = sim.live_names()
        dead = [n for n in sim.nodes if n not in live]
        if kind == "join" and live:
            sim.heal()  # the contact must be reachable for the join to complete
            spec = sim.add_node()
            sim.join(spec.name, live[k % len(live)])
            _joined(sim, spec.name)
        elif kind in ("leave", "crash") and len(live) > 2:
            victim = live[k % len(live)]
            sim.leave(victim) if kind == "leave" else sim.crash(victim)
        elif kind == "restart" and dead and live:
            sim.heal()  # the contact must be reachable for the join to complete
            name = dead[k % len(dead)]
            sim.restart(name, join=live[k % len(live)])
            _joined(sim, name)
        elif kind == "partition" and len(live) > 1:
            cut = 1 + k % (len(live) - 1)
            sim.partition(live[:cut], live[cut:])
        elif kind == "heal":
            sim.heal()
        sim.run_for((k % 200) / 10.0)
        _views_ok(sim, hv)
    return sim


@settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), size=st.integers(2, 24), ops=ops_strategy)
@example(seed=0, size=24, ops=[])
# Regressions found by this test. The contact left before any shuffle: the
# newcomer knew nobody else (fixed: the contact seeds its passive view).
@example(seed=1, size=4, ops=[("leave", 0)])
@example(seed=0, size=3, ops=[("leave", 0)])
@pytest.mark.timeout(100 * SCALE)
def test_views_stay_valid_and_heal_to_a_symmetric_connected_overlay(
    seed: int, size: int, ops: list[Op]
) -> None:
    hv = HyParViewConfig()
    sim = _run_schedule(seed, size, ops, hv)
    _settle_and_check(sim, hv)


@settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), size=st.integers(2, 40), ops=ops_strategy)
# Regressions: a partition emptied a passive view (fixed: unreachable passive
# peers are retried as lost); a node below the minimum was refused by a
# saturated group (fixed: periodic promotion below the minimum is HIGH); a
# short-but-above-minimum group stayed an island (fixed: escalation).
@example(seed=1, size=7, ops=[("partition", 256), ("leave", 0), ("leave", 1246)])
@example(seed=1, size=7, ops=[("partition", 256), ("leave", 0), ("leave", 622), ("join", 54)])
@example(
    seed=1,
    size=7,
    ops=[("partition", 255), ("leave", 0), ("leave", 202), ("join", 54), ("join", 124)],
)
@pytest.mark.timeout(100 * SCALE)
def test_small_views_under_churn(seed: int, size: int, ops: list[Op]) -> None:
    """Small views make evictions, refusals and repair rounds the common case.

    With 3 peers per view, 8 nodes can settle as two full K4s, which HyParView
    cannot merge; such saturated islands are tolerated here, nothing else.
    """
    sim = _run_schedule(seed, size, ops, SMALL)
    _settle_and_check(sim, SMALL, saturated_islands_allowed=True)


@settings(max_examples=20 * SCALE, deadline=None)
@given(seed=st.integers(0, 2**32), pick=st.integers(0, 10_000))
@pytest.mark.timeout(60 * SCALE)
def test_a_node_whose_known_peers_all_died_is_found_by_a_survivor_listing_it(
    seed: int, pick: int
) -> None:
    """Passive probes: every peer `x` knows crashes; one survivor still lists `x`.

    `x` cannot ask anyone; the survivor (whose own neighbors all live, so it
    asks nobody either) must find it by probing its passive view, unless
    shuffles make every live node forget `x` first.
    """
    sim = Simulator(
        seed, manager=HyParView, config=Config(hyparview=SMALL), crash_detect_delay=CRASH_DETECT
    )
    sim.add_node()
    for _ in range(29):
        sim.join(sim.add_node().name, "n1")
        assert sim.run_until_quiet()
    sim.run_for(10 * SMALL.shuffle_interval)
    live = sim.live_names()
    x = live[pick % len(live)]
    mine = sim.manager(x)
    known = {p.name for p in (*mine.active(), *mine.passive())}
    listing = [
        n for n in live
        if n != x and n not in known and any(p.name == x for p in sim.manager(n).passive())
    ]  # fmt: skip
    keepers = [n for n in listing if not known & {p.name for p in sim.manager(n).active()}]
    assume(keepers)
    for name in sorted(known) + [n for n in listing if n != keepers[0]]:
        sim.crash(name)
    sim.run_for(2 * CRASH_DETECT)
    assume(not any(sim.is_alive(p.name) for p in (*mine.active(), *mine.passive())))

    def listed() -> bool:
        return any(
            any(p.name == x for p in sim.manager(n).passive()) for n in sim.live_names() if n != x
        )

    # Each shuffle tick probes one of a lister's <= 8 passive entries. Shuffles
    # may also evict `x` from every passive view first: then nobody can find
    # it (the documented limit), and that is the only other way this ends.
    sim.run_until(lambda: bool(mine.active()) or not listed(), max_time=40 * SMALL.shuffle_interval)
    assert mine.active() or not listed(), f"{x} is still listed but cut off"
    _views_ok(sim, SMALL)


@pytest.mark.timeout(30)
def test_stale_disconnect_after_restart_is_ignored() -> None:
    sim = Simulator(3, manager=HyParView, crash_detect_delay=CRASH_DETECT)
    sim.add_node()
    sim.add_node()
    sim.join("n2", "n1")
    assert sim.run_until_quiet()
    old_n2 = sim.spec("n2")
    # n2's previous life meant to drop n1; the message arrives only after the restart.
    stale = Received(old_n2, DisconnectNotice(sim.spec("n1").incarnation))
    sim.restart("n2", join="n1")
    assert sim.run_until(lambda: sim.active_graph() == {"n1": ("n2",), "n2": ("n1",)}, max_time=60)
    assert sim.manager("n1").active() == (sim.spec("n2"),)
    sim.feed("n1", stale)
    assert sim.manager("n1").active() == (sim.spec("n2"),)
    assert sim.run_until_quiet()
    assert sim.active_graph() == {"n1": ("n2",), "n2": ("n1",)}


@pytest.mark.timeout(30)
def test_partitioned_halves_merge_again_after_the_heal() -> None:
    hv = HyParViewConfig()
    sim = Simulator(5, manager=HyParView, crash_detect_delay=CRASH_DETECT)
    sim.add_node()
    for _ in range(19):
        spec = sim.add_node()
        sim.join(spec.name, "n1")
        assert sim.run_until_quiet()
    sim.run_for(5 * hv.shuffle_interval)
    live = sim.live_names()
    sim.partition(live[:10], live[10:])
    sim.run_for(10 * hv.shuffle_interval)  # each half repairs into its own overlay
    halves = _components(sim.active_graph())
    assert len(halves) == 2
    _settle_and_check(sim, hv)


_DIGEST = """
import hashlib
from partisan.membership.hyparview import HyParView
from partisan.membership.sim import Simulator
sim = Simulator(11, manager=HyParView, crash_detect_delay=1.0)
sim.add_node()
for i in range(2, 31):
    sim.add_node()
    sim.join(f"n{i}", "n1")
    sim.run_for(0.01)
sim.run_for(100.0)
sim.crash("n7")
sim.leave("n9")
sim.run_for(100.0)
views = [(n, [p.name for p in sim.manager(n).active()], [p.name for p in sim.manager(n).passive()])
         for n in sim.live_names()]
print(sim.events, hashlib.sha256(repr(views).encode()).hexdigest())
"""


@pytest.mark.timeout(60)
def test_same_seed_same_views_across_processes() -> None:
    """Views must not depend on hash randomisation (set order of strings)."""
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _DIGEST], env=env, capture_output=True, text=True, timeout=50
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs

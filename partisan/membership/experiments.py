"""The HyParView paper's experiment (TR DI-FCUL TR-07-13 §5) on our simulator.

Phases, each a function so benchmarks can reuse a built overlay:

1. `build_overlay`: nodes ``n1..nN`` join one by one through ``n1``; each join
   runs until nothing is pending, with the managers' periodic timers held (no
   membership round during the join phase). Then `rounds` membership rounds
   (one round = one period of the manager's slowest periodic timer, so every
   node shuffles once per round), then in-flight shuffles drain.
2. `measure_overlay`: in-degree histogram, clustering coefficient, average
   shortest path (BFS from every node up to `EXACT_PATH_LIMIT` nodes, else
   from `PATH_SOURCES` sampled sources), connectivity and symmetry of the live
   active graph. A Plumtree overlay then sends one warm-up broadcast so its
   tree exists before anything is measured (T12 is about the formed tree).
3. `fail_and_broadcast`: crash a fraction of the nodes at random, then send
   `broadcasts` broadcasts from random live nodes, one at a time, each run
   until nothing is pending; manager timers stay held (no shuffle round in
   between), reactive repair (PeerDown -> promotion) still runs.
4. `heal`: rounds of one membership round then 10 broadcasts, until all 10 of
   a round reach every live node; ``healing_rounds`` is that round's number
   (0 when the last 10 measured broadcasts already did; None if `max_rounds`
   pass first).

All choices come from ``random.Random("partisan-sim/<seed>/experiment")`` and
lists in creation order, so the JSON is identical for identical arguments
(except the wall-clock fields ``wall_s`` and ``events_per_s``).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: a run loads only the manager and broadcast
# layer it simulates. None closes an import cycle (tests/unit/test_imports.py).
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from partisan.config import Config
from partisan.membership import metrics
from partisan.membership.sim import MANAGER, BroadcastRecord, LinkModel, Simulator
from partisan.membership.sim_setup import gc_paused

__all__ = [
    "EXACT_PATH_LIMIT",
    "PATH_SOURCES",
    "ExperimentSpec",
    "build_overlay",
    "fail_and_broadcast",
    "heal",
    "measure_overlay",
    "run_experiment",
]

log = logging.getLogger(__name__)

EXACT_PATH_LIMIT = 2000  # up to this many nodes, BFS from every node
PATH_SOURCES = 200  # sampled BFS sources above it
HEAL_BROADCASTS = 10  # broadcasts per healing round (the paper's Fig. 4)
CYCLON_FANOUT = 4  # gossip fanout of the Cyclon baseline (TR §5.1)


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """What `partisan sim` runs; the CLI flags map one to one."""

    n: int = 1000
    manager: str = "hyparview"
    broadcast: str = "flood"
    fail: float = 0.5
    broadcasts: int = 100
    seed: int = 1
    rounds: int = 50
    max_heal_rounds: int = 50
    config: Config = field(default_factory=Config)
    #: near-constant delay (10-10.5 ms): a flood's first arrival then follows a
    #: shortest path, as in the paper's PeerSim runs (wide jitter lengthens LDH)
    link: LinkModel = field(default_factory=lambda: LinkModel(0.010, 0.0105))
    #: None: a crash is found only when a peer uses the link; a number: connected
    #: peers see the connection close one link delay plus this much later (TCP reset).
    crash_detect_delay: float | None = 0.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0.0 <= self.fail < 1.0:
            raise ValueError(f"fail must be in [0, 1), got {self.fail}")
        if self.broadcasts < 0 or self.rounds < 0 or self.max_heal_rounds < 0:
            raise ValueError("broadcasts, rounds and max_heal_rounds must be >= 0")
        if self.broadcast not in ("flood", "plumtree"):
            raise ValueError(f"broadcast must be 'flood' or 'plumtree', got {self.broadcast!r}")

    def round_length(self) -> float:
        """Virtual seconds in one membership round for this manager."""
        if self.manager in ("hyparview", "cyclon"):
            hv = self.config.hyparview
            return max(hv.shuffle_interval, hv.random_promotion_interval)
        return max(self.config.gossip_interval, self.config.connection_interval)


def _manager_factory(name: str) -> Any:
    if name == "cyclon":
        from partisan.membership.cyclon import Cyclon

        return Cyclon
    return name


def _layer_factory(spec: ExperimentSpec) -> Any:
    if spec.manager == "cyclon" and spec.broadcast == "flood":
        from partisan.membership.flood import Flood

        return functools.partial(Flood, fanout=CYCLON_FANOUT)  # the paper's gossip baseline
    return spec.broadcast


#: ``progress(phase, done, total)``: where a run is (``total`` None: open-ended).
Progress = Callable[[str, int, "int | None"], None]


def _no_progress(phase: str, done: int, total: int | None) -> None:
    """The default `Progress`: nobody is watching."""


def build_overlay(spec: ExperimentSpec, progress: Progress = _no_progress) -> Simulator:
    """Phase 1: join one by one through n1, then `spec.rounds` membership rounds."""
    sim = Simulator(
        spec.seed,
        manager=_manager_factory(spec.manager),
        broadcast=_layer_factory(spec),
        config=spec.config,
        link=spec.link,
        crash_detect_delay=spec.crash_detect_delay,
    )
    sim.hold_timers(MANAGER)
    sim.add_node()
    progress("joining", 1, spec.n)
    with gc_paused():  # between the runs too: each join adds a node's objects
        for i in range(1, spec.n):
            name = sim.add_node().name
            sim.join(name, "n1")
            sim.run_until_idle()
            progress("joining", i + 1, spec.n)
    log.info("joined %d nodes at t=%.1f after %d events", spec.n, sim.now, sim.events)
    progress("membership rounds", 0, None)
    run_rounds(sim, spec, spec.rounds)
    return sim


def run_rounds(sim: Simulator, spec: ExperimentSpec, rounds: int) -> None:
    """Run `rounds` membership rounds, then drain with manager timers held."""
    if rounds <= 0:
        return
    sim.release_timers(MANAGER)
    sim.run_for(rounds * spec.round_length())
    sim.hold_timers(MANAGER)
    sim.run_until_idle()


def measure_overlay(sim: Simulator, spec: ExperimentSpec) -> dict[str, Any]:
    """Phase 2: graph metrics of the live active graph (and Plumtree's warm-up)."""
    graph = sim.active_graph()
    rng = random.Random(f"partisan-sim/{spec.seed}/paths")
    sources = None if len(graph) <= EXACT_PATH_LIMIT else PATH_SOURCES
    avg_path, used = metrics.avg_shortest_path(graph, sources=sources, rng=rng)
    result = {
        "in_degree": {str(k): v for k, v in metrics.in_degrees(graph).items()},
        "clustering": metrics.clustering(graph),
        "avg_path": avg_path,
        "avg_path_sources": used,
        "connected": metrics.is_connected(graph),
        "symmetric": metrics.is_symmetric(graph),
    }
    if spec.broadcast == "plumtree" and sim.nodes:
        sim.broadcast(sim.live_names()[0], payload="warm-up")
        sim.run_until_idle()
    return result


def _send(sim: Simulator, rng: random.Random) -> BroadcastRecord:
    live = sim.live_names()
    record = sim.broadcasts[sim.broadcast(rng.choice(live))]
    sim.run_until_idle()
    return record


def fail_and_broadcast(
    sim: Simulator, spec: ExperimentSpec, rng: random.Random, progress: Progress = _no_progress
) -> list[BroadcastRecord]:
    """Phase 3: crash ``fail * n`` random nodes, then the measured broadcasts."""
    victims = rng.sample(sim.live_names(), round(spec.fail * len(sim.nodes)))
    for name in victims:
        sim.crash(name)
    records = []
    for i in range(spec.broadcasts):
        records.append(_send(sim, rng))
        progress("broadcasts", i + 1, spec.broadcasts)
    return records


def heal(
    sim: Simulator,
    spec: ExperimentSpec,
    rng: random.Random,
    last: list[BroadcastRecord],
    progress: Progress = _no_progress,
) -> int | None:
    """Phase 4: membership rounds of 10 broadcasts each until all 10 reach everyone."""
    tail = last[-HEAL_BROADCASTS:]
    if len(tail) == HEAL_BROADCASTS and all(r.reliability == 1.0 for r in tail):
        return 0
    for round_no in range(1, spec.max_heal_rounds + 1):
        progress("healing rounds", round_no, None)
        run_rounds(sim, spec, 1)
        batch = [_send(sim, rng) for _ in range(HEAL_BROADCASTS)]
        if all(r.reliability == 1.0 for r in batch):
            return round_no
    return None


def summarize(records: list[BroadcastRecord]) -> dict[str, Any]:
    """Means over `records` (the broadcasts sent after failures)."""
    if not records:
        return {"reliability": None, "rmr": None, "last_delivery_hop": None}
    k = len(records)
    return {
        "reliability": sum(r.reliability for r in records) / k,
        "reliability_min": min(r.reliability for r in records),
        "rmr": sum(r.rmr for r in records) / k,
        "last_delivery_hop": sum(r.last_delivery_hop for r in records) / k,
        "max_last_delivery_hop": max(r.last_delivery_hop for r in records),
        "duplicates": sum(r.duplicates for r in records),
    }


def run_experiment(spec: ExperimentSpec, progress: Progress | None = None) -> dict[str, Any]:
    """Run all four phases; returns the ``partisan sim --json`` document.

    `progress(phase, done, total)` is told where the run is (total None: open-ended).
    """
    report = progress or _no_progress
    started = time.perf_counter()
    with gc_paused():  # the metrics and the crashes allocate nothing cyclic either
        sim = build_overlay(spec, report)
        report("measuring the overlay", 0, None)
        overlay = measure_overlay(sim, spec)
        rng = random.Random(f"partisan-sim/{spec.seed}/experiment")
        records = fail_and_broadcast(sim, spec, rng, report)
        healing = heal(sim, spec, rng, records, report) if spec.broadcasts else None
    wall = time.perf_counter() - started
    return {
        "manager": spec.manager,
        "broadcast": spec.broadcast,
        "n": spec.n,
        "seed": spec.seed,
        "fail": spec.fail,
        "failed": len(sim.nodes) - len(sim.live_names()),
        "rounds": spec.rounds,
        "broadcasts": spec.broadcasts,
        "detect": "on-use" if spec.crash_detect_delay is None else "reset",
        **overlay,
        **summarize(records),
        "healing_rounds": healing,
        "events": sim.events,
        "virtual_time": sim.now,
        "wall_s": wall,
        "events_per_s": sim.events / wall if wall > 0 else 0.0,
    }

"""A seeded nemesis schedule: one fault at a time, held a few seconds, then healed.

Why seeded and planned up front: a soak that fails must be replayable. `plan`
is a pure function of (seed, duration, hosts, nodes): the same arguments
give the same steps (which fault, on whom, held how long, how long the quiet
after it), so ``plan(seed, ...)`` printed at the start of a run, or re-run
with the seed from a failure message, shows exactly what was done. `run`
then applies the steps in real time through a `Nemesis` and logs each one
(`ScheduleRunner.log`: planned step, monotonic start and end, on the same
clock as the nodes' event logs), so every `NodeDown` can be matched to the
fault that caused it.

The faults, each followed by a heal (or, for a kill, a restart: the node
started again with the same name and port, a new incarnation):

``kill`` (SIGKILL) · ``pause`` (SIGSTOP, then SIGCONT) · ``halves`` (random
halves, DROP or REJECT) · ``bridge`` (Jepsen's bridge) · ``one_way`` (a cut
in one direction, DROP or REJECT) · ``loss`` (10% of the packets between
two hosts) · ``tbf`` (a token-bucket rate limit on one host) · ``delay``
and ``duplicate`` (user space, through the node's fault injector).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from partisan.testing.hosts import SimulatedHost
from partisan.testing.process import NodeProcess
from partisan.testing.waiting import WaitTimeout, wait_until

__all__ = ["FAULTS", "ScheduleRunner", "Step", "affects", "plan"]

#: How long past its quiet time a step waits for `settled` before giving up.
SETTLE_S = 10.0

#: Every fault the schedule draws from, equally likely.
FAULTS = (
    "kill", "pause", "halves", "bridge", "one_way", "loss", "tbf", "delay", "duplicate",
)  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One planned fault: `op` on `nodes` (names), held `hold` s, then `quiet` s of calm."""

    index: int
    op: str
    nodes: tuple[tuple[str, ...], ...]  # the groups, or (target,) / (src,), (dst,) ...
    hold: float
    quiet: float
    args: dict[str, Any] = field(default_factory=dict)


def plan(
    seed: int,
    duration: float,
    nodes: Sequence[str],
    *,
    hold: tuple[float, float] = (2.0, 5.0),
    quiet: tuple[float, float] = (2.0, 4.0),
    faults: Sequence[str] = FAULTS,
) -> list[Step]:
    """The steps for `seed` filling about `duration` seconds (hold + quiet each)."""
    rng = random.Random(seed)
    names = sorted(nodes)
    steps: list[Step] = []
    used = 0.0
    while used < duration:
        op = rng.choice(list(faults))
        held = round(rng.uniform(*hold), 2)
        calm = round(rng.uniform(*quiet), 2)
        groups, args = _draw(op, names, rng)
        steps.append(Step(len(steps), op, groups, held, calm, args))
        used += held + calm
    return steps


def _draw(
    op: str, names: list[str], rng: random.Random
) -> tuple[tuple[tuple[str, ...], ...], dict[str, Any]]:
    shuffled = list(names)
    rng.shuffle(shuffled)
    if op == "halves":
        half = len(shuffled) // 2
        return (tuple(shuffled[:half]), tuple(shuffled[half:])), {"reject": rng.random() < 0.5}
    if op == "bridge":
        rest = shuffled[1:]
        half = len(rest) // 2
        return (tuple(rest[:half]), (shuffled[0],), tuple(rest[half:])), {}
    if op == "one_way":
        return ((shuffled[0],), (shuffled[1],)), {"reject": rng.random() < 0.5}
    if op == "loss":
        return ((shuffled[0],), (shuffled[1],)), {"probability": 0.1}
    if op == "tbf":
        return ((shuffled[0],),), {"rate": "256kbit", "burst": "16kbit", "latency": "400ms"}
    if op == "delay":
        seconds = round(rng.uniform(0.02, 0.1), 3)
        return ((shuffled[0],), (shuffled[1],)), {"seconds": seconds, "jitter": 0.02}
    if op == "duplicate":
        return ((shuffled[0],), (shuffled[1],)), {"probability": 0.1}
    return ((shuffled[0],),), {}  # kill, pause


def affects(step: Step, a: str, b: str) -> bool:
    """True when `step` can explain a NodeDown between nodes `a` and `b`."""
    flat = [n for group in step.nodes for n in group]
    if step.op in ("kill", "pause", "tbf"):
        return flat[0] in (a, b)
    if step.op in ("halves", "bridge"):
        sides = [set(step.nodes[0]), set(step.nodes[-1])]
        return any(a in s and b in t for s in sides for t in sides if s is not t)
    return {a, b} == set(flat)  # one_way, loss, delay, duplicate: that pair


class ScheduleRunner:
    """Applies planned steps through a `Nemesis`; `log` holds what was done and when.

    `host_of` maps a node name to its host; `node_of` returns a node's live
    process; `restart(name)` starts a killed node again (a new incarnation)
    and returns once it is ready (the caller restarts its workload too).
    With `settled` (a predicate: e.g. the full mesh is whole again), each
    step's log entry says how long after the heal it first held
    (``settled``, seconds; None if not within the quiet time + `SETTLE_S`).
    """

    def __init__(
        self,
        nemesis: Any,
        host_of: Mapping[str, SimulatedHost],
        node_of: Callable[[str], NodeProcess],
        restart: Callable[[str], NodeProcess],
        *,
        say: Callable[[str], None] = lambda line: None,
        settled: Callable[[], bool] | None = None,
    ) -> None:
        self.nemesis = nemesis
        self.host_of = host_of
        self.node_of = node_of
        self.restart = restart
        self.say = say
        self.settled = settled
        self.log: list[dict[str, Any]] = []

    def run(self, steps: Sequence[Step], *, deadline: float | None = None) -> int:
        """Apply `steps` in order (stopping early at monotonic `deadline`); cycles done."""
        done = 0
        for step in steps:
            if deadline is not None and time.monotonic() + step.hold > deadline:
                break
            self.apply(step)
            done += 1
        return done

    def apply(self, step: Step) -> None:
        """One cycle: inject, hold, heal (restart for a kill), then the quiet gap."""
        entry = {**asdict(step), "start": time.monotonic()}
        self.say(f"step {step.index}: {step.op} {step.nodes} {step.args} hold {step.hold}s")
        self._inject(step)
        time.sleep(step.hold)  # ok-sleep: the fault is held for its planned time
        entry["heal"] = time.monotonic()
        if step.op == "kill":
            self.restart(step.nodes[0][0])
        self.nemesis.heal()
        entry["end"] = end = time.monotonic()
        self.log.append(entry)
        if self.settled is not None:  # how long the cluster takes to settle after this heal
            try:
                wait_until(self.settled, step.quiet + SETTLE_S, interval=0.1)
                entry["settled"] = time.monotonic() - end
            except WaitTimeout:
                entry["settled"] = None  # did not settle: the caller reports it
        time.sleep(max(0.0, end + step.quiet - time.monotonic()))  # ok-sleep: planned calm

    def _inject(self, step: Step) -> None:
        nem, hosts = self.nemesis, self.host_of
        groups = [[hosts[n] for n in group] for group in step.nodes]
        first = step.nodes[0][0]
        if step.op == "kill":
            nem.kill(self.node_of(first))
        elif step.op == "pause":
            nem.pause(self.node_of(first))
        elif step.op == "halves":
            nem.partition(*groups, reject=step.args["reject"])
        elif step.op == "bridge":
            nem.bridge(groups[0], groups[1][0], groups[2])
        elif step.op == "one_way":
            nem.cut_one_way(groups[0][0], groups[1][0], reject=step.args["reject"])
        elif step.op == "loss":
            nem.loss(groups[0][0], groups[1][0], probability=step.args["probability"])
        elif step.op == "tbf":
            nem.rate_limit(groups[0][0], **step.args)
        elif step.op == "delay":
            nem.delay(self.node_of(first), step.nodes[1][0], **step.args)
        elif step.op == "duplicate":
            nem.duplicate(self.node_of(first), step.nodes[1][0], **step.args)
        else:
            raise ValueError(f"unknown fault {step.op!r}")

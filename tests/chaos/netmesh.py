"""A full mesh of membernodes on simulated hosts, and reading what their event logs say.

For tests/chaos/test_reliability_net.py: one node per host (``n1`` on
``h1`` ...), CURVE on, the code's default timers, an acked channel ``log``,
every node's event log in the test's directory (``<name>.<generation>.jsonl``:
a restarted node writes a new file, so each incarnation's records are
apart), plus the helpers the scenarios share (stream control, reset
toggling, gap accounting). Times are ``time.monotonic()``: the namespaces share the machine's
clock, so the test's clock, the nemesis log and the records compare.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from partisan.testing import NodeProcess, WaitTimeout, load_history, wait_until
from partisan.testing.hosts import SimulatedHost, SimulatedHosts
from partisan.testing.nemesis import Nemesis

Keys = Callable[[list[str]], dict[str, Path]]
CHANNELS = "log:1:acked"


@dataclass
class Mesh:
    """The nodes by name, their hosts, and where their logs go."""

    hosts: dict[str, SimulatedHost]
    nodes: dict[str, NodeProcess]
    keys: dict[str, Path]
    logs: Path
    generation: Counter[str] = field(default_factory=Counter)
    #: The node options (another manager, other channels, ``--set`` ...).
    options: tuple[str, ...] = ("--manager", "full-mesh", "--channels", CHANNELS)

    def start(self, name: str, *join: str, extra: tuple[str, ...] = ()) -> NodeProcess:
        """Start (or restart: a new incarnation, a new log file) `name` on its host."""
        log = self.logs / f"{name}.{self.generation[name]}.jsonl"
        self.generation[name] += 1
        joins = [arg for contact in join for arg in ("--join", contact)]
        node = self.hosts[name].start_node(
            name, "--keys", str(self.keys[name]), "--port", "9100", *self.options, *extra,
            "--event-log", str(log), *joins,
        )  # fmt: skip
        self.nodes[name] = node
        return node

    def records(self) -> list[dict[str, Any]]:
        """Every node's records, each incarnation's file in order."""
        return load_history(sorted(self.logs.glob("*.jsonl")))

    def host_of(self, names: Iterable[str]) -> list[SimulatedHost]:
        return [self.hosts[n] for n in names]


def start_mesh(
    hosts: SimulatedHosts, host_keys: Keys, logs: Path, count: int, *options: str
) -> Mesh:
    """`count` nodes, one per host, all joined through n1; returns once every view is full.

    `options` replace `Mesh.options` (another manager: then it returns once all started).
    """
    names = [f"n{i}" for i in range(1, count + 1)]
    mesh = Mesh({n: hosts.add_host() for n in names}, {}, host_keys(names), logs)
    if options:
        mesh.options = options
    first = mesh.start(names[0])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: mesh.start(n, str(first.spec)), names[1:]))
    if "full-mesh" in mesh.options:
        wait_for_mesh(mesh, names, 60)
    return mesh


def wait_for_mesh(mesh: Mesh, names: list[str], timeout: float) -> None:
    """Wait until each of `names` sees every other one of them."""

    def full() -> bool:
        return all(set(names) - {n} <= set(mesh.nodes[n].request("view")["nodes"]) for n in names)

    wait_until(full, timeout, interval=0.2, message=lambda: _views(mesh, names))


def _views(mesh: Mesh, names: list[str]) -> str:
    return str({n: mesh.nodes[n].request("view")["nodes"] for n in names})


def signals(
    records: Iterable[dict[str, Any]], kind: str, since: float = 0.0, until: float = float("inf")
) -> list[dict[str, Any]]:
    """The ``signal.<kind>`` records (``nodeup`` / ``nodedown``) written in [since, until)."""
    event = f"signal.{kind}"
    return [r for r in records if r.get("event") == event and since <= r["mono"] < until]


def pairs(recs: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """(node, peer) -> how many of `recs`."""
    return Counter((r["node"], r["peer"]) for r in recs)


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by the nearest-rank method (0.0 if empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def sends_and_receives(
    records: Iterable[dict[str, Any]],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """``app.send`` records by id, and the ``app.receive`` records of each id."""
    sends: dict[str, dict[str, Any]] = {}
    receives: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("event") == "app.send":
            sends[rec["id"]] = rec
        elif rec.get("event") == "app.receive":
            receives.setdefault(rec["id"], []).append(rec)
    return sends, receives


def settle(mesh: Mesh, wanted: Callable[[dict[str, Any]], bool], timeout: float = 15.0) -> None:
    """Wait (up to `timeout`) until every recorded send that `wanted` selects was received.

    After a workload stops, its last messages are still in flight; judging
    before they land would count them lost. A send that never lands is left
    for the caller's check to report (no error here).
    """

    def landed() -> bool:
        sends, receives = sends_and_receives(mesh.records())
        return all(i in receives for i, rec in sends.items() if wanted(rec))

    with contextlib.suppress(WaitTimeout):
        wait_until(landed, timeout, interval=0.3)


def ids(records: Iterable[dict[str, Any]], kind: str) -> set[str]:
    """The ids of the ``app.<kind>`` records (``acked``, ``unsent``)."""
    event = f"app.{kind}"
    return {r["id"] for r in records if r.get("event") == event}


def into_new_session(records: list[dict[str, Any]], channel: str = "default") -> list[str]:
    """Ids on `channel` of an ended session that were delivered in the next one.

    A message sent before the sender's NodeDown of the receiver belongs to
    the session that NodeDown ended; on a plain channel it may be lost, or
    delivered before the receiver reports the new session (NodeUp), never
    after. (Receive records are written when the sink actor takes the
    message, a few ms after its delivery: the NodeUp, not the receiver's
    NodeDown, is the boundary that survives that lag.)
    """
    sends, receives = sends_and_receives(records)
    downs: dict[tuple[str, str], list[float]] = {}
    ups: dict[tuple[str, str], list[float]] = {}
    for rec in signals(records, "nodedown"):
        downs.setdefault((rec["node"], rec["peer"]), []).append(rec["mono"])
    for rec in signals(records, "nodeup"):
        ups.setdefault((rec["node"], rec["peer"]), []).append(rec["mono"])
    out = []
    for msg_id, recs in receives.items():
        sent = sends.get(msg_id)
        if sent is None or sent["channel"] != channel:
            continue
        src, dst = sent["node"], sent["peer"]
        ended = [d for d in downs.get((src, dst), []) if d > sent["mono"]]
        if not ended:
            continue  # its session never ended
        # The next session needs the sender's handshake, so it is reported after `ended`.
        next_up = [u for u in ups.get((dst, src), []) if u > min(ended)]
        if next_up and any(rec["mono"] > min(next_up) for rec in recs):
            out.append(msg_id)
    return out


def stop_streams(mesh: Mesh, tag: str) -> None:
    for node in mesh.nodes.values():
        if node.proc.poll() is None:
            node.request("stream_stop", tag=tag)


def max_gap(receives: list[float], since: float, until: float) -> float:
    """The longest time in [since, until] with no receive (receive times sorted)."""
    times = [since] + [t for t in sorted(receives) if since < t < until] + [until]
    return max(b - a for a, b in itertools.pairwise(times))


def toggle_resets(nemesis: Nemesis, a: Any, b: Any, busy: Callable[[], bool], seed: int) -> int:
    """TCP resets between hosts `a` and `b`, on and off every 0.5-2 s, while `busy()`."""
    rng = random.Random(seed)
    toggles = 0
    while busy():
        nemesis.partition([a], [b], reject=True)
        toggles += 1
        time.sleep(rng.uniform(0.5, 2.0))  # ok-sleep: hold the reset window
        nemesis.heal()
        time.sleep(rng.uniform(0.5, 2.0))  # ok-sleep: and the healthy one
    return toggles


def unexplained_gaps(records: list[dict[str, Any]], lost: set[str], sender: str) -> tuple[int, int]:
    """How many gaps, and how many with no NodeDown at `sender` to explain them.

    A gap is a run of lost messages of one key; a NodeDown explains it when
    the sender reported it between the gap's first send and the next
    delivered send of that key.
    """
    downs = sorted(r["mono"] for r in signals(records, "nodedown") if r["node"] == sender)
    streams: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if rec.get("event") == "app.send" and rec["node"] == sender:
            streams.setdefault(rec["key"], []).append(rec)
    gaps = unexplained = 0
    for sends in streams.values():
        i = 0
        while i < len(sends):
            if sends[i]["id"] not in lost:
                i += 1
                continue
            start = sends[i]["mono"]
            while i < len(sends) and sends[i]["id"] in lost:
                i += 1
            end = sends[i]["mono"] if i < len(sends) else float("inf")
            gaps += 1
            unexplained += not any(start <= t <= end for t in downs)
    return gaps, unexplained

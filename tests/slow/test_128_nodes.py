"""128 real HyParView nodes on one machine: the overlay forms, survives losing half, broadcasts.

Not part of ``make test`` (it takes minutes on 2 cores): ``make test-slow``.
Every node is a ``partisan.testing.membernode`` process with the default
HyParView settings and heartbeats; the test asserts behaviour, not time: the
deadlines only bound how long a broken cluster is waited for.
"""

from __future__ import annotations

import collections
import os
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, wait_until

N = 128
FORM = 240.0  # bound for the overlay to form (seconds)
REPAIR = 120.0  # bound for the survivors' overlay to repair


@pytest.fixture
def started() -> Iterator[list[NodeProcess]]:
    nodes: list[NodeProcess] = []
    yield nodes
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: n.stop(), nodes))


def start(name: str, keys: Path, join: str | None) -> NodeProcess:
    argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
    argv += ["--manager", "hyparview"]
    if join:
        argv += ["--join", join]
    return NodeProcess(argv, env=dict(os.environ), ready_timeout=120.0)


def views(nodes: list[NodeProcess]) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(16) as pool:
        got = pool.map(lambda n: n.request("view", reply_timeout=30.0), nodes)
        return {n.name: v for n, v in zip(nodes, got, strict=True)}


def overlay_ok(nodes: list[NodeProcess]) -> bool:
    """Every active view non-empty, symmetric, of live links among `nodes`; connected."""
    seen_views = views(nodes)
    for name, v in seen_views.items():
        if not v["active"] or not set(v["active"]) <= set(v["nodes"]):
            return False
        for peer in v["active"]:
            if peer not in seen_views or name not in seen_views[peer]["active"]:
                return False
    reached, todo = set(), [next(iter(seen_views))]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(seen_views[name]["active"])
    return reached == set(seen_views)


def received(nodes: list[NodeProcess], tag: str) -> dict[str, list[tuple[str, int]]]:
    with ThreadPoolExecutor(16) as pool:
        got = pool.map(lambda n: n.request("received", tag=tag)["items"], nodes)
        return {n.name: [tuple(i) for i in items] for n, items in zip(nodes, got, strict=True)}


def exactly_once(nodes: list[NodeProcess], tag: str, expected: set[tuple[str, int]]) -> bool:
    for name, items in received(nodes, tag).items():
        duplicates = [k for k, c in collections.Counter(items).items() if c > 1]
        assert not duplicates, f"{name} delivered {duplicates} more than once"
        if set(items) != expected:
            return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_128_hyparview_nodes_form_survive_half_killed_and_broadcast_to_every_survivor(
    started: list[NodeProcess], key_dir: Any
) -> None:
    names = [f"n{i:03d}" for i in range(1, N + 1)]
    keys = key_dir(*names)
    t0 = time.monotonic()
    started.append(start(names[0], keys, None))
    # Contacts first (a few nodes joined one by one), then the rest concurrently,
    # each through a random earlier node: nobody joins through one node only.
    for name in names[1:8]:
        started.append(start(name, keys, str(random.choice(started).spec)))
    contacts = list(started)
    with ThreadPoolExecutor(8) as pool:
        started += pool.map(
            lambda name: start(name, keys, str(random.choice(contacts).spec)), names[8:]
        )
    launched = time.monotonic() - t0
    wait_until(lambda: overlay_ok(started), FORM, interval=2.0, message="the overlay to form")
    formed = time.monotonic() - t0

    sender = started[0]
    sender.request("broadcast", count=5, tag="before")
    everyone = {(sender.name, i) for i in range(5)}
    wait_until(lambda: exactly_once(started, "before", everyone), 60, interval=1.0)

    victims = random.Random(7).sample(started[1:], N // 2)
    for node in victims:
        node.kill()
    survivors = [n for n in started if n not in victims]
    t1 = time.monotonic()
    wait_until(lambda: overlay_ok(survivors), REPAIR, interval=2.0, message="repair")
    repaired = time.monotonic() - t1

    sender.request("broadcast", count=5, tag="after")
    wait_until(lambda: exactly_once(survivors, "after", everyone), 60, interval=1.0)
    print(
        f"\n{N} nodes: all started in {launched:.1f} s, overlay formed at {formed:.1f} s; "
        f"{N // 2} killed: repaired in {repaired:.1f} s (2 s polls); broadcasts exactly once"
    )

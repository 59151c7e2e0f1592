"""`partisan.broadcast` and `transitive=True` between real node processes over CURVE links.

Each node is `partisan.testing.membernode`; its ``"bc"`` actor records what
it gets and the test reads it back with the ``received`` command. Waits are
conditions with deadlines derived from the settings below.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, wait_until

HEARTBEAT = 0.1
TIMEOUT = 0.5  # heartbeat_timeout
INTERVAL = 0.2  # gossip_interval = connection_interval
HANDSHAKE = 1.0
LAZY_TICK = 0.1
GRAFT = 0.2  # plumtree.graft_timeout
SETTINGS = {
    "heartbeat_interval": HEARTBEAT,
    "heartbeat_timeout": TIMEOUT,
    "gossip_interval": INTERVAL,
    "connection_interval": INTERVAL,
    "handshake_timeout": HANDSHAKE,
    "plumtree.lazy_tick": LAZY_TICK,
    "plumtree.graft_timeout": GRAFT,
    "plumtree.graft_timeout_retry": GRAFT / 2,
    "hyparview.random_promotion_interval": INTERVAL,
}
#: Joins settle within a few rounds; a broadcast then crosses the overlay in milliseconds.
SETTLE = 20 * INTERVAL + TIMEOUT + HANDSHAKE + 3.0
#: What the contract promises after a failure: detection + one graft + 1 s.
REPAIR = TIMEOUT + GRAFT + 1.0


@pytest.fixture
def member_factory() -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(name: str, keys: Path, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
        env = dict(os.environ)
        for field, value in SETTINGS.items():
            if "." in field:  # sections come from the environment (`--set` takes top-level fields)
                env["PARTISAN_" + field.upper().replace(".", "__")] = str(value)
            else:
                argv += ["--set", f"{field}={value}"]
        node = NodeProcess([*argv, *args], env=env)
        started.append(node)
        return node

    yield start
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: n.stop(), reversed(started)))


def start_many(
    factory: Callable[..., NodeProcess], keys: Path, specs: Sequence[tuple[str, Sequence[str]]]
) -> list[NodeProcess]:
    """Start nodes concurrently (each joins by its own arguments); in the order given."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda spec: factory(spec[0], keys, *spec[1]), specs))


def received(node: NodeProcess, tag: str) -> list[tuple[str, int]]:
    return [(origin, i) for origin, i in node.request("received", tag=tag)["items"]]


def all_received(nodes: Sequence[NodeProcess], tag: str) -> dict[str, list[tuple[str, int]]]:
    with ThreadPoolExecutor(8) as pool:
        got = pool.map(lambda n: received(n, tag), nodes)
        return {n.name: items for n, items in zip(nodes, got, strict=True)}


def wait_exactly_once(
    nodes: Sequence[NodeProcess], tag: str, expected: set[tuple[str, int]], timeout: float
) -> float:
    """Wait until every node got every expected broadcast; fail on any duplicate. Seconds taken."""
    start = time.monotonic()
    last: dict[str, list[tuple[str, int]]] = {}

    def done() -> bool:
        nonlocal last
        last = all_received(nodes, tag)
        for name, items in last.items():
            duplicates = [k for k, n in collections.Counter(items).items() if n > 1]
            assert not duplicates, f"{name} got {duplicates} more than once"
        return all(set(items) == expected for items in last.values())

    def missing() -> str:
        return str({name: sorted(expected - set(items))[:5] for name, items in last.items()})

    wait_until(done, timeout, message=lambda: f"missing (first 5 per node): {missing()}")
    return time.monotonic() - start


def stats(nodes: Sequence[NodeProcess]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda n: n.request("bstats"), nodes))


def cluster_rmr(nodes: Sequence[NodeProcess]) -> float:
    """Relative message redundancy of the whole cluster (see partisan.broadcast_service.rmr)."""
    s = [x["broadcast"] for x in stats(nodes)]
    reached = sum(x["delivered_remote"] for x in s)
    return sum(x["payloads_received"] for x in s) / reached - 1 if reached else 0.0


def send_broadcasts(senders: Sequence[NodeProcess], total: int, tag: str) -> set[tuple[str, int]]:
    """`total` broadcasts spread over `senders`; the (origin, i) pairs every node must get."""
    expected: set[tuple[str, int]] = set()
    for k, node in enumerate(senders):
        count = total // len(senders) + (1 if k < total % len(senders) else 0)
        node.request("broadcast", count=count, tag=tag)
        expected |= {(node.name, i) for i in range(count)}
    return expected


@pytest.mark.timeout(120)
def test_hyparview_16_nodes_every_broadcast_once_everywhere_also_right_after_4_kills(
    member_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    record_property: Callable[[str, object], None],
) -> None:
    names = [f"n{i}" for i in range(1, 17)]
    keys = key_dir(*names)
    n1 = member_factory("n1", keys, "--manager", "hyparview")
    nodes = [
        n1,
        *start_many(
            member_factory,
            keys,
            [(n, ("--manager", "hyparview", "--join", str(n1.spec))) for n in names[1:]],
        ),
    ]

    # Warm-up: the overlay is connected once one broadcast reached everyone.
    n1.request("broadcast", count=1, tag="warm")
    wait_exactly_once(nodes, "warm", {("n1", 0)}, SETTLE)

    expected = send_broadcasts(nodes, 200, "main")
    took = wait_exactly_once(nodes, "main", expected, SETTLE)
    rmr = cluster_rmr(nodes)
    print(f"\n16 nodes, 200 broadcasts: everywhere within {took:.2f} s; RMR {rmr:.3f}")
    record_property("rmr", rmr)

    # SIGKILL the four busiest inner nodes of the tree (most eager links), then broadcast
    # at once from four survivors: their tree paths cross the dead nodes.
    eager = {n.name: x["broadcast"]["eager"] for n, x in zip(nodes, stats(nodes), strict=True)}
    victims = sorted(nodes[4:], key=lambda n: -eager[n.name])[:4]
    before = [{"name": n.name, **x} for n, x in zip(nodes, stats(nodes), strict=True)]
    survivors = [n for n in nodes if n not in victims]
    for node in victims:
        node.signal(signal.SIGKILL)
    for node in victims:
        node.proc.wait(5)
    after = send_broadcasts(survivors[:4], 20, "after")
    took = wait_exactly_once(survivors, "after", after, REPAIR)
    grafts = sum(x["broadcast"]["grafts"] for x in stats(survivors)) - sum(
        x["broadcast"]["grafts"] for x in before if x["name"] not in {v.name for v in victims}
    )
    print(
        f"after 4 kills: 20 broadcasts reached all 12 survivors within {took:.2f} s ({grafts} grafts)"
    )
    record_property("repair_seconds", took)
    # Nothing delivered twice meanwhile, the earlier ones included.
    wait_exactly_once(survivors, "main", expected, 1.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("manager", ["full-mesh", "client-server"])
def test_every_broadcast_once_everywhere_full_mesh_and_client_server(
    manager: str, member_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    names = ["s1", "s2", "c1", "c2", "c3"]
    keys = key_dir(*names)
    extra = ("--set", "connect_on_use=false")
    if manager == "client-server":
        roles = {"s1": "server", "s2": "server", "c1": "client", "c2": "client", "c3": "client"}
    else:
        roles = {}

    def args(name: str, join: str | None) -> tuple[str, ...]:
        out = ("--manager", manager, *extra)
        if name in roles:
            out += ("--role", roles[name])
        return out + (("--join", join) if join else ())

    s1 = member_factory("s1", keys, *args("s1", None))
    nodes = [s1, *start_many(member_factory, keys, [(n, args(n, str(s1.spec))) for n in names[1:]])]
    s1.request("broadcast", count=1, tag="warm")
    wait_exactly_once(nodes, "warm", {("s1", 0)}, SETTLE)

    expected = send_broadcasts(nodes, 50, "main")
    wait_exactly_once(nodes, "main", expected, SETTLE)
    print(f"\n{manager}, 5 nodes, 50 broadcasts: RMR {cluster_rmr(nodes):.3f}")

    if manager == "client-server":
        # Clients never link each other: client-to-client traffic is relayed by a server.
        c1, c2 = nodes[2], nodes[3]
        assert "c2" not in c1.request("view")["nodes"]
        c1.request("relay", target="c2", count=100, tag="relay")
        wait_until(
            lambda: received(c2, "relay") == [("c1", i) for i in range(100)],
            SETTLE,
            message=lambda: f"c2 got {received(c2, 'relay')[:10]}...",
        )


@pytest.mark.timeout(60)
def test_transitive_send_reaches_a_node_without_a_link_in_per_sender_order(
    member_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    """A static chain n1 - n2 - n3 - n4 with connect-on-use off: n1 and n4 have no link."""
    names = ["n1", "n2", "n3", "n4"]
    keys = key_dir(*names)
    base = ("--manager", "static", "--set", "connect_on_use=false")
    nodes = [member_factory("n1", keys, *base)]
    for name in names[1:]:
        nodes.append(member_factory(name, keys, *base, "--join", str(nodes[-1].spec)))
    n1, n4 = nodes[0], nodes[-1]
    wait_until(
        lambda: all(
            len(n.request("bstats")["neighbors"]) == (1 if n in (n1, n4) else 2) for n in nodes
        ),
        SETTLE,
        message=lambda: str([n.request("bstats")["neighbors"] for n in nodes]),
    )
    assert "n4" not in n1.request("view")["nodes"] and "n1" not in n4.request("view")["nodes"]
    count = 500
    # Both ends at once, each from its main pseudo-actor: two streams crossing the chain.
    first, second = (
        n1.send_command("relay", target="n4", count=count, tag="t"),
        n4.send_command("relay", target="n1", count=count, tag="t"),
    )
    n1.reply(first)
    n4.reply(second)
    for node, origin in ((n4, "n1"), (n1, "n4")):
        wait_until(
            lambda node=node: len(received(node, "t")) >= count,
            SETTLE,
            message=lambda node=node: f"{node.name} got {len(received(node, 't'))} of {count}",
        )
        got = received(node, "t")
        # Per-sender order, each exactly once: the sequence checker.
        assert [i for o, i in got if o == origin] == list(range(count))
    relay = n4.request("bstats")["relay"]
    assert relay["delivered"] == count and relay["skipped"] == 0

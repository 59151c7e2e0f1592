"""partisan.Node over real links: join, sync_join, refusals, leave, statistics, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import partisan
from partisan import NodeDown, NodeUp
from partisan.errors import CallTimeout, JoinRefused
from partisan.testing import NodeProcess, wait_until

HERE = Path(__file__).resolve().parent
SETTINGS = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}
DEADLINE = SETTINGS["heartbeat_timeout"] + 1.0
#: Full-mesh gossip settles in a few gossip_interval rounds (default 1 s).
GOSSIP_DEADLINE = 5 * 1.0 + DEADLINE


async def until(probe: Callable[[], Any], timeout: float, expected: Any = True) -> None:
    """Poll `probe` (sync or async) until it returns `expected`, within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value == expected:
            return
        assert loop.time() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.02)  # ok-sleep: the poll interval of a deadline-bound wait


@pytest.fixture
def keys(key_dir: Callable[..., Path]) -> Path:
    return key_dir("t", "b", "c", "x")


@pytest.fixture
def cluster(keys: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(name: str, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan", "node", "start", name, "--keys", str(keys)]
        for field, value in SETTINGS.items():
            argv += ["--set", f"{field}={value}"]
        env = dict(os.environ)  # the nodes import this module's actors by name
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
        node = NodeProcess([*argv, *args], env=env)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


async def counter() -> None:
    while True:
        await partisan.receive()


@pytest.mark.timeout(60)
def test_join_sync_join_refusals_leave_and_statistics(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b, c = cluster("b"), cluster("c")

    async def main() -> None:
        async with partisan.Node(
            "t", port=0, key_dir=str(keys), handshake_timeout=1.0, **SETTINGS
        ) as node:
            assert node.spec is not None and node.spec.port != 0
            partisan.monitor_node()
            spec = await node.join(f"b@{b.address}")
            assert (spec.name, spec.incarnation) == ("b", b.incarnation)
            assert await partisan.receive(match=NodeUp, timeout=5) == NodeUp("b")
            # refusals: an address answering with another node's name; nobody answering
            with pytest.raises(JoinRefused):
                await node.join(f"c@{b.address}")
            with pytest.raises((CallTimeout, JoinRefused)):
                await node.join("x@127.0.0.1:9")
            await node.sync_join(f"c@{c.address}")
            assert await partisan.receive(match=NodeUp, timeout=5) == NodeUp("c")
            assert partisan.nodes() == ["b", "c"]
            await until(lambda: partisan.members() == ["b", "c", "t"], GOSSIP_DEADLINE)
            # not hidden: visible to b; and b, c found each other (full mesh)
            await until(lambda: partisan.rpc("b", partisan.nodes), GOSSIP_DEADLINE, ["c", "t"])
            # statistics: remote routing and the deepest mailboxes
            sink = await partisan.spawn(counter, node="b")
            for i in range(50):
                partisan.send(sink, i)
            for i in range(3):
                partisan.send(partisan.self(), i)
            stats = node.statistics()
            assert stats.routed_remote >= 50 and stats.nodes == ("b", "c")
            assert stats.deepest_mailboxes[0] == (partisan.self(), 3)
            assert stats.links is not None
            # leave one peer: NodeDown "left" here, and the peer forgets us
            await node.leave("c")
            assert await partisan.receive(match=NodeDown, timeout=DEADLINE) == NodeDown("c", "left")
            assert partisan.nodes() == ["b"] and partisan.members() == ["b", "t"]
            # c was removed from the cluster: it leaves, and b forgets it too
            await until(lambda: partisan.rpc("b", partisan.nodes), GOSSIP_DEADLINE, ["t"])

    asyncio.run(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("hidden", "count", "budget"),
    [(True, 10, None), (False, 10, None), (False, 200, 4000)],
    ids=["hidden", "visible", "visible-over-budget"],
)
def test_sigterm_stops_a_node_gracefully_and_peers_see_it_leave(
    cluster: Callable[..., NodeProcess], keys: Path, hidden: bool, count: int, budget: int | None
) -> None:
    # With a small budget on b, its DownSigs queue over the budget on their lane.
    b = cluster("b", *(["--set", f"send_buffer_bytes={budget}"] if budget else []))

    async def main() -> None:
        async with partisan.Node("t", key_dir=str(keys), hidden=hidden, **SETTINGS) as node:
            await node.join(f"b@{b.address}")
            partisan.monitor_node("b")
            pids = [await partisan.spawn(counter, node="b") for _ in range(count)]
            refs = {partisan.monitor(pid) for pid in pids}
            assert await partisan.ping(pids[-1])  # same lane, after the monitor requests: all set
            b.signal(signal.SIGTERM)
            downs = [await partisan.receive(match=partisan.Down, timeout=5) for _ in refs]
            assert {d.ref for d in downs} == refs
            # every DownSig b queued while stopping arrives before its BYE
            assert [d.reason for d in downs] == ["shutdown"] * len(refs)
            down = await partisan.receive(match=NodeDown, timeout=DEADLINE)
            assert down == NodeDown("b", "left")

    asyncio.run(main())
    assert wait_until(lambda: b.proc.poll() is not None, 10) is not None
    assert b.proc.returncode == 0


@pytest.mark.timeout(60)
def test_overloaded_send_raises_and_wait_true_waits_for_room(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b = cluster("b")
    payload = b"x" * 10_000

    async def collect(count: int, report_to: partisan.Pid) -> None:
        for _ in range(count):
            await partisan.receive()
        partisan.send(report_to, "all received")

    async def main() -> None:
        async with partisan.Node(
            "t", key_dir=str(keys), hidden=True, send_buffer_bytes=50_000, **SETTINGS
        ) as node:
            await node.join(f"b@{b.address}")
            sink = await partisan.spawn(collect, 200, partisan.self(), node="b")
            sent = 0
            with pytest.raises(partisan.Overloaded):
                for _ in range(200):
                    partisan.send(sink, payload)  # 2 MB against a 50 KB budget
                    sent += 1
            assert 0 < sent < 200 and node.statistics().routed_remote == sent
            # control envelopes are not refused: they queue in order over the budget (an
            # rpc whose request carries the 10 KB argument does not fit either)
            assert await partisan.rpc("b", len, payload, timeout=10) == len(payload)
            for _ in range(200 - sent):
                await partisan.send(sink, payload, wait=True, timeout=10)
            assert await partisan.receive(timeout=10) == "all received"
            assert node.statistics().routed_remote == 200

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_client_client_join_is_refused_with_its_reason(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    server = cluster("b", "--manager", "client-server", "--role", "server")
    client = cluster("c", "--manager", "client-server", "--role", "client")

    async def main() -> None:
        options = {"manager": "client-server", "role": "client", **SETTINGS}
        async with partisan.Node("t", key_dir=str(keys), **options) as node:
            with pytest.raises(JoinRefused, match="client-client join"):
                await node.join(f"c@{client.address}")
            await node.join(f"b@{server.address}")  # a client may join a server
            assert partisan.nodes() == ["b"]

    asyncio.run(main())

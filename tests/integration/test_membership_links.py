"""What the membership's own links cost on real nodes: one connection per direction.

Full mesh: every link carries only membership traffic while the cluster is
idle, so each direction is its one `membership` lane; the side that dials
back must not open a `default` lane (a CURVE handshake) for a membership
message it sends before its own lane has connected.

HyParView's temporary links: one membership message, then an agreed close.

A node that sends a membership message to a peer outside its views (a
shuffle reply, a passive probe) dials a link for it; the membership sweep
closes the link by agreement once nothing needs it. This checks what such a
link costs and leaves behind: only the membership lane in either direction
(no `default` lane, and its CURVE handshake, opened just to agree on the
close), one session, and no NodeDown. That the manager does not count the
closed link as a failure is tested on the exact events in
tests/unit/test_hyparview.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import partisan
from partisan import NodeDown
from partisan.membership.hyparview_messages import ShuffleReply
from partisan.peer_service import MEMBERSHIP_DEST
from partisan.testing import NodeProcess

SWEEP = 0.2  # connection_interval: the sweep that closes unneeded links
SETTINGS = {"connection_interval": SWEEP, "handshake_timeout": 2.0}
DEADLINE = 10.0


@pytest.fixture
def keys(key_dir: Callable[..., Path]) -> Path:
    return key_dir("t", "b")


def start_member(name: str, keys: Path, manager: str) -> NodeProcess:
    argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
    argv += ["--manager", manager]
    for field, value in SETTINGS.items():
        argv += ["--set", f"{field}={value}"]
    return NodeProcess(argv)


@pytest.fixture
def member(keys: Path) -> Iterator[NodeProcess]:
    node = start_member("b", keys, "hyparview")
    yield node
    node.stop()


@pytest.fixture
def mesh(key_dir: Callable[..., Path]) -> Iterator[tuple[Path, list[NodeProcess]]]:
    keys = key_dir("t", "b", "c", "d")
    started: list[NodeProcess] = []
    try:
        for name in ("b", "c", "d"):
            started.append(start_member(name, keys, "full-mesh"))
        yield keys, started
    finally:
        for node in reversed(started):
            node.stop()


@pytest.mark.timeout(60)
def test_an_idle_full_mesh_has_one_membership_lane_per_direction_and_nothing_else(
    mesh: tuple[Path, list[NodeProcess]],
) -> None:
    keys, (b, c, d) = mesh

    async def main() -> None:
        async with partisan.Node("t", port=0, key_dir=str(keys), **SETTINGS) as node:
            # c and d join through b; t joins last, so b, c and d all dial t and t
            # dials each of them back, sending its gossip at once (the race).
            for other in (c, d):
                other.request("join", target=f"b@{b.address}")
            await node.join(f"b@{b.address}")
            await until(lambda: partisan.nodes() == ["b", "c", "d"], "t linked to all")
            await until(lambda: partisan.members() == ["b", "c", "d", "t"], "t's members")
            for other in (b, c, d):
                await until(lambda o=other: len(o.request("view")["nodes"]) == 3, "a full mesh")
            # One TCP connection each way per peer: our membership DEALER, and
            # the peer's at our ROUTER. A `default` lane would be a third.
            port = node.spec.port if node.spec is not None else -1
            conns = [
                c
                for c in psutil.Process().net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.raddr
            ]
            ours = [c for c in conns if c.laddr.port != port]
            theirs = [c for c in conns if c.laddr.port == port]
            assert (len(ours), len(theirs)) == (3, 3), conns

    asyncio.run(main())


async def until(probe: Callable[[], object], what: str) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not (value := probe()):
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)  # ok-sleep: the poll interval of a deadline-bound wait
    return value


@pytest.mark.timeout(60)
def test_a_temporary_link_uses_only_the_membership_lane_and_closes_without_node_down(
    member: NodeProcess, keys: Path
) -> None:
    async def main() -> None:
        async with partisan.Node(
            "t", port=0, key_dir=str(keys), manager="hyparview", **SETTINGS
        ) as node:
            partisan.monitor_node()
            b = member.spec
            # b is in neither of t's views: the send dials a temporary link.
            node.peer_service.send(b, "membership", MEMBERSHIP_DEST, ShuffleReply(()))
            links = node.links
            await until(lambda: links.is_connected("b"), "the temporary link")
            await until(lambda: not links.is_connected("b"), "the agreed close")
            record = links.statistics().peer("b")
            assert record is not None
            used = {c.channel for c in record.channels if c.messages_out or c.messages_in}
            # t's probe, the close request and its answer: all on the membership
            # lane, in both directions (no lane opened only to say goodbye).
            assert used == {"membership"}, record.channels
            assert record.sessions == 1
            events = [m for m in await drain() if isinstance(m, NodeDown)]
            assert events == []
            assert "t" not in member.request("view")["active"]

    async def drain() -> list[object]:
        seen: list[object] = []
        while True:
            try:
                seen.append(await partisan.receive(timeout=0.2))
            except partisan.ReceiveTimeout:
                return seen

    asyncio.run(main())

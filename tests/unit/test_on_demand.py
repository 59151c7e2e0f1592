"""Connect-on-use and agreed closes over the in-memory network (partisan/actors/on_demand.py).

A link closed for a view change leaves the peer *parked*: healthy, known,
without a link. These tests park a peer the way the membership driver does
and check what actors see: traffic dials a new link in order, strict mode
refuses, a pinned side refuses to close, and traffic held during an agreed
close is delivered over the next link.
"""

from __future__ import annotations

from typing import Any

import pytest
from _actor_support import async_test, nodes

import partisan
from partisan import Node
from partisan.actors.signals import NodeDown, NodeUp
from partisan.errors import NotConnected


async def collect(report_to: partisan.Pid) -> None:
    got = []
    while True:
        msg = await partisan.receive()
        if msg == "report":
            partisan.send(report_to, list(got))
        else:
            got.append(msg)


def park(a: Node, b: Node) -> None:
    """Close the a-b link as an agreed view change does: both ends park the other."""
    assert a.spec is not None and b.spec is not None
    a.links.disconnect(b.name, reason="disconnected")
    assert a.dist is not None
    a.dist.park(b.spec)


async def quiet(timeout: float = 0.05) -> list[Any]:
    """What arrived in this actor's mailbox within `timeout` (NodeUp/NodeDown included)."""
    seen = []
    while True:
        try:
            seen.append(await partisan.receive(timeout=timeout))
        except partisan.ReceiveTimeout:
            return seen


@pytest.mark.timeout(10)
@async_test
async def test_traffic_for_a_parked_peer_dials_in_order_without_node_events() -> None:
    async with nodes("a", "b") as (a, b):
        sink = await partisan.spawn(collect, partisan.self(), node="b")
        partisan.monitor_node()  # every node (a monitor_node("b") would pin the link)
        park(a, b)
        await quiet()
        assert a.nodes() == [] and partisan.is_alive(sink)  # parked: healthy, no link
        for i in range(100):
            partisan.send(sink, i)  # the first one dials; the rest wait in order
        partisan.send(sink, "report")
        assert await partisan.receive(timeout=2) == list(range(100))
        assert a.nodes() == ["b"]
        assert not [m for m in await quiet() if isinstance(m, (NodeUp, NodeDown))]


@pytest.mark.timeout(10)
@async_test
async def test_strict_mode_refuses_a_parked_peer() -> None:
    async with nodes("a", "b", connect_on_use=False) as (a, b):
        sink = await partisan.spawn(collect, partisan.self(), node="b")
        park(a, b)
        await quiet()
        with pytest.raises(NotConnected, match="connect_on_use is off"):
            partisan.send(sink, "x")
        with pytest.raises(NotConnected):
            await partisan.call(sink, "x", timeout=1)
        assert a.nodes() == []


@pytest.mark.timeout(10)
@async_test
async def test_a_pinned_peer_refuses_the_close_and_an_unpinned_one_agrees() -> None:
    async with nodes("a", "b") as (a, b):
        assert a.dist is not None and b.dist is not None and b.spec is not None
        sink = await partisan.spawn(collect, partisan.self(), node="b")
        with b.as_current():
            watcher = partisan.monitor(a.pid)  # b depends on the link: it must say no
        a.dist.on_demand.request_close(b.spec)
        await quiet()
        assert a.nodes() == ["b"] and b.nodes() == ["a"]
        with b.as_current():
            partisan.demonitor(watcher)
        await quiet()
        a.dist.on_demand.request_close(b.spec)
        await quiet()
        assert a.nodes() == [] and b.nodes() == []  # agreed: both parked
        assert a.dist.parked == {"b": b.incarnation} and "a" in b.dist.parked
        partisan.send(sink, "report")  # and traffic brings a link back
        assert await partisan.receive(timeout=2) == []


@pytest.mark.timeout(10)
@async_test
async def test_traffic_held_during_an_agreed_close_arrives_over_the_next_link() -> None:
    async with nodes("a", "b") as (a, b):
        assert a.dist is not None and b.dist is not None
        assert a.spec is not None and b.spec is not None
        a.dist.on_demand.asked["b"] = b.spec  # a asked to close ...
        b.dist.on_demand.on_close_req(a.spec)  # ... b agreed, and holds its traffic
        with b.as_current():
            for i in range(5):
                partisan.send(a.pid, ("held", i))
        assert b.dist.on_demand.queues["a"]  # waiting, not on the closing link
        got = [m for m in await quiet(0.2) if isinstance(m, tuple)]
        assert got == [("held", i) for i in range(5)]
        assert a.nodes() == ["b"]  # b dialled again for them


@pytest.mark.timeout(10)
@async_test
async def test_members_is_the_same_view_from_the_module_and_the_node() -> None:
    async with nodes("a", "b", "c") as (a, _b, _c):
        assert partisan.members() == a.members() == ["a", "b", "c"]


@pytest.mark.timeout(10)
@async_test
async def test_a_failed_dial_fails_monitors_and_calls_and_counts_the_messages() -> None:
    async with nodes("a", "b") as (a, b):
        sink = await partisan.spawn(collect, partisan.self(), node="b")
        partisan.monitor_node()
        park(a, b)
        await quiet()
        b.links.crash()  # b dies while parked: nobody here can see it
        partisan.send(sink, "lost")
        ref = partisan.monitor(sink)
        down = await partisan.receive(match=partisan.Down, timeout=2)
        assert (down.ref, down.reason) == (ref, "noconnection")
        # it was believed alive: every-node subscribers hear of it, once
        assert [m for m in await quiet() if isinstance(m, NodeDown)] == [
            NodeDown("b", "unreachable")
        ]
        assert not partisan.is_alive(sink)
        with pytest.raises(NotConnected):  # no longer parked: not dialled again
            await partisan.call(sink, "x", timeout=1)
        assert a.statistics().drops["dial_failed"] == 2  # the message and the monitor request


@pytest.mark.timeout(10)
@async_test
async def test_a_node_seen_failing_is_not_connected_and_not_reported_down_again() -> None:
    async with nodes("a", "b") as (a, b):
        assert a.dist is not None and b.spec is not None
        partisan.monitor_node("b")
        b.links.crash()
        assert await partisan.receive(match=NodeDown, timeout=2) == NodeDown(
            "b", "connection_closed"
        )
        a.dist.on_demand.find = lambda name: b.spec if name == "b" else None  # still a member
        # down when the operation starts: NotConnected at once, no dial
        with pytest.raises(NotConnected, match="node 'b' is down"):
            await partisan.call(("x", "b"), "hello", timeout=1)
        with pytest.raises(NotConnected, match="node 'b' is down"):
            partisan.send(("x", "b"), "hello")
        assert not a.dist.on_demand.dialing
        assert not [m for m in await quiet() if isinstance(m, NodeDown)]


@pytest.mark.timeout(10)
@async_test
async def test_a_restarted_node_the_manager_names_is_dialled_again() -> None:
    async with nodes("a", "b") as (a, b):
        assert a.dist is not None
        b.links.crash()
        await quiet()
        with pytest.raises(NotConnected, match="is down"):
            partisan.send(("x", "b"), 1)
        net = a.links.network
        b2 = Node("b", links_factory=net.factory, insecure=True)
        await b2.start()
        try:
            assert b2.spec is not None
            a.dist.on_demand.find = lambda name: b2.spec if name == "b" else None
            with b2.as_current():
                sink = await partisan.spawn(collect, a.pid, name="x")
            with a.as_current():  # (starting b2 made it the current node)
                partisan.send(("x", "b"), "hello")  # a newer incarnation: dialled
                partisan.send(sink, "report")
                assert await partisan.receive(timeout=2) == ["hello"]
        finally:
            await b2.stop()

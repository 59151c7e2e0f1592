"""A supervisor with a child on another node, on the in-memory network (no sockets, milliseconds).

The integration twin (`tests/integration/test_supervision_node.py`) does the same across a real
kill -9 of a node process.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import partisan
from partisan.actors.memlinks import MemoryNetwork
from partisan.actors.signals import Exit
from partisan.errors import ReceiveTimeout
from partisan.node import Node
from partisan.supervision import api as sup
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.supervisor import Supervisor

DEADLINE = 5.0


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def remote_worker() -> None:
    await partisan.receive()


async def start_node(name: str, net: MemoryNetwork) -> Node:
    """Start a node without making it the caller's current node (its own task's context)."""
    return await asyncio.create_task(Node(name, links_factory=net.factory, insecure=True).start())


async def wait_for(probe: Callable[[], Coroutine[Any, Any, Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)  # ok-sleep: polling interval of a deadline-bounded wait


@pytest.mark.timeout(15)
@run_async
async def test_remote_child_waits_for_its_node_and_is_restarted_there() -> None:
    net = MemoryNetwork()
    a = await Node("a", links_factory=net.factory, insecure=True).start()
    b = await Node("b", links_factory=net.factory, insecure=True).start()
    b2: Node | None = None
    try:
        with a.as_current():
            await a.join("b")
            tree = SupervisorSpec(
                [ChildSpec("w", remote_worker, node="b"), ChildSpec("local", remote_worker)],
                intensity=1,
                period=60,
            )
            root = await Supervisor.start_link(tree)
            first = (await sup.which_children(root))[0]
            assert first.pid is not None and first.pid.node == "b" and first.node == "b"

            b.links.crash()  # kill -9 of node b: the link gives the supervisor noconnection

            async def waiting() -> bool:
                child = (await sup.which_children(root))[0]
                return child.pid is None and child.restarting

            await wait_for(waiting, "the child to wait for its node")
            # Its node is unreachable: the failed restart attempts did not use up the
            # intensity (1), so the supervisor is still alive and its sibling untouched.
            assert partisan.is_alive(root)
            assert (await sup.count_children(root))["active"] == 1

            b2 = await start_node("b", net)
            await a.join("b")  # re-joined explicitly: NodeUp wakes the supervisor

            async def restarted() -> Any:
                pid = (await sup.which_children(root))[0].pid
                return pid if pid is not None and pid.incarnation == b2.incarnation else None

            new = await wait_for(restarted, "the child restarted on the new incarnation of b")
            assert await partisan.ping(new)
            with pytest.raises(ReceiveTimeout):  # no escalation happened
                await partisan.receive(lambda m: isinstance(m, Exit), timeout=0)
            await partisan.actors.gen_server.stop(root, "shutdown")
            assert not partisan.is_alive(new) or not await partisan.ping(new)
    finally:
        if b2 is not None:
            await b2.stop()
        await b.stop()
        await a.stop()


@pytest.mark.timeout(15)
@run_async
async def test_losing_the_node_twice_within_the_period_escalates() -> None:
    net = MemoryNetwork()
    a = await Node("a", links_factory=net.factory, insecure=True).start()
    nodes = [await Node("b", links_factory=net.factory, insecure=True).start()]
    try:
        with a.as_current():
            await a.join("b")
            root = await Supervisor.start_link(
                SupervisorSpec([ChildSpec("w", remote_worker, node="b")], intensity=1, period=60)
            )
            for _ in range(2):
                nodes[-1].links.crash()
                nodes.append(await start_node("b", net))
                await a.join("b")
                if len(nodes) == 2:  # first loss: restarted on the new b

                    async def running(inc: int = nodes[-1].incarnation) -> bool:
                        pid = (await sup.which_children(root))[0].pid
                        return pid is not None and pid.incarnation == inc

                    await wait_for(running, "restart on the second b")
            exit_msg = await partisan.receive(lambda m: isinstance(m, Exit), timeout=DEADLINE)
            assert exit_msg == Exit(root, "shutdown")  # the second loss exceeded intensity 1
    finally:
        for node in reversed(nodes):
            await node.stop()
        await a.stop()

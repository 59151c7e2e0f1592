"""partisan.blocking and partisan.run: the node from synchronous code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import partisan
from partisan import GenServer, blocking
from partisan.actors.memlinks import MemoryNetwork


class Adder(GenServer):
    def init(self, base: int) -> None:
        self.base = base

    def handle_call(self, request: Any, caller: Any) -> Any:
        return self.base + request


async def echo() -> None:
    while True:
        to, msg = await partisan.receive()
        partisan.send(to, msg)


async def uses_blocking_inside_the_loop(report_to: Any) -> None:
    try:
        blocking.self()
    except RuntimeError as exc:
        partisan.send(report_to, str(exc))


@pytest.mark.timeout(30)
def test_blocking_node_mirrors_the_module_functions() -> None:
    net = MemoryNetwork()
    with (
        blocking.Node("a", links_factory=net.factory, insecure=True) as a,
        blocking.Node("b", links_factory=net.factory, insecure=True) as b,
    ):
        assert b.join("a").name == "a"
        assert blocking.node() == "b" and b.nodes() == ["a"]
        pid = blocking.spawn(echo, node="a")
        blocking.send(pid, (blocking.self(), "hi"))
        assert blocking.receive(timeout=5) == "hi"
        server = blocking.spawn(Adder, 40, node="a")
        assert blocking.call(server, 2) == 42
        assert blocking.rpc("a", lambda: partisan.node()) == "a"
        ref = blocking.monitor(pid)
        blocking.exit(pid, "kill")
        assert blocking.receive(match=partisan.Down, timeout=5) == partisan.Down(ref, pid, "killed")
        blocking.spawn(uses_blocking_inside_the_loop, blocking.self())
        assert "event loop thread" in blocking.receive(timeout=5)
        assert a.statistics().actors == 1
    with pytest.raises(RuntimeError, match=r"no partisan\.blocking\.Node"):
        blocking.self()


def test_run_runs_main_inside_a_node_and_returns_its_result() -> None:
    net = MemoryNetwork()

    async def main() -> tuple[str, Any]:
        server = await Adder.start(1)
        return partisan.node(), await partisan.call(server, 1)

    assert partisan.run(main, name="solo", links_factory=net.factory, insecure=True) == ("solo", 2)
    assert (
        partisan.run(main(), name="again", links_factory=net.factory, insecure=True)[0] == "again"
    )


def test_node_config_errors_are_raised_at_construction() -> None:
    with pytest.raises(partisan.ConfigError, match="heartbeat_timeout"):
        partisan.Node("x", heartbeat_timeout=-1)
    with pytest.raises(partisan.ConfigError, match="name"):
        partisan.Node("bad name!")


def test_module_functions_outside_a_node_raise() -> None:
    with pytest.raises(RuntimeError, match="no partisan Node"):
        partisan.self()
    with pytest.raises(RuntimeError, match="no partisan Node"):
        asyncio.run(partisan.spawn(echo))

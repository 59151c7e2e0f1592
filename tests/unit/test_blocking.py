"""partisan.blocking and partisan.run: the node from synchronous code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import partisan
from partisan import GenServer, blocking
from partisan.actors import gen_server
from partisan.actors.memlinks import MemoryNetwork
from partisan.supervision import api as partisan_supervision


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
        asyncio.run(inside_a_loop(lambda: partisan.spawn(echo)))


async def inside_a_loop(make: Any) -> Any:
    return await make()


def test_coroutine_functions_called_from_sync_code_are_refused_naming_the_twin() -> None:
    cases = {
        "Adder.start()": lambda: Adder.start(1),
        "Adder.start_link()": lambda: Adder.start_link(1),
        "partisan.spawn()": lambda: partisan.spawn(echo),
        "partisan.call()": lambda: partisan.call("x", 1),
        "partisan.rpc()": lambda: partisan.rpc("a", len, "x"),
        "partisan.ping()": lambda: partisan.ping("a"),
        "partisan.send(..., wait=True)": lambda: partisan.send("x", 1, wait=True),
        "partisan.supervision.api.which_children()": lambda: partisan_supervision.which_children(
            "sup"
        ),
        "partisan.actors.gen_server.stop()": lambda: gen_server.stop("x"),
    }
    for what, make in cases.items():
        with pytest.raises(RuntimeError) as info:
            make()
        text = str(info.value)
        assert text.startswith(f"{what} is a coroutine") and "partisan.blocking." in text, text
    with pytest.raises(RuntimeError, match=r"partisan\.blocking\.start\(Adder, \.\.\.\)"):
        Adder.start(1)


@pytest.mark.timeout(30)
def test_blocking_twins_of_the_behaviours_and_the_supervision_api() -> None:
    from partisan import ChildSpec, Supervisor, SupervisorSpec

    net = MemoryNetwork()
    with blocking.Node("a", links_factory=net.factory, insecure=True):
        adder = blocking.start(Adder, 40, name="adder")
        assert blocking.call("adder", 2) == 42
        with pytest.raises(partisan.AlreadyStarted) as info:
            blocking.start(Adder, 1, name="adder")
        assert info.value.pid == adder
        sup = blocking.start_link(Supervisor, SupervisorSpec([ChildSpec("w", Adder, (1,))]))
        assert [c.id for c in blocking.which_children(sup)] == ["w"]
        assert blocking.count_children(sup)["active"] == 1
        blocking.terminate_child(sup, "w")
        assert blocking.count_children(sup)["active"] == 0
        assert blocking.call(blocking.restart_child(sup, "w"), 1) == 2
        blocking.terminate_child(sup, "w")
        blocking.delete_child(sup, "w")
        assert blocking.which_children(sup) == []
        child = blocking.start_child(sup, ChildSpec("v", Adder, (5,)))
        assert blocking.call(child, 1) == 6
        blocking.stop(adder)
        assert not blocking.is_alive(adder)

"""The inbound call hot path: Pids rebuilt from wire tuples are cached, bad tuples are counted."""

from __future__ import annotations

from typing import Any

from _actor_support import async_test, nodes

import partisan
from partisan import GenServer
from partisan.actors.memlinks import MemoryLinks
from partisan.identity import Pid


class Who(GenServer):
    def handle_call(self, request: Any, caller: partisan.From) -> Any:
        return (request, caller.pid)


def links_of(node: partisan.Node) -> MemoryLinks:
    assert isinstance(node.links, MemoryLinks)
    return node.links


@async_test
async def test_callers_pid_is_exact_across_repeated_calls() -> None:
    async with nodes("a", "b") as [_a, b]:
        who = await Who.start(node="b")
        me = partisan.self()
        for i in range(3):  # the second and third calls take the cached Pids
            request, caller = await partisan.call(who, i)
            assert request == i
            assert caller == me and type(caller) is Pid
        assert b.dist is not None and me in b.dist._pid_tuples.values()


@async_test
async def test_malformed_call_tuples_are_counted_and_the_server_keeps_serving() -> None:
    async with nodes("a", "b") as [a, b]:
        who = await Who.start(node="b")
        me = partisan.self()
        ref = ("a", 1, 1)
        target = (who.node, who.incarnation, who.id)
        for caller, dest in [
            (["a", 1, 2], target),  # unhashable caller
            (("a", 1), target),  # wrong arity caller
            ((me.node, me.incarnation, me.id), ("b", 1)),  # wrong arity target
            ((me.node, me.incarnation, me.id), (["b"], 1, 2)),  # unhashable target
        ]:
            links_of(a).send("b", "default", "$runtime", ("$call", ref, caller, dest, "x"))
        assert await partisan.call(who, "still here") == ("still here", me)
        assert b.statistics().drops["bad_control"] == 4

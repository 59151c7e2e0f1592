"""Distributed actor semantics over the in-memory network: two or three runtimes, one loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _actor_support import async_test, drain_until, nodes

import partisan
from partisan import Crashed, Down, Exit, GenServer, NodeDown, NodeUp, NoReply
from partisan.actors.memlinks import MemoryLinks
from partisan.actors.signals import Cast
from partisan.errors import CallExit, NotConnected, SpawnError


class KV(GenServer):
    def init(self) -> None:
        self.data: dict[Any, Any] = {}
        self.waiting: list[Any] = []

    def handle_call(self, request: Any, caller: partisan.From) -> Any:
        op, *args = request
        if op == "get":
            return self.data.get(args[0])
        if op == "wait":
            self.waiting.append(caller)
            return NoReply
        if op == "wake":
            for waiter in self.waiting:
                self.reply(waiter, "woken")
            return len(self.waiting)
        if op == "node":
            return partisan.node()
        return None

    def handle_cast(self, request: Any) -> None:
        key, value = request
        self.data[key] = value


async def wait_for_message() -> None:
    await partisan.receive()


async def exit_with(reason: Any) -> None:
    await partisan.receive()
    partisan.exit(partisan.self(), reason)


async def crash_on_message() -> None:
    msg = await partisan.receive()
    raise ValueError(f"bad {msg}")


def links_of(node: partisan.Node) -> MemoryLinks:
    assert isinstance(node.links, MemoryLinks)
    return node.links


@async_test
async def test_remote_call_by_pid_and_name_cast_and_deferred_reply() -> None:
    async with nodes("a", "b") as [a, b]:
        assert partisan.nodes() == ["b"] and partisan.members() == ["a", "b"]
        with b.as_current():
            kv = await KV.start(name="kv")
        partisan.cast(("kv", "b"), ("x", 1))
        assert await partisan.call(kv, ("get", "x")) == 1
        assert await partisan.call(("kv", "b"), ("node",)) == "b"
        waiter = asyncio.ensure_future(partisan.call(kv, ("wait",)))
        assert await partisan.call(kv, ("wake",)) in (0, 1)
        if not waiter.done():
            assert await partisan.call(kv, ("wake",)) == 1
        assert await waiter == "woken"
        stats = a.statistics()
        assert stats.routed_remote >= 5 and b.statistics().received_remote >= 5


@async_test
async def test_remote_spawn_of_a_closure_rpc_and_send_after() -> None:
    async with nodes("a", "b"):
        me = partisan.self()
        secret = {"captured": 42}

        async def closure() -> None:
            partisan.send(me, (partisan.node(), secret["captured"]))

        await partisan.spawn(closure, node="b")
        assert await partisan.receive(timeout=2) == ("b", 42)
        assert await partisan.rpc("b", lambda x: (partisan.node(), x * 2), 21) == ("b", 42)

        async def async_fn() -> str:
            return partisan.node()

        assert await partisan.rpc("b", async_fn) == "b"
        with pytest.raises(ZeroDivisionError) as info:
            await partisan.rpc("b", lambda: 1 / 0)
        assert "remote traceback" in "".join(info.value.__notes__)
        kv = await KV.start(node="b")
        timer = partisan.send_after(0.01, kv, Cast(("t", "fired")))
        cancelled = partisan.send_after(0.01, kv, Cast(("c", "fired")))
        assert partisan.cancel_timer(cancelled) and not partisan.cancel_timer(cancelled)
        partisan.send_after(0.05, me, "done")
        assert await partisan.receive(timeout=2) == "done"
        assert await partisan.call(kv, ("get", "t")) == "fired" and timer
        assert await partisan.call(kv, ("get", "c")) is None


@async_test
async def test_remote_spawn_errors_carry_the_remote_traceback() -> None:
    class NotAnActor:
        pass

    async with nodes("a", "b"):
        with pytest.raises(TypeError):
            await partisan.spawn(lambda: None, node="b")  # plain def: refused here

        class BadInit(GenServer):
            def init(self) -> None:
                raise LookupError("no such table")

        with pytest.raises(SpawnError) as info:
            await BadInit.start(node="b")
        assert "LookupError" in str(info.value) and info.value.remote_traceback
        with pytest.raises(TypeError):
            await partisan.spawn(NotAnActor, node="b")  # type: ignore[arg-type]
        with pytest.raises(NotConnected):
            await partisan.spawn(wait_for_message, node="nowhere")
        with pytest.raises(NotConnected):
            partisan.send(("x", "nowhere"), 1)


@async_test
async def test_every_down_reason_on_a_remote_monitor() -> None:
    async with nodes("a", "b", "c") as [_a, _b, c]:
        normal = await partisan.spawn(wait_for_message, node="b")
        custom = await partisan.spawn(exit_with, "frop", node="b")
        crash = await partisan.spawn(crash_on_message, node="b")
        refs = {partisan.monitor(p): p for p in (normal, custom, crash)}
        for pid in (normal, custom, crash):
            partisan.send(pid, "go")
        downs = {
            d.pid: d.reason for d in [await partisan.receive(match=Down, timeout=2) for _ in refs]
        }
        assert downs[normal] == "normal" and downs[custom] == "frop"
        assert isinstance(downs[crash], Crashed) and downs[crash].message == "bad go"
        ref = partisan.monitor(normal)  # dead already: noproc from its node
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, normal, "noproc")
        ref = partisan.monitor(("ghost", "b"))
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, ("ghost", "b"), "noproc")
        on_c = await partisan.spawn(wait_for_message, node="c")
        ref = partisan.monitor(on_c)
        links_of(c).crash()
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, on_c, "noconnection")
        ref = partisan.monitor(on_c)  # node gone: noconnection at once
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, on_c, "noconnection")


@async_test
async def test_remote_demonitor_and_flush() -> None:
    async with nodes("a", "b"):
        pid = await partisan.spawn(wait_for_message, node="b")
        ref = partisan.monitor(pid)
        witness = partisan.monitor(pid)
        assert partisan.demonitor(ref)
        partisan.send(pid, "go")
        assert (await partisan.receive(match=Down, timeout=2)).ref == witness
        partisan.send(partisan.self(), "marker")
        assert await drain_until("marker") == []
        pid2 = await partisan.spawn(wait_for_message, node="b")
        ref2, witness2 = partisan.monitor(pid2), partisan.monitor(pid2)
        partisan.send(pid2, "go")
        await partisan.receive(match=lambda m: isinstance(m, Down) and m.ref == witness2, timeout=2)
        assert partisan.demonitor(ref2, flush=True) is False
        partisan.send(partisan.self(), "marker")
        assert await drain_until("marker") == []


async def link_and_report(peer: Any, report_to: Any, trap: bool) -> None:
    partisan.trap_exit(trap)
    partisan.link(peer)
    partisan.send(report_to, ("linked", partisan.self()))
    msg = await partisan.receive()
    partisan.send(report_to, ("got", msg))
    await partisan.receive()


@async_test
async def test_link_across_nodes_crash_propagates_and_trap_exit_gets_exit() -> None:
    async with nodes("a", "b"):
        me = partisan.self()
        crasher = await partisan.spawn(crash_on_message, node="b")
        victim = await partisan.spawn(link_and_report, crasher, me, False)
        await partisan.spawn(link_and_report, crasher, me, True)
        for _ in "12":
            assert (await partisan.receive(timeout=2))[0] == "linked"
        victim_ref = partisan.monitor(victim)
        partisan.send(crasher, "boom")
        down = await partisan.receive(match=Down, timeout=2)
        assert down.ref == victim_ref and isinstance(down.reason, Crashed)
        got = await partisan.receive(match=tuple, timeout=2)
        assert got[0] == "got" and isinstance(got[1], Exit) and got[1].pid == crasher
        # the other way round: a local crash reaches a remote linked actor
        local = await partisan.spawn(crash_on_message)
        remote = await partisan.spawn(link_and_report, local, me, False, node="b")
        assert await partisan.receive(timeout=2) == ("linked", remote)
        ref = partisan.monitor(remote)
        partisan.send(local, "boom")
        down = await partisan.receive(match=Down, timeout=2)
        assert down.ref == ref and isinstance(down.reason, Crashed)
        # spawn(link=True) to a remote node, then the node dies: noconnection exit
        await partisan.spawn(wait_for_message, node="b", link=True)


@async_test
async def test_node_loss_fails_pending_calls_monitors_and_links_exactly_once() -> None:
    async with nodes("a", "b") as [a, b]:
        partisan.monitor_node("b")
        partisan.monitor_node()
        kv = await KV.start(node="b")
        calls = [
            asyncio.ensure_future(partisan.call(kv, ("wait",), timeout=60)) for _ in range(100)
        ]
        refs = {partisan.monitor(kv) for _ in range(3)}
        partisan.link(kv)
        await asyncio.sleep(0)  # ok-sleep: let the calls leave
        links_of(b).crash()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
        assert all(isinstance(r, CallExit) and r.reason == "noconnection" for r in results)
        partisan.send(partisan.self(), "marker")
        seen = await drain_until("marker")
        assert sorted(d.ref for d in seen if isinstance(d, Down)) == sorted(refs)
        assert [m for m in seen if isinstance(m, NodeDown)] == [NodeDown("b", "connection_closed")]
        assert [m for m in seen if isinstance(m, Exit)] == [Exit(kv, "noconnection")]
        assert a.statistics().runtime.monitors == 0  # type: ignore[union-attr]
        assert not partisan.is_alive(kv) and partisan.nodes() == []
        assert not await partisan.ping("b")


@async_test
async def test_restarted_node_old_pids_are_dead_new_ones_work() -> None:
    async with nodes("a", "b") as [a, _b]:
        partisan.monitor_node("b")
        old = await KV.start(node="b", name="kv")
        net = links_of(a).network
        from partisan.node import Node

        b2 = Node("b", links_factory=net.factory, insecure=True)
        await b2.start()  # replaces the old incarnation on the network (its peers see a crash)
        try:
            await a.join("b")
            await _check_restart(a, b2, old)
        finally:
            await b2.stop()


async def _check_restart(a: partisan.Node, b2: partisan.Node, old: partisan.Pid) -> None:
    with a.as_current():
        assert await partisan.receive(match=NodeDown, timeout=2) == NodeDown(
            "b", "connection_closed"
        )
        assert await partisan.receive(match=NodeUp, timeout=2) == NodeUp("b")
        assert not partisan.is_alive(old)
        ref = partisan.monitor(old)
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, old, "noproc")
        partisan.send(old, Cast(("x", 1)))
        assert a.statistics().drops["stale_incarnation"] == 1
        with pytest.raises(CallExit) as info:
            await partisan.call(old, ("get", "x"))
        assert info.value.reason == "noproc"
        new = await KV.start(node="b", name="kv")
        assert new.incarnation == b2.incarnation != old.incarnation
        assert await partisan.call(("kv", "b"), ("node",)) == "b"
        assert await partisan.ping(new) and not await partisan.ping(old)
        # the new incarnation itself drops a message addressed to an old pid
        links_of(a).send("b", "default", str(old), "stale")
        with b2.as_current():
            assert await partisan.call(new, ("get", "x")) is None
        assert b2.statistics().drops["stale_incarnation"] == 1


@async_test
async def test_hidden_node_is_not_in_nodes_but_can_call() -> None:
    async with nodes("a", "b") as [a, _b]:
        from partisan.node import Node

        net = links_of(a).network
        async with Node("h", links_factory=net.factory, insecure=True, hidden=True) as h:
            await h.join("a")
            with h.as_current():
                kv = await KV.start(node="a", name="kv")
                partisan.cast(kv, ("k", "v"))
                assert await partisan.call(("kv", "a"), ("get", "k")) == "v"
                assert partisan.nodes() == ["a"]
            assert a.nodes() == ["b"] and "h" not in a.members()


@async_test
async def test_leave_gives_nodedown_left_on_both_sides() -> None:
    async with nodes("a", "b") as [a, b]:
        partisan.monitor_node("b")
        with b.as_current():
            partisan.monitor_node("a")
        await a.leave("b")
        assert await partisan.receive(match=NodeDown, timeout=2) == NodeDown("b", "left")
        with b.as_current():
            assert await partisan.receive(match=NodeDown, timeout=2) == NodeDown("a", "left")
        assert a.nodes() == [] and b.nodes() == []


@async_test
async def test_links_with_monitors_links_or_calls_are_pinned() -> None:
    async with nodes("a", "b") as [a, _b]:
        dist = a.dist
        assert dist is not None and not dist.pinned("b")
        kv = await KV.start(node="b")
        ref = partisan.monitor(kv)
        assert dist.pinned("b")
        partisan.demonitor(ref)
        assert not dist.pinned("b")
        partisan.link(kv)
        assert dist.pinned("b")
        partisan.unlink(kv)
        assert not dist.pinned("b")
        waiting = asyncio.ensure_future(partisan.call(kv, ("wait",)))
        await asyncio.sleep(0)  # ok-sleep: let the call register
        assert dist.pinned("b")
        await partisan.call(kv, ("wake",))
        assert await waiting == "woken" and not dist.pinned("b")


@async_test
async def test_bad_frames_from_a_peer_are_counted_never_fatal() -> None:
    async with nodes("a", "b") as [a, b]:
        kv = await KV.start(node="b")
        sender = links_of(a)
        for dest, payload in [
            ("$runtime", ("$call", "not a ref", None)),  # malformed hot-path envelope
            ("$runtime", ("$nonsense",)),
            ("$runtime", NodeUp("x")),  # not a control envelope
            ("partisan:pid:b:x:y", "bad pid text"),
            ("nobody", "unknown name"),
        ]:
            sender.send("b", "default", dest, payload)
        assert await partisan.call(kv, ("node",)) == "b"  # b still serves, in order
        drops = b.statistics().drops
        assert drops["bad_control"] == 2 and drops["unknown_control"] == 1
        assert drops["bad_destination"] == 1
        assert drops["unknown_name"] == 1


@async_test
async def test_calls_to_unreachable_nodes_raise_not_connected() -> None:
    async with nodes("a"):
        with pytest.raises(NotConnected):
            await partisan.call(("kv", "nowhere"), "x")
        with pytest.raises(NotConnected):
            await partisan.call(partisan.Pid("nowhere", 1, 1), "x")
        with pytest.raises(NotConnected):
            await partisan.rpc("nowhere", len, [])
        assert not await partisan.ping("nowhere")
        ref = partisan.monitor(("kv", "nowhere"))
        assert await partisan.receive(match=Down, timeout=2) == Down(
            ref, ("kv", "nowhere"), "noconnection"
        )


class SlowToStop(GenServer):
    """Traps exits; its terminate tells `watcher` and waits for a go-ahead."""

    trap_exit = True

    def init(self, watcher: Any) -> None:
        self.watcher = watcher

    async def terminate(self, reason: Any) -> None:
        partisan.send(self.watcher, ("terminating", partisan.self(), reason))
        await partisan.receive(match="go".__eq__, timeout=5)


@async_test
async def test_graceful_stop_leaves_first_and_peers_see_down_before_nodedown() -> None:
    async with nodes("a", "b") as (_, b):
        partisan.monitor_node("b")
        pid = await SlowToStop.start(partisan.self(), node="b")
        ref = partisan.monitor(pid)
        stopping = asyncio.ensure_future(b.stop())
        msg = await partisan.receive(match=tuple, timeout=2)
        assert msg == ("terminating", pid, "shutdown")
        # b is leaving: it refuses new joins while its actors stop, links stay up
        with pytest.raises(partisan.JoinRefused, match="stopping"):
            await b.join("a")
        assert partisan.nodes() == ["b"]
        partisan.send(pid, "go")
        await stopping
        events = [await partisan.receive(match=(Down, NodeDown), timeout=2) for _ in "12"]
        assert events == [Down(ref, pid, "shutdown"), NodeDown("b", "left")]

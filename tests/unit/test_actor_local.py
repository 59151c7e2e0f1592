"""The local actor runtime: spawn, send/receive, crashes, monitors, links, names, timers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from _actor_support import async_test, drain_until, nodes

import partisan
from partisan import Actor, Crashed, Down, Exit
from partisan.errors import CallExit, CallTimeout, ReceiveTimeout


async def echo() -> None:
    while True:
        reply_to, payload = await partisan.receive()
        partisan.send(reply_to, ("echo", payload))


async def wait_for_message() -> None:
    await partisan.receive()


async def crash_on_message() -> None:
    msg = await partisan.receive()
    raise ValueError(f"bad {msg}")


async def exit_with(reason: Any) -> None:
    await partisan.receive()
    partisan.exit(partisan.self(), reason)


@async_test
async def test_spawn_send_receive_and_main_pseudo_actor() -> None:
    async with nodes("a") as [node]:
        me = partisan.self()
        assert me == node.pid and partisan.node() == "a"
        pid = await partisan.spawn(echo)
        assert pid.node == "a" and partisan.is_alive(pid)
        partisan.send(pid, (me, 1))
        partisan.send(pid, (me, 2))
        assert await partisan.receive(timeout=2) == ("echo", 1)
        assert await partisan.receive(timeout=2) == ("echo", 2)
        with pytest.raises(ReceiveTimeout):
            await partisan.receive(timeout=0.01)


@async_test
async def test_spawn_rejects_plain_functions_and_other_classes() -> None:
    def plain() -> None:
        pass

    async with nodes("a"):
        with pytest.raises(TypeError, match="async def"):
            await partisan.spawn(plain)
        with pytest.raises(TypeError, match="not an Actor"):
            await partisan.spawn(dict)


class Greeter(Actor):
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.me_at_init = self.pid

    async def run(self) -> None:
        who = await partisan.receive()
        partisan.send(who, (self.greeting, self.me_at_init == partisan.self()))


@async_test
async def test_actor_subclass_gets_args_and_its_pid() -> None:
    async with nodes("a"):
        pid = await partisan.spawn(Greeter, "hello")
        partisan.send(pid, partisan.self())
        assert await partisan.receive(timeout=2) == ("hello", True)


@async_test
async def test_crash_is_logged_and_reported_as_crashed_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nodes("a") as [node]:
        pid = await partisan.spawn(crash_on_message)
        ref = partisan.monitor(pid)
        with caplog.at_level(logging.ERROR, logger="partisan.actors.runtime"):
            partisan.send(pid, 7)
            down = await partisan.receive(match=Down, timeout=2)
        assert down.ref == ref and down.pid == pid
        assert isinstance(down.reason, Crashed)
        assert (down.reason.type, down.reason.message) == ("ValueError", "bad 7")
        assert "crash_on_message" in down.reason.traceback_text
        assert "ValueError: bad 7" in caplog.text
        assert not partisan.is_alive(pid) and node.running
        assert node.statistics().actors == 0


@async_test
async def test_down_reasons_normal_custom_noproc() -> None:
    async with nodes("a"):
        normal = await partisan.spawn(wait_for_message)
        custom = await partisan.spawn(exit_with, "frop")
        r1, r2 = partisan.monitor(normal), partisan.monitor(custom)
        partisan.send(normal, "go")
        partisan.send(custom, "go")
        downs = {
            d.ref: d.reason for d in [await partisan.receive(match=Down, timeout=2) for _ in "12"]
        }
        assert downs == {r1: "normal", r2: "frop"}
        r3 = partisan.monitor(normal)  # already dead
        assert await partisan.receive(match=Down, timeout=2) == Down(r3, normal, "noproc")
        r4 = partisan.monitor("nobody")
        assert await partisan.receive(match=Down, timeout=2) == Down(r4, ("nobody", "a"), "noproc")


@async_test
async def test_demonitor_before_exit_gives_no_down_and_flush_removes_queued_one() -> None:
    async with nodes("a"):
        pid = await partisan.spawn(wait_for_message)
        ref = partisan.monitor(pid)
        witness = partisan.monitor(pid)
        assert partisan.demonitor(ref) is True
        partisan.send(pid, "go")
        assert (await partisan.receive(match=Down, timeout=2)).ref == witness
        partisan.send(partisan.self(), "marker")
        assert [m for m in await drain_until("marker") if isinstance(m, Down)] == []
        # flush: the Down is already queued when we demonitor
        pid2 = await partisan.spawn(wait_for_message)
        ref2 = partisan.monitor(pid2)
        witness2 = partisan.monitor(pid2)
        partisan.send(pid2, "go")
        assert await partisan.receive(
            match=lambda m: isinstance(m, Down) and m.ref == witness2, timeout=2
        )
        assert partisan.demonitor(ref2, flush=True) is False
        partisan.send(partisan.self(), "marker")
        assert await drain_until("marker") == []


async def linked_waiter(peer: Any, report_to: Any) -> None:
    partisan.link(peer)
    partisan.send(report_to, "linked")
    await partisan.receive()


class Trapper(Actor):
    trap_exit = True

    async def run(self) -> None:
        report_to, peer = await partisan.receive()
        partisan.link(peer)
        partisan.send(report_to, "linked")
        partisan.send(report_to, await partisan.receive(match=Exit))


@async_test
async def test_links_propagate_crashes_and_trap_exit_turns_them_into_messages() -> None:
    async with nodes("a"):
        crasher = await partisan.spawn(crash_on_message)
        victim = await partisan.spawn(linked_waiter, crasher, partisan.self())
        trapper = await partisan.spawn(Trapper)
        partisan.send(trapper, (partisan.self(), crasher))
        assert await partisan.receive(timeout=2) == "linked"
        assert await partisan.receive(timeout=2) == "linked"
        victim_ref = partisan.monitor(victim)
        partisan.send(crasher, "boom")
        down = await partisan.receive(match=Down, timeout=2)
        assert down.ref == victim_ref and isinstance(down.reason, Crashed)
        exit_msg = await partisan.receive(match=Exit, timeout=2)
        assert exit_msg.pid == crasher and isinstance(exit_msg.reason, Crashed)


@async_test
async def test_normal_exit_does_not_kill_links_and_main_traps_exits() -> None:
    async with nodes("a"):
        a = await partisan.spawn(wait_for_message)
        partisan.link(a)  # main pseudo-actor links to a
        b = await partisan.spawn(linked_waiter, a, partisan.self())
        assert await partisan.receive(timeout=2) == "linked"
        partisan.send(a, "bye")
        assert await partisan.receive(match=Exit, timeout=2) == Exit(a, "normal")
        assert partisan.is_alive(b)
        partisan.exit(b, "kill")
        # main is linked to nothing else; a kill from anyone never ends main
        c = await partisan.spawn(crash_on_message)
        partisan.link(c)
        partisan.send(c, 1)
        assert (await partisan.receive(match=Exit, timeout=2)).pid == c
        assert partisan.is_alive(partisan.self())


@async_test
async def test_exit_kill_is_untrappable_and_custom_reasons_are_trapped() -> None:
    async with nodes("a"):
        trapper = await partisan.spawn(Trapper)
        ref = partisan.monitor(trapper)
        partisan.exit(trapper, "kill")
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, trapper, "killed")
        # a normal exit signal from another actor is ignored by a non-trapping actor
        waiter = await partisan.spawn(wait_for_message)
        partisan.exit(waiter, "normal")
        partisan.exit(waiter, "custom")
        ref = partisan.monitor(waiter)
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, waiter, "custom")


@async_test
async def test_link_to_dead_pid_gives_noproc() -> None:
    async with nodes("a"):
        dead = await partisan.spawn(wait_for_message)
        ref = partisan.monitor(dead)
        partisan.send(dead, 1)
        await partisan.receive(match=Down, timeout=2)
        partisan.link(dead)
        assert await partisan.receive(match=Exit, timeout=2) == Exit(dead, "noproc")
        assert ref


@async_test
async def test_register_whereis_send_by_name_and_name_freed_on_exit() -> None:
    async with nodes("a") as [node]:
        pid = await partisan.spawn(echo, name="echo")
        assert partisan.whereis("echo") == pid
        with pytest.raises(ValueError, match="already registered"):
            await partisan.spawn(echo, name="echo")
        partisan.send("echo", (partisan.self(), "x"))
        partisan.send(("echo", "a"), (partisan.self(), "y"))
        assert [await partisan.receive(timeout=2) for _ in "xy"] == [("echo", "x"), ("echo", "y")]
        partisan.exit(pid, "kill")
        ref = partisan.monitor(pid)
        await partisan.receive(match=Down, timeout=2)
        assert partisan.whereis("echo") is None and ref
        partisan.register("me")
        assert partisan.whereis("me") == partisan.self()
        partisan.unregister("me")
        partisan.send("nobody", 1)
        assert node.statistics().drops["unknown_name"] == 1


@async_test
async def test_unknown_and_stale_pids_are_dropped_and_counted() -> None:
    async with nodes("a") as [node]:
        me = partisan.self()
        partisan.send(partisan.Pid("a", me.incarnation, 999), "x")
        partisan.send(partisan.Pid("a", me.incarnation - 1, me.id), "x")
        drops = node.statistics().drops
        assert drops["noproc"] == 1 and drops["stale_incarnation"] == 1
        assert not partisan.is_alive(partisan.Pid("a", me.incarnation - 1, 0))


@async_test
async def test_send_after_and_cancel_timer() -> None:
    async with nodes("a"):
        me = partisan.self()
        cancelled = partisan.send_after(0.05, me, "cancelled")
        partisan.send_after(0.1, me, "fired")
        assert partisan.cancel_timer(cancelled) is True
        assert partisan.cancel_timer(cancelled) is False
        assert await partisan.receive(timeout=2) == "fired"
        partisan.send(me, "marker")
        assert await drain_until("marker") == []


async def replier() -> None:
    call = await partisan.receive()
    partisan.reply(call.caller, ("got", call.request))
    await partisan.receive()


@async_test
async def test_call_plain_actor_self_unknown_and_dead_callee() -> None:
    async with nodes("a") as [node]:
        pid = await partisan.spawn(replier)
        assert await partisan.call(pid, 1) == ("got", 1)
        with pytest.raises(CallExit) as info:
            await partisan.call(partisan.self(), 1)
        assert info.value.reason == "calling_self"
        with pytest.raises(CallExit) as info:
            await partisan.call("nobody", 1)
        assert info.value.reason == "noproc"
        # the callee dies while the call is pending: CallExit at once, not at the timeout
        victim = await partisan.spawn(crash_on_message)
        task = asyncio.ensure_future(partisan.call(victim, "q", timeout=60))
        await asyncio.sleep(0)  # ok-sleep: let the call reach the victim's mailbox
        with pytest.raises(CallExit) as info:
            await asyncio.wait_for(task, 5)
        assert isinstance(info.value.reason, Crashed)
        assert node.statistics().runtime.monitors == 0  # type: ignore[union-attr]


async def slow_replier() -> None:
    call = await partisan.receive()
    await partisan.receive(match="release".__eq__)
    partisan.reply(call.caller, "late")
    await partisan.receive()


@async_test
async def test_late_reply_after_timeout_is_dropped_and_counted() -> None:
    async with nodes("a") as [node]:
        pid = await partisan.spawn(slow_replier)
        with pytest.raises(CallTimeout):
            await partisan.call(pid, "q", timeout=0.05)
        partisan.send(pid, "release")
        ref = partisan.monitor(pid)
        partisan.send(pid, "stop")
        await partisan.receive(match=Down, timeout=2)
        assert node.statistics().drops["late_reply"] == 1 and ref
        partisan.send(partisan.self(), "marker")
        assert await drain_until("marker") == []


@async_test
async def test_ten_thousand_actors_spawned_and_stopped_leave_no_tasks() -> None:
    async with nodes("a") as [node]:
        before = len(asyncio.all_tasks())
        pids = [await partisan.spawn(wait_for_message) for _ in range(10_000)]
        assert node.statistics().actors == 10_000
        last = partisan.monitor(pids[-1])
        for pid in pids:
            partisan.send(pid, "stop")
        await partisan.receive(match=lambda m: isinstance(m, Down) and m.ref == last, timeout=20)
        for _ in range(3):
            await asyncio.sleep(0)  # ok-sleep: let finished tasks be collected by the loop
        assert node.statistics().actors == 0
        assert len(asyncio.all_tasks()) == before
        assert len(node.runtime.processes) == 1  # type: ignore[union-attr]  # main only


@async_test
async def test_statistics_deepest_mailboxes_and_routing_counters() -> None:
    async with nodes("a") as [node]:
        pid = await partisan.spawn(wait_for_message)
        ref = partisan.monitor(pid)
        for i in range(5):
            partisan.send(partisan.self(), i)
        stats = node.statistics()
        assert stats.deepest_mailboxes[0] == (partisan.self(), 5)
        assert stats.routed_local == 5 and stats.actors == 1
        partisan.send(pid, "stop")
        assert (await partisan.receive(match=Down, timeout=2)).ref == ref


@async_test
async def test_shutdown_stops_actors_with_reason_shutdown() -> None:
    async with nodes("a") as [node]:
        pids = [await partisan.spawn(wait_for_message) for _ in range(3)]
    assert not node.running
    assert node.runtime is not None and not node.runtime.processes.get(pids[0].id)
    with pytest.raises(RuntimeError):
        partisan.self()

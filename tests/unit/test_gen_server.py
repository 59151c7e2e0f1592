"""GenServer: OTP semantics for init, call/cast/info, deferred replies, stop and crashes."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from _actor_support import async_test, nodes

import partisan
from partisan import Crashed, Down, Exit, GenServer, NoReply
from partisan.actors import gen_server
from partisan.errors import CallExit, CallTimeout


class Counter(GenServer):
    def init(self, start: int = 0, log: Any = None) -> None:
        self.count = start
        self.log = log
        self.pending: list[Any] = []

    def handle_call(self, request: Any, caller: partisan.From) -> Any:
        if request == "get":
            return self.count
        if request == "defer":
            self.pending.append(caller)
            return NoReply
        if request == "release":
            for waiting in self.pending:
                self.reply(waiting, ("released", self.count))
            return len(self.pending)
        if request == "boom":
            raise RuntimeError("boom in call")
        if request == "self":
            return self.call_self()
        if request == "stop":
            self.stop("asked")
            return "stopping"
        return None

    def call_self(self) -> Any:
        raise AssertionError("replaced in the async test")

    def handle_cast(self, request: Any) -> None:
        self.count += request

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, tuple) and msg[0] == "add":
            self.count += msg[1]

    def terminate(self, reason: Any) -> None:
        if self.log is not None:
            partisan.send(self.log, ("terminated", reason))


class AsyncServer(GenServer):
    async def init(self) -> None:
        self.order: list[Any] = []

    async def handle_call(self, request: Any, caller: partisan.From) -> Any:
        self.order.append(("start", request))
        await asyncio.sleep(0.01)  # ok-sleep: a slow callback; the next message must wait
        self.order.append(("end", request))
        if request == "self":
            return await partisan.call(partisan.self(), "x")
        return list(self.order)


class FailingInit(GenServer):
    def init(self) -> None:
        raise KeyError("no config")


@async_test
async def test_call_cast_info_and_deferred_reply() -> None:
    async with nodes("a"):
        pid = await Counter.start(10, name="counter")
        partisan.cast(pid, 5)
        partisan.send(pid, ("add", 2))
        assert await partisan.call("counter", "get") == 17
        waiters = [asyncio.ensure_future(partisan.call(pid, "defer")) for _ in range(2)]
        await asyncio.sleep(0)  # ok-sleep: let both calls be queued before the release
        assert await partisan.call(pid, "release") == 2
        assert await asyncio.gather(*waiters) == [("released", 17)] * 2


@async_test
async def test_async_callbacks_handle_one_message_at_a_time() -> None:
    async with nodes("a"):
        pid = await AsyncServer.start()
        first, second = await asyncio.gather(partisan.call(pid, 1), partisan.call(pid, 2))
        assert first == [("start", 1), ("end", 1)]
        assert second == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
        with pytest.raises(CallExit) as info:
            await partisan.call(pid, "self")
        # calling yourself fails at once inside the server; the exception crashes it
        assert isinstance(info.value.reason, Crashed)
        assert "calling_self" in info.value.reason.message


@async_test
async def test_init_exception_is_raised_to_the_starter_which_is_not_killed() -> None:
    async with nodes("a") as [node]:
        with pytest.raises(KeyError, match="no config"):
            await FailingInit.start_link()
        partisan.send(partisan.self(), "marker")
        assert await partisan.receive(timeout=2) == "marker"  # no Exit for the starter
        assert node.statistics().actors == 0


@async_test
async def test_crash_in_handle_call_fails_the_caller_and_calls_terminate() -> None:
    async with nodes("a"):
        pid = await Counter.start(0, partisan.self())
        ref = partisan.monitor(pid)
        with pytest.raises(CallExit) as info:
            await partisan.call(pid, "boom")
        assert (
            isinstance(info.value.reason, Crashed) and info.value.reason.message == "boom in call"
        )
        msg = await partisan.receive(match=tuple, timeout=2)
        assert msg[0] == "terminated" and isinstance(msg[1], Crashed)
        assert (await partisan.receive(match=Down, timeout=2)).ref == ref


@async_test
async def test_stop_from_inside_and_outside_runs_terminate() -> None:
    async with nodes("a"):
        pid = await Counter.start(0, partisan.self())
        ref = partisan.monitor(pid)
        assert await partisan.call(pid, "stop") == "stopping"
        assert await partisan.receive(match=tuple, timeout=2) == ("terminated", "asked")
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, pid, "asked")
        pid2 = await Counter.start(0, partisan.self())
        await gen_server.stop(pid2)
        assert not partisan.is_alive(pid2)
        assert await partisan.receive(match=tuple, timeout=2) == ("terminated", "normal")
        with pytest.raises(CallExit):
            await gen_server.stop(pid2)


class Trapping(GenServer):
    trap_exit = True

    def init(self, log: Any) -> None:
        self.log = log

    def handle_info(self, msg: Any) -> None:
        partisan.send(self.log, ("info", msg))

    def terminate(self, reason: Any) -> None:
        partisan.send(self.log, ("terminated", reason))


async def send_exit(pid: Any) -> None:
    partisan.exit(pid, "custom")


async def start_trapping_then_exit(log: Any) -> None:
    await Trapping.start_link(log)
    raise ValueError("parent dies")


@async_test
async def test_trapping_server_terminates_when_its_parent_exits() -> None:
    async with nodes("a"):
        await partisan.spawn(start_trapping_then_exit, partisan.self())
        msg = await partisan.receive(match=tuple, timeout=2)
        assert msg[0] == "terminated" and isinstance(msg[1], Crashed)
        # an Exit from a non-parent goes to handle_info
        pid = await Trapping.start(partisan.self())
        sender = await partisan.spawn(send_exit, pid)
        assert await partisan.receive(match=tuple, timeout=2) == ("info", Exit(sender, "custom"))


@async_test
async def test_untrappable_kill_skips_terminate_while_a_trapped_exit_runs_it() -> None:
    async with nodes("a"):
        # exit(pid, "kill") cannot be trapped: the server dies "killed" and, as in
        # OTP, terminate does not run (nothing is left to run it).
        pid = await Trapping.start(partisan.self())
        ref = partisan.monitor(pid)
        partisan.exit(pid, "kill")
        assert await partisan.receive(match=Down, timeout=2) == Down(ref, pid, "killed")
        partisan.send(partisan.self(), "marker")  # anything terminate sent arrives before it
        assert await partisan.receive(timeout=2) == "marker"
        # Any other exit signal is trapped; one from the parent runs terminate.
        await partisan.spawn(start_trapping_then_exit, partisan.self())
        msg = await partisan.receive(match=tuple, timeout=2)
        assert msg[0] == "terminated" and isinstance(msg[1], Crashed)


@async_test
async def test_call_timeout_and_defaults() -> None:
    async with nodes("a"):
        pid = await Counter.start()
        with pytest.raises(CallTimeout):
            await partisan.call(pid, "defer", timeout=0.05)
        assert inspect.signature(partisan.call).parameters["timeout"].default == 5.0
        assert inspect.signature(Counter.start).parameters["timeout"].default == 5.0

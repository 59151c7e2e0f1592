"""StateMachine: the code-lock example event by event (virtual clock), and as an actor."""

from __future__ import annotations

import asyncio
import enum
import functools
import heapq
import importlib.util
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from partisan.actors import api
from partisan.actors.gen_server import stop as stop_machine
from partisan.actors.process import set_default_runtime
from partisan.actors.runtime import Runtime
from partisan.actors.signals import Crashed, Down
from partisan.actors.state_machine import (
    CAST,
    ENTER,
    INFO,
    INTERNAL,
    Call,
    KeepState,
    NextEvent,
    NextState,
    Reply,
    SetStateTimeout,
    StateMachine,
    Stop,
)
from partisan.actors.state_machine_engine import Engine
from partisan.actors.state_machine_types import CancelTimer, StartTimer
from partisan.errors import CallExit
from partisan.testing.plugin import no_leaks  # noqa: F401  # fixture, used via pytestmark

pytestmark = pytest.mark.usefixtures("no_leaks")

DEADLINE = 5.0
_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "code_lock.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("code_lock_example", _EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CodeLock = _load_example().CodeLock


# ------------------------------------------- the example, on a virtual clock


class Harness:
    """Drive a StateMachine's callbacks through the engine with virtual time."""

    def __init__(self, machine: StateMachine, *init_args: Any) -> None:
        self.engine = Engine(machine.handle_event, state_enter=type(machine).state_enter)
        machine._engine = self.engine  # so `self.state` works inside callbacks
        self.now = 0.0
        self.due: list[tuple[float, int]] = []
        self.replies: list[Any] = []
        self.apply(self.engine.start(machine.init(*init_args)))

    def apply(self, effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, StartTimer):
                heapq.heappush(self.due, (self.now + e.after, e.token))
            elif isinstance(e, Reply):
                self.replies.append(e.value)
            else:
                assert isinstance(e, CancelTimer)

    def press(self, digits: str) -> None:
        for d in digits:
            self.apply(self.engine.handle(CAST, ("button", d)))

    def status(self) -> Any:
        self.apply(self.engine.handle(Call("tester"), "status"))
        return self.replies[-1]

    def advance(self, dt: float) -> None:
        until = self.now + dt
        while self.due and self.due[0][0] <= until:
            self.now, token = heapq.heappop(self.due)
            self.apply(self.engine.fire(token))  # stale tokens are ignored by the engine
        self.now = until


def test_code_lock_example_event_by_event() -> None:
    lock = CodeLock.__new__(CodeLock)
    h = Harness(lock, "123", 10.0, 5.0, 30.0)
    assert h.status() == ("locked", "", 0)

    h.press("12")
    assert h.status() == ("locked", "12", 0)
    h.advance(4.9)
    h.press("3")  # in time: the idle timeout was restarted by each button
    assert h.status() == ("open", "123", 1)

    h.press("45")  # postponed: not handled while open
    assert h.engine.postponed() == [(CAST, ("button", "4")), (CAST, ("button", "5"))]
    assert h.status() == ("open", "123", 1)  # a call is not postponed
    h.advance(9.99)
    assert h.status()[0] == "open"  # the state timeout (10 s) has not fired
    h.advance(0.01)
    # Locked again: enter cleared the buttons, then the postponed presses ran in order.
    assert h.status() == ("locked", "45", 1)
    h.advance(5.0)  # idle: the half-typed code is forgotten (status calls do not disturb it)
    assert h.status() == ("locked", "", 1)

    h.press("999999")
    assert h.status() == ("locked", "", 1) and lock.wrong == 2
    h.press("999")  # third wrong code
    assert h.status()[0] == "suspended"
    h.press("123")  # ignored while suspended
    h.advance(29.9)
    assert h.status()[0] == "suspended"
    h.advance(0.1)
    assert h.status() == ("locked", "", 1)
    h.press("123")
    assert h.status() == ("open", "123", 2)


def test_code_lock_explicit_lock_call_replies_and_cancels_the_state_timeout() -> None:
    lock = CodeLock.__new__(CodeLock)
    h = Harness(lock, "1", 10.0)
    h.press("1")
    h.apply(h.engine.handle(Call("c"), "lock"))
    assert h.replies[-1] == "locked" and h.engine.timers() == {}
    assert h.status()[0] == "locked"


# ------------------------------------------------------- on the actor runtime


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the test body in a local runtime whose main pseudo-actor is the caller."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            runtime = Runtime("t", 1, call_timeout=DEADLINE)
            set_default_runtime(runtime, True)
            try:
                await fn(*args, **kwargs)
            finally:
                await runtime.shutdown(DEADLINE)
                set_default_runtime(runtime, False)

        asyncio.run(main())

    return wrapper


async def wait_status(lock: Any, predicate: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        status = await api.call(lock, "status")
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status {status}")
        await asyncio.sleep(0.005)  # ok-sleep: polling interval of a deadline-bounded wait


@pytest.mark.timeout(10)
@run_async
async def test_code_lock_actor_postpones_and_times_out_with_real_timers() -> None:
    open_time = 0.1
    lock = await CodeLock.start("12", open_time, 5.0)
    t0 = time.monotonic()
    api.cast(lock, ("button", "1"))
    api.cast(lock, ("button", "2"))
    api.cast(lock, ("button", "7"))  # arrives while open: postponed
    assert await api.call(lock, "status") == ("open", "12", 1)
    status = await wait_status(lock, lambda s: s[0] == "locked", "the lock to close")
    assert time.monotonic() - t0 >= open_time
    assert status == ("locked", "7", 1)  # the postponed press was handled after locking
    await stop_machine(lock)
    assert not api.is_alive(lock)


class Phase(enum.Enum):
    IDLE = 1
    BUSY = 2


class Worker(StateMachine):
    """handle_event mode with Enum states; records terminate."""

    log: list[Any]

    def init(self, log: list[Any]) -> Any:
        self.log = log
        return NextState(Phase.IDLE, NextEvent(INTERNAL, "boot"))

    def handle_event(self, event: Any, content: Any, state: Any) -> Any:
        self.log.append((event, content, state))
        if isinstance(event, Call) and content == "work":
            self.pending = event.caller
            return NextState(Phase.BUSY, SetStateTimeout(0.01, "done"))
        if state is Phase.BUSY and event is not INFO and not isinstance(event, Call):
            self.reply(self.pending, "worked")  # deferred reply, outside a Reply action
            return NextState(Phase.IDLE)
        if isinstance(event, Call) and content == "quit":
            return Stop("finished", (Reply(event.caller, "bye"),))
        if isinstance(event, Call) and content == "boom":
            raise ValueError("boom")
        if isinstance(event, Call):
            return KeepState(Reply(event.caller, state))
        return None

    def terminate(self, reason: Any, state: Any) -> None:
        self.log.append(("terminate", reason, state))


@pytest.mark.timeout(10)
@run_async
async def test_handle_event_mode_info_deferred_reply_and_stop() -> None:
    log: list[Any] = []
    pid = await Worker.start(log)
    assert log[0] == (INTERNAL, "boot", Phase.IDLE)  # init's NextEvent ran before anything
    api.send(pid, "hello")
    assert await api.call(pid, "state?") is Phase.IDLE
    assert (INFO, "hello", Phase.IDLE) in log
    assert await api.call(pid, "work") == "worked"
    ref = api.monitor(pid)
    assert await api.call(pid, "quit") == "bye"
    down = await api.receive(Down, timeout=DEADLINE)
    assert down.ref == ref and down.reason == "finished"
    assert log[-1] == ("terminate", "finished", Phase.IDLE)


@pytest.mark.timeout(10)
@run_async
async def test_a_crashing_callback_fails_the_call_and_runs_terminate() -> None:
    log: list[Any] = []
    pid = await Worker.start(log)
    with pytest.raises(CallExit) as info:
        await api.call(pid, "boom")
    assert isinstance(info.value.reason, Crashed) and "boom" in info.value.reason.message
    assert log[-1][0] == "terminate" and isinstance(log[-1][1], Crashed)


@pytest.mark.timeout(10)
@run_async
async def test_an_untrappable_kill_skips_terminate_of_a_trapping_machine() -> None:
    log: list[Any] = []
    pid = await Trapper.start(log)
    ref = api.monitor(pid)
    api.exit(pid, "kill")
    down = await api.receive(Down, timeout=DEADLINE)
    assert down.ref == ref and down.reason == "killed"
    assert not [entry for entry in log if entry[0] == "terminate"]
    # A trapped exit from its parent (the starter) stops it with terminate.
    pid = await Trapper.start(log)
    ref = api.monitor(pid)
    api.exit(pid, "custom")
    down = await api.receive(Down, timeout=DEADLINE)
    assert down.ref == ref and down.reason == "custom"
    assert log[-1] == ("terminate", "custom", Phase.IDLE)


class Trapper(Worker):
    trap_exit = True


class BadInit(StateMachine):
    def init(self) -> Any:
        raise RuntimeError("no config")


class NoSuchState(StateMachine):
    state_enter = True

    def init(self) -> Any:
        return "missing"


class AsyncEnter(StateMachine):
    state_enter = True

    async def init(self) -> Any:
        await asyncio.sleep(0)  # ok-sleep: proves an async init is awaited
        return "ready"

    async def ready(self, event: Any, content: Any) -> Any:
        if event is ENTER:
            await asyncio.sleep(0)  # ok-sleep: proves async callbacks are awaited
            self.entered = True
            return None
        if isinstance(event, Call):
            return KeepState(Reply(event.caller, self.entered))
        return None


@pytest.mark.timeout(10)
@run_async
async def test_init_errors_reach_the_starter_and_async_callbacks_work() -> None:
    with pytest.raises(RuntimeError, match="no config"):
        await BadInit.start()
    with pytest.raises(Exception, match="no method for state 'missing'"):
        await NoSuchState.start()
    pid = await AsyncEnter.start()
    assert await api.call(pid, "entered?") is True

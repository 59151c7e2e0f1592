"""OTP Supervisor on a local actor runtime (no sockets): strategies, restart types, intensity,
escalation, shutdown, and the child-management API. Start and stop order is observed through a
log the workers write in ``init`` and ``terminate``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from partisan.actors import api
from partisan.actors.gen_server import GenServer
from partisan.actors.gen_server import stop as stop_server
from partisan.actors.process import set_default_runtime
from partisan.actors.runtime import Runtime
from partisan.actors.signals import Crashed, Exit
from partisan.errors import ReceiveTimeout
from partisan.identity import Pid
from partisan.supervision import api as sup
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.errors import StartChildError, SupervisorError
from partisan.supervision.policy import (
    BRUTAL_KILL,
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    REST_FOR_ONE,
    SIMPLE_ONE_FOR_ONE,
    SUPERVISOR,
    TEMPORARY,
    TRANSIENT,
    WORKER,
)
from partisan.supervision.supervisor import Supervisor
from partisan.testing.plugin import no_leaks  # noqa: F401  # fixture, used via pytestmark

pytestmark = pytest.mark.usefixtures("no_leaks")

DEADLINE = 5.0  # generous: every wait here is for in-process work


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the test body inside a fresh local runtime (its main pseudo-actor traps exits)."""

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


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)  # ok-sleep: polling interval of a deadline-bounded wait


class Worker(GenServer):
    """Logs ('start', name) in init and ('stop', name) / ('crash', name) in terminate."""

    trap_exit = True  # so terminate runs when the supervisor shuts it down

    def init(self, name: str, log: list[tuple[str, str]], *extra: Any) -> None:
        self.name = name
        self.log = log
        self.extra = extra
        log.append(("start", name))

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "extra":
            return self.extra
        return self.name

    def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise RuntimeError(f"{self.name} crashed on purpose")
        if request == "quit":
            self.stop("normal")

    def terminate(self, reason: Any) -> None:
        self.log.append(("crash" if isinstance(reason, Crashed) else "stop", self.name))


def worker(name: str, log: list[tuple[str, str]], **kw: Any) -> ChildSpec:
    return ChildSpec(name, Worker, (name, log), **kw)


async def pid_of(supervisor: Pid, child_id: str) -> Pid:
    for info in await sup.which_children(supervisor):
        if info.id == child_id and info.pid is not None:
            return info.pid
    raise AssertionError(f"{child_id} is not running")


async def crash(supervisor: Pid, child_id: str) -> None:
    api.cast(await pid_of(supervisor, child_id), "crash")


# ------------------------------------------------------------------ strategies


@pytest.mark.timeout(10)
@run_async
async def test_children_start_in_order_and_stop_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(SupervisorSpec([worker(n, log) for n in "abc"]))
    assert log == [("start", "a"), ("start", "b"), ("start", "c")]
    await stop_server(pid, "shutdown")
    assert log[3:] == [("stop", "c"), ("stop", "b"), ("stop", "a")]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (ONE_FOR_ONE, [("crash", "b"), ("start", "b")]),
        (
            ONE_FOR_ALL,
            [
                ("crash", "b"),
                ("stop", "c"),
                ("stop", "a"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
            ],
        ),
        (REST_FOR_ONE, [("crash", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]),
    ],
)
@run_async
async def test_each_strategy_restarts_exactly_the_right_children_in_order(
    strategy: Any, expected: list[tuple[str, str]]
) -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec([worker(n, log) for n in "abc"], strategy=strategy)
    )
    before = {n: await pid_of(pid, n) for n in "abc"}
    del log[:]
    await crash(pid, "b")
    await wait_until(lambda: len(log) >= len(expected), f"{strategy} restart")
    after = {n: await pid_of(pid, n) for n in "abc"}
    # The restart happened while handling one Exit: once the supervisor answered
    # which_children, nothing more is coming.
    assert log == expected
    restarted = {n for n in "abc" if after[n] != before[n]}
    assert restarted == {n for kind, n in expected if kind == "start"}
    assert (await sup.count_children(pid))["active"] == 3


@pytest.mark.timeout(10)
@run_async
async def test_simple_one_for_one_starts_with_extra_args_and_restarts_them() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec([ChildSpec("tmpl", Worker, ("w", log))], strategy=SIMPLE_ONE_FOR_ONE)
    )
    assert await sup.which_children(pid) == []
    c1 = await sup.start_child(pid, (1,))
    c2 = await sup.start_child(pid, (2,))
    assert await api.call(c2, "extra") == (2,)
    api.cast(c1, "crash")
    await wait_until(lambda: log.count(("start", "w")) == 3, "restart of c1")
    children = await sup.which_children(pid)
    assert len(children) == 2 and c2 in [c.pid for c in children]
    new_c1 = next(c.pid for c in children if c.pid != c2)
    assert new_c1 is not None and await api.call(new_c1, "extra") == (1,)  # same args
    await sup.terminate_child(pid, c2)
    assert [c.pid for c in await sup.which_children(pid)] == [new_c1]
    assert (await sup.count_children(pid))["specs"] == 1


# -------------------------------------------------------------- restart types


@pytest.mark.timeout(10)
@run_async
async def test_transient_restarts_only_after_abnormal_exit_temporary_never() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec(
            [
                worker("t1", log, restart=TRANSIENT),
                worker("t2", log, restart=TRANSIENT),
                worker("tmp", log, restart=TEMPORARY),
            ],
            intensity=5,
        )
    )
    api.cast(await pid_of(pid, "t1"), "quit")  # normal exit: stays down
    await crash(pid, "t2")  # abnormal: restarted
    await crash(pid, "tmp")  # temporary: never restarted, and forgotten
    await wait_until(lambda: log.count(("start", "t2")) == 2, "t2 restarted")
    await wait_until(lambda: ("crash", "tmp") in log and ("stop", "t1") in log, "exits seen")
    infos = {c.id: c for c in await sup.which_children(pid)}
    assert set(infos) == {"t1", "t2"}
    assert infos["t1"].pid is None and infos["t2"].pid is not None
    assert log.count(("start", "t1")) == 1 and log.count(("start", "tmp")) == 1
    assert await sup.count_children(pid) == {
        "specs": 2,
        "active": 1,
        "supervisors": 0,
        "workers": 2,
    }


# ------------------------------------------------------- intensity, escalation


async def exits_of(pid: Pid, timeout: float) -> list[Exit]:
    """Exit messages from `pid` in the main pseudo-actor's mailbox (waits for the first)."""
    first = await api.receive(lambda m: isinstance(m, Exit) and m.pid == pid, timeout=timeout)
    more = []
    with pytest.raises(ReceiveTimeout):  # nothing else queued
        while True:
            more.append(
                await api.receive(lambda m: isinstance(m, Exit) and m.pid == pid, timeout=0)
            )
    return [first, *more]


@pytest.mark.timeout(10)
@run_async
async def test_crash_loop_beyond_intensity_escalates_exactly_once() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec([worker("a", log), worker("b", log)], intensity=2, period=60)
    )
    for expected_starts in (2, 3):
        await crash(pid, "b")
        await wait_until(lambda n=expected_starts: log.count(("start", "b")) == n, "restart")
    await crash(pid, "b")  # third crash within the period: more than 2 restarts
    exits = await exits_of(pid, DEADLINE)
    assert [e.reason for e in exits] == ["shutdown"]
    assert log[-2:] == [("crash", "b"), ("stop", "a")]  # the sibling stopped in reverse order
    assert not api.is_alive(pid)


class Mid(Supervisor):
    """A middle supervisor: one crash-looping worker, intensity 1 in 60 s."""

    intensity = 1
    period = 60.0

    def init(self, log: list[tuple[str, str]]) -> list[ChildSpec]:  # type: ignore[override]
        log.append(("start", "mid"))
        return [worker("leaf", log)]


@pytest.mark.timeout(10)
@run_async
async def test_nested_trees_escalate_level_by_level() -> None:
    log: list[tuple[str, str]] = []
    root = await Supervisor.start_link(
        SupervisorSpec(
            [ChildSpec("mid", Mid, (log,)), worker("sibling", log)], intensity=1, period=60
        )
    )
    mid_spec = (await sup.which_children(root))[0]
    assert mid_spec.type is SUPERVISOR
    for round_ in (1, 2):
        mid = await pid_of(root, "mid")
        await crash(mid, "leaf")  # mid restarts it (1 restart: within intensity 1)
        await wait_until(lambda r=round_: log.count(("start", "leaf")) == 2 * r, "leaf restart")
        await crash(mid, "leaf")  # second within the period: mid gives up
        if round_ == 1:  # root restarts mid once (its 1st restart): a fresh mid and leaf
            await wait_until(lambda: log.count(("start", "mid")) == 2, "mid restarted by root")
            assert await pid_of(root, "mid") != mid
            assert api.is_alive(await pid_of(root, "sibling"))
    # mid gave up twice: the root's intensity (1) is exceeded, so the root escalates once.
    exits = await exits_of(root, DEADLINE)
    assert [e.reason for e in exits] == ["shutdown"]
    assert log.count(("start", "mid")) == 2 and log.count(("start", "sibling")) == 1
    assert log[-1] == ("stop", "sibling")


# ---------------------------------------------------------------- shutdown


async def stubborn(log: list[tuple[str, str]]) -> None:
    """Traps exits and ignores the supervisor's shutdown signal."""
    api.trap_exit(True)
    log.append(("start", "stubborn"))
    while True:
        msg = await api.receive()
        log.append(("ignored", repr(msg)))


@pytest.mark.timeout(10)
@run_async
async def test_child_that_ignores_shutdown_is_killed_after_its_shutdown_time() -> None:
    log: list[tuple[str, str]] = []
    grace = 0.2
    pid = await Supervisor.start_link(
        SupervisorSpec([ChildSpec("s", stubborn, (log,), shutdown=grace)])
    )
    child = await pid_of(pid, "s")
    with pytest.raises(SupervisorError, match="running"):
        await sup.delete_child(pid, "s")
    ref = api.monitor(child)
    t0 = time.monotonic()
    await sup.terminate_child(pid, "s")
    took = time.monotonic() - t0
    down = await api.receive(lambda m: getattr(m, "ref", None) == ref, timeout=DEADLINE)
    assert down.reason == "killed"
    assert took >= grace
    assert any(kind == "ignored" and "shutdown" in text for kind, text in log)
    # Its spec stays: restart_child brings it back; delete_child then forgets it.
    assert (await sup.which_children(pid))[0].pid is None
    await sup.restart_child(pid, "s")
    await sup.terminate_child(pid, "s")
    await sup.delete_child(pid, "s")
    assert await sup.which_children(pid) == []


@pytest.mark.timeout(10)
@run_async
async def test_brutal_kill_is_immediate() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec([ChildSpec("s", stubborn, (log,), shutdown=BRUTAL_KILL)])
    )
    s = await pid_of(pid, "s")
    ref = api.monitor(s)
    await sup.terminate_child(pid, "s")
    down = await api.receive(lambda m: getattr(m, "ref", None) == ref, timeout=DEADLINE)
    assert down.reason == "killed"
    assert not any(kind == "ignored" for kind, _ in log)  # it never saw a shutdown signal
    # A GenServer that traps exits is killed as brutally: its terminate does not run (OTP).
    trapping: list[tuple[str, str]] = []
    pid = await Supervisor.start_link(
        SupervisorSpec([worker("w", trapping, shutdown=BRUTAL_KILL), worker("v", trapping)])
    )
    w = await pid_of(pid, "w")
    ref = api.monitor(w)
    await sup.terminate_child(pid, "w")
    down = await api.receive(lambda m: getattr(m, "ref", None) == ref, timeout=DEADLINE)
    assert down.reason == "killed"
    await sup.terminate_child(pid, "v")  # a timed shutdown: terminate runs
    assert trapping == [("start", "w"), ("start", "v"), ("stop", "v")]


# ------------------------------------------------------------ API and errors


@pytest.mark.timeout(10)
@run_async
async def test_start_child_and_errors_at_the_call_site() -> None:
    log: list[tuple[str, str]] = []
    pid = await Supervisor.start_link([worker("a", log)])
    new = await sup.start_child(pid, worker("b", log))
    assert await api.call(new, "name") == "b"
    assert [c.id for c in await sup.which_children(pid)] == ["a", "b"]
    assert (await sup.which_children(pid))[1].type is WORKER
    with pytest.raises(SupervisorError, match="already exists"):
        await sup.start_child(pid, worker("b", log))
    with pytest.raises(SupervisorError, match="no child"):
        await sup.terminate_child(pid, "zzz")
    with pytest.raises(SupervisorError, match="running"):
        await sup.restart_child(pid, "a")

    class Broken(GenServer):
        def init(self) -> None:
            raise ValueError("bad config")

    with pytest.raises(StartChildError, match="bad config"):
        await sup.start_child(pid, ChildSpec("x", Broken))
    assert [c.id for c in await sup.which_children(pid)] == ["a", "b"]


@pytest.mark.timeout(10)
@run_async
async def test_a_child_failing_at_start_up_stops_the_others_and_fails_the_start() -> None:
    log: list[tuple[str, str]] = []

    class Broken(GenServer):
        def init(self) -> None:
            raise ValueError("cannot start")

    with pytest.raises(Exception, match="cannot start"):
        await Supervisor.start_link(
            SupervisorSpec([worker("a", log), ChildSpec("x", Broken), worker("c", log)])
        )
    assert log == [("start", "a"), ("stop", "a")]


def test_bad_specs_are_refused_at_the_call_site() -> None:
    with pytest.raises(TypeError, match="not an `async def`"):
        ChildSpec("x", lambda: None)
    with pytest.raises(ValueError, match="restart"):
        ChildSpec("x", Worker, restart="always")
    with pytest.raises(ValueError, match="shutdown"):
        ChildSpec("x", Worker, shutdown=-1)
    with pytest.raises(ValueError, match="duplicate"):
        SupervisorSpec([ChildSpec("x", Worker), ChildSpec("x", Worker)])
    with pytest.raises(ValueError, match="exactly one"):
        SupervisorSpec([], strategy=SIMPLE_ONE_FOR_ONE)
    with pytest.raises(ValueError, match="intensity"):
        SupervisorSpec([], intensity=-1)
    assert ChildSpec("x", Worker).shutdown == 5.0
    assert ChildSpec("x", Mid).shutdown is not None and ChildSpec("x", Mid).type is SUPERVISOR

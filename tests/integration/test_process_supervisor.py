"""The node-process supervisor against real OS processes (the stand-in node program).

Children are `partisan.supervision.stand_in` processes: they bind a real TCP
port, print the JSON ready line and run until SIGTERM or stdin EOF, exactly
the protocol of ``partisan node start``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path

import psutil
import pytest

from partisan.supervision.errors import StartChildError, SupervisorError
from partisan.supervision.policy import BRUTAL_KILL, TEMPORARY, TRANSIENT
from partisan.supervision.process_spec import (
    ProcessEvent,
    ProcessExited,
    ProcessSpec,
    ProcessStarted,
    ProcessState,
)
from partisan.supervision.processes import ProcessSupervisor
from partisan.testing.plugin import no_leaks  # noqa: F401  # fixture, used via pytestmark

pytestmark = pytest.mark.usefixtures("no_leaks")

STAND_IN = [sys.executable, "-m", "partisan.supervision.stand_in"]
#: Must show: a kill -9'd node is back within 2 s.
RESTART_DEADLINE = 2.0


def run_async(fn: Callable[..., Coroutine[object, object, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def spec(name: str, *extra: str, **kw: object) -> ProcessSpec:
    return ProcessSpec(name, [*STAND_IN, name, "--port", "{port}", *extra], **kw)  # type: ignore[arg-type]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)  # ok-sleep: polling interval of a deadline-bounded wait


def gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and _not_zombie(p) for p in pids)


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Recorder:
    """Collect supervisor events in order."""

    def __init__(self, sup: ProcessSupervisor) -> None:
        self.events: list[ProcessEvent] = []
        sup.subscribe(self.events.append)

    def of(self, kind: type) -> list[ProcessEvent]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def no_orphans() -> Iterator[list[int]]:
    """Collect every child os pid a test saw; fail if one is still alive afterwards."""
    pids: list[int] = []
    yield pids
    deadline = time.monotonic() + 5
    while not gone(pids) and time.monotonic() < deadline:
        time.sleep(0.02)  # ok-sleep: teardown polling, bounded by the deadline
    leaked = [p for p in pids if psutil.pid_exists(p) and _not_zombie(p)]
    for p in leaked:
        os.kill(p, signal.SIGKILL)
    assert not leaked, f"child processes leaked: {leaked}"


def _port_is_listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(30)
@run_async
async def test_children_start_in_order_and_stop_in_reverse(no_orphans: list[int]) -> None:
    sup = ProcessSupervisor([spec("n1"), spec("n2"), spec("n3")])
    rec = Recorder(sup)
    async with sup:
        infos = sup.which_children()
        assert [i.id for i in infos] == ["n1", "n2", "n3"]
        assert all(i.state is ProcessState.RUNNING for i in infos)
        no_orphans.extend(i.os_pid for i in infos if i.os_pid)
        for info in infos:
            assert info.port > 0 and info.address == f"127.0.0.1:{info.port}"
            assert _port_is_listening(info.port)
        assert [e.id for e in rec.of(ProcessStarted)] == ["n1", "n2", "n3"]
        assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 0, "workers": 3}
    exits = rec.of(ProcessExited)
    assert [e.id for e in exits] == ["n3", "n2", "n1"]
    assert all(e.expected and e.reason == "normal" for e in exits)  # SIGTERM -> exit 0
    assert gone(no_orphans)
    assert sup.statistics().stopped_reason == "shutdown"


@pytest.mark.timeout(30)
@run_async
async def test_kill_9_restarts_new_incarnation_on_old_port(no_orphans: list[int]) -> None:
    sup = ProcessSupervisor([spec("n1"), spec("n2")], intensity=3, period=10)
    rec = Recorder(sup)
    async with sup:
        before = {i.id: i for i in sup.which_children()}
        no_orphans.extend(i.os_pid for i in before.values() if i.os_pid)
        old = before["n2"]
        assert old.os_pid is not None
        killed_at = time.monotonic()
        os.kill(old.os_pid, signal.SIGKILL)
        await wait_until(lambda: len(rec.of(ProcessStarted)) == 3, RESTART_DEADLINE, "n2 restarted")
        elapsed = time.monotonic() - killed_at
        new = {i.id: i for i in sup.which_children()}["n2"]
        no_orphans.append(new.os_pid or 0)
        assert elapsed < RESTART_DEADLINE
        assert new.os_pid != old.os_pid and new.state is ProcessState.RUNNING
        assert new.port == old.port and new.address == old.address
        assert new.incarnation is not None and old.incarnation is not None
        assert new.incarnation > old.incarnation
        assert new.restarts == 1
        crash = rec.of(ProcessExited)[0]
        assert isinstance(crash, ProcessExited)
        assert (crash.id, crash.reason, crash.expected, crash.will_restart) == (
            "n2",
            "killed by SIGKILL",
            False,
            True,
        )
        # The sibling was untouched (one_for_one).
        assert new.id == "n2" and sup.which_children()[0].os_pid == before["n1"].os_pid
        assert sup.statistics().restarts == 1


@pytest.mark.timeout(60)
@run_async
async def test_real_node_kill_9_is_restarted_within_2_s_on_its_old_port(
    no_orphans: list[int],
) -> None:
    node = ProcessSpec(
        "n1",
        [sys.executable, "-m", "partisan", "node", "start", "n1", "--insecure", "--port", "{port}"],
        ready_timeout=20,
    )
    sup = ProcessSupervisor([node], intensity=1, period=30)
    rec = Recorder(sup)
    async with sup:
        old = sup.which_children()[0]
        assert old.os_pid is not None and old.incarnation is not None
        no_orphans.append(old.os_pid)
        killed_at = time.monotonic()
        os.kill(old.os_pid, signal.SIGKILL)
        await wait_until(lambda: len(rec.of(ProcessStarted)) == 2, RESTART_DEADLINE, "restart")
        assert time.monotonic() - killed_at < RESTART_DEADLINE
        new = sup.which_children()[0]
        no_orphans.append(new.os_pid or 0)
        assert new.address == old.address and new.os_pid != old.os_pid
        assert new.incarnation is not None and new.incarnation > old.incarnation
        assert _port_is_listening(new.port)


@pytest.mark.timeout(30)
@run_async
async def test_gives_up_after_intensity_and_stops_everyone(no_orphans: list[int]) -> None:
    sup = ProcessSupervisor([spec("n1"), spec("n2")], intensity=1, period=30)
    rec = Recorder(sup)
    await sup.start()
    try:
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
        sup.kill_child("n1")  # 1st crash: within intensity 1 -> restarted
        await wait_until(lambda: len(rec.of(ProcessStarted)) == 3, RESTART_DEADLINE, "restart")
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
        sup.kill_child("n1")  # 2nd crash within the period -> too many: give up
        reason = await asyncio.wait_for(sup.wait(), 10)
    finally:
        await sup.stop()
    assert reason.startswith("shutdown") and "n1" in reason
    assert len(rec.of(ProcessStarted)) == 3  # no third start of n1
    exits = rec.of(ProcessExited)
    assert [(e.id, e.will_restart) for e in exits[:2]] == [("n1", True), ("n1", False)]
    assert [e.id for e in exits[2:]] == ["n2"]  # the sibling was stopped by the supervisor
    assert gone(no_orphans)
    with pytest.raises(SupervisorError):
        await sup.start_child(spec("n3"))


@pytest.mark.timeout(30)
@run_async
async def test_per_child_limits_leave_only_that_child_down(no_orphans: list[int]) -> None:
    """escalate=False: killing every child at once restarts each; a child past its own limit stays down."""
    sup = ProcessSupervisor(
        [spec("n1"), spec("n2"), spec("n3")], intensity=1, period=30, escalate=False
    )
    rec = Recorder(sup)
    await sup.start()
    try:
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
        for name in ("n1", "n2", "n3"):  # three crashes at once: a shared 1-in-30 s would give up
            sup.kill_child(name)
        await wait_until(lambda: len(rec.of(ProcessStarted)) == 6, 3 * RESTART_DEADLINE, "restarts")
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
        sup.kill_child("n2")  # n2's second crash within its period: only n2 stays down
        await wait_until(
            lambda: sup.which_children()[1].state is ProcessState.TERMINATED, 10, "n2 left down"
        )
        states = {i.id: i.state for i in sup.which_children()}
        assert not sup.stopped
        assert states == {
            "n1": ProcessState.RUNNING,
            "n2": ProcessState.TERMINATED,
            "n3": ProcessState.RUNNING,
        }
        assert "left down" in (sup.which_children()[1].last_exit or "")
        await sup.restart_child("n2")  # an operator's restart is not a crash
        assert sup.which_children()[1].state is ProcessState.RUNNING
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
    finally:
        await sup.stop()
    assert gone(no_orphans)


@pytest.mark.timeout(30)
@run_async
async def test_transient_and_temporary_rules(no_orphans: list[int]) -> None:
    sup = ProcessSupervisor(intensity=5, period=10)
    rec = Recorder(sup)
    async with sup:
        # transient + normal exit: not restarted, spec kept as terminated
        await sup.start_child(
            spec("ok", "--exit-after", "0.05", "--exit-code", "0", restart=TRANSIENT)
        )
        # transient + abnormal exit (killed): restarted; temporary: never, and forgotten
        crashy = await sup.start_child(spec("crashy", restart=TRANSIENT))
        temp = await sup.start_child(spec("temp", restart=TEMPORARY))
        no_orphans.extend(p for p in (crashy.os_pid, temp.os_pid) if p)
        sup.kill_child("crashy")
        sup.kill_child("temp")
        await wait_until(
            lambda: (
                {i.id: i.state for i in sup.which_children()}
                == {"ok": ProcessState.TERMINATED, "crashy": ProcessState.RUNNING}
            ),
            RESTART_DEADLINE + 1,
            "ok terminated, crashy restarted, temp forgotten",
        )
        await wait_until(
            lambda: any(e.id == "crashy" for e in rec.of(ProcessStarted)[3:]),
            RESTART_DEADLINE,
            "crashy restarted",
        )
        by_id = {i.id: i for i in sup.which_children()}
        no_orphans.append(by_id["crashy"].os_pid or 0)
        assert by_id["ok"].last_exit == "normal" and by_id["ok"].restarts == 0
        assert by_id["crashy"].restarts == 1
        # A terminated child comes back with restart_child and can then be deleted.
        with pytest.raises(SupervisorError):
            await sup.delete_child("crashy")  # still running
        await sup.terminate_child("crashy")
        await sup.delete_child("crashy")
        assert [i.id for i in sup.which_children()] == ["ok"]


@pytest.mark.timeout(30)
@run_async
async def test_shutdown_timeout_then_kill_and_brutal_kill(no_orphans: list[int]) -> None:
    grace = 0.3
    sup = ProcessSupervisor(
        [
            spec("stubborn", "--ignore-term", shutdown=grace),
            spec("brutal", shutdown=BRUTAL_KILL),
        ]
    )
    rec = Recorder(sup)
    async with sup:
        no_orphans.extend(i.os_pid for i in sup.which_children() if i.os_pid)
        t0 = time.monotonic()
        await sup.terminate_child("brutal")
        brutal_took = time.monotonic() - t0
        t0 = time.monotonic()
        await sup.terminate_child("stubborn")
        stubborn_took = time.monotonic() - t0
    exits = {e.id: e for e in rec.of(ProcessExited) if isinstance(e, ProcessExited)}
    # BRUTAL_KILL: SIGKILL without a SIGTERM first (a SIGTERM would have given exit 0).
    assert exits["brutal"].reason == "killed by SIGKILL"
    # The stubborn child ignored SIGTERM, got its grace period, then SIGKILL.
    assert exits["stubborn"].reason == "killed by SIGKILL"
    assert stubborn_took >= grace
    assert brutal_took < grace  # not given any grace period
    assert gone(no_orphans)


@pytest.mark.timeout(30)
@run_async
async def test_start_failures_are_reported_with_the_childs_output(no_orphans: list[int]) -> None:
    async with ProcessSupervisor() as sup:
        crash = ProcessSpec(
            "bad", [sys.executable, "-c", "import sys; sys.exit('boom: no config')"]
        )
        with pytest.raises(StartChildError, match="boom: no config"):
            await sup.start_child(crash)
        silent = ProcessSpec(
            "silent", [sys.executable, "-c", "import sys; sys.stdin.read()"], ready_timeout=0.5
        )
        with pytest.raises(StartChildError, match=r"no ready line within 0\.5 s"):
            await sup.start_child(silent)
        with pytest.raises(StartChildError, match="cannot run"):
            await sup.start_child(ProcessSpec("nope", ["/nonexistent/partisan-node"]))
        assert sup.which_children() == []  # failed specs are not kept
        ok = await sup.start_child(spec("n1"))
        no_orphans.append(ok.os_pid or 0)
        with pytest.raises(SupervisorError, match="already exists"):
            await sup.start_child(spec("n1"))


def test_bad_specs_are_refused_at_the_call_site() -> None:
    with pytest.raises(ValueError, match="argv"):
        ProcessSpec("x", "python -m thing")
    with pytest.raises(ValueError, match="shutdown"):
        ProcessSpec("x", ["true"], shutdown=-1)
    with pytest.raises(ValueError, match="restart"):
        ProcessSpec("x", ["true"], restart="always")  # type: ignore[arg-type]


_SUPERVISOR_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from partisan.supervision.processes import ProcessSupervisor
    from partisan.supervision.process_spec import ProcessSpec

    async def main():
        # Real nodes, as `partisan cluster up` runs them.
        argv = [sys.executable, "-m", "partisan", "node", "start", "--insecure"]
        specs = [ProcessSpec(n, [*argv, n], ready_timeout=30) for n in ("n1", "n2", "n3")]
        async with ProcessSupervisor(specs, start_concurrency=3) as sup:
            print(json.dumps([c.os_pid for c in sup.which_children()]), flush=True)
            await sup.wait()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_no_orphans_after_the_supervisor_dies(
    tmp_path: Path, how: str, no_orphans: list[int]
) -> None:
    import json

    script = tmp_path / "sup.py"
    script.write_text(_SUPERVISOR_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        pids = json.loads(proc.stdout.readline())
        no_orphans.extend(pids)
        assert len(pids) == 3 and not gone(pids)
        # The children are in their own process groups: a terminal's Ctrl-C reaches only us.
        assert all(os.getpgid(p) == p for p in pids)
        proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not gone(pids) and time.monotonic() < deadline:
            time.sleep(0.02)  # ok-sleep: polling interval of a deadline-bounded wait
        assert gone(pids), f"orphans after {how}: {[p for p in pids if psutil.pid_exists(p)]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.timeout(30)
@run_async
async def test_concurrent_start_keeps_spec_order_and_fails_as_a_whole(
    no_orphans: list[int],
) -> None:
    sup = ProcessSupervisor([spec(f"n{i}") for i in range(4)], start_concurrency=4)
    rec = Recorder(sup)
    async with sup:
        infos = sup.which_children()
        no_orphans.extend(i.os_pid for i in infos if i.os_pid)
        assert [i.id for i in infos] == ["n0", "n1", "n2", "n3"]
        assert all(i.state is ProcessState.RUNNING for i in infos)
    assert [e.id for e in rec.of(ProcessExited)] == ["n3", "n2", "n1", "n0"]

    bad = ProcessSpec("bad", [sys.executable, "-c", "raise SystemExit('no such config')"])
    sup = ProcessSupervisor([spec("ok1"), bad, spec("ok2")], start_concurrency=3)
    rec = Recorder(sup)
    with pytest.raises(StartChildError, match="no such config"):
        await sup.start()
    started = [e for e in rec.of(ProcessStarted) if isinstance(e, ProcessStarted)]
    no_orphans.extend(e.os_pid for e in started)
    assert sup.stopped and gone(no_orphans)

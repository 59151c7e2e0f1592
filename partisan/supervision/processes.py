"""Supervise node OS processes with OTP's vocabulary (a one_for_one supervisor of processes).

Theory of operation (docs/supervision.md, "Node-process supervisor", says more)
-------------------------------------------------------------------------------
Each child is an OS process started from a `ProcessSpec` (spawned and watched
by `partisan.supervision.os_process`). It prints ONE JSON ready line on stdout
once it serves (its ``address`` gives its port) and runs until SIGTERM or
until its stdin reaches EOF. We hold the write end of that pipe for the
child's whole life, so when this supervisor dies (even ``kill -9``) every
child exits: nothing is orphaned.

An unexpected exit is seen at once (pidfd) and, per the child's restart type,
the child restarts as a new incarnation on the port it reported (``{port}``,
or `command_for`, which may rebuild the argv). Restarts count against OTP's
intensity (default 1 in 5 s); past it the supervisor stops every child, as an
OTP supervisor escalates — or, with ``escalate=False`` (peers such as a local
cluster's nodes), only that child stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from partisan.supervision.errors import StartChildError, SupervisorError
from partisan.supervision.os_process import OsProcess
from partisan.supervision.policy import (
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD,
    TEMPORARY,
    RestartIntensity,
    Shutdown,
    should_restart,
)
from partisan.supervision.process_child import ChildRecord
from partisan.supervision.process_spec import (
    ProcessEvent,
    ProcessExited,
    ProcessInfo,
    ProcessSpec,
    ProcessStarted,
    ProcessStartFailed,
    ProcessState,
    ProcessSupervisorStatistics,
    ProcessSupervisorStopped,
    exit_reason,
    ready_port,
)

__all__ = ["ProcessSupervisor"]

log = logging.getLogger(__name__)


def _log_failure(task: asyncio.Task[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stopping children after giving up failed", exc_info=task.exception())


class ProcessSupervisor:
    """Start, watch, restart and stop node processes; an async context manager.

    ``async with ProcessSupervisor(specs, intensity=3, period=10) as sup:``
    starts every spec in order and stops them all (reverse order) on exit.
    `clock` is injectable for the intensity rule only; it defaults to
    `time.monotonic`.
    """

    def __init__(
        self,
        specs: Iterable[ProcessSpec] = (),
        *,
        intensity: int = DEFAULT_INTENSITY,
        period: float = DEFAULT_PERIOD,
        clock: Callable[[], float] = time.monotonic,
        history: int = 1000,
        start_concurrency: int = 1,
        stop_concurrency: int = 1,
        escalate: bool = True,
        command_for: Callable[[ProcessSpec, int], Sequence[str]] | None = None,
    ) -> None:
        self._initial = list(specs)
        if start_concurrency < 1:
            raise ValueError(
                f"start_concurrency: invalid value {start_concurrency!r}; expected >= 1"
            )
        self._start_concurrency = start_concurrency
        self._stop_concurrency = max(1, stop_concurrency)
        self._children: dict[str, ChildRecord] = {}
        self._intensity = RestartIntensity(intensity, period)
        self._limits = (intensity, period)
        self._escalate = escalate
        self._command_for = command_for
        self._clock = clock
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ProcessEvent], None]] = []
        self._history: deque[ProcessEvent] = deque(maxlen=history)
        self._restart_count = 0
        self._stopped_reason: str | None = None
        self._done: asyncio.Future[str] | None = None
        self._give_up_task: asyncio.Task[str] | None = None

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ProcessSupervisor:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the initial specs (in order, or `start_concurrency` at once); on a failure stop all and raise."""
        self._done = asyncio.get_running_loop().create_future()
        try:
            if self._start_concurrency == 1:
                for spec in self._initial:
                    await self.start_child(spec)
            else:
                failed = await self.start_children(self._initial)
                if failed:
                    raise next(iter(failed.values()))
        except BaseException:
            await self.stop()
            raise

    async def start_children(self, specs: Iterable[ProcessSpec]) -> dict[str, StartChildError]:
        """Add and start `specs`, `start_concurrency` at once; return those that failed.

        A failed child is kept (TERMINATED) and the others still start: one bad
        node must not cost a cluster the 63 others. Listing and stop order stay
        spec order."""
        gate = asyncio.Semaphore(self._start_concurrency)
        failed: dict[str, StartChildError] = {}

        async def launch(child: ChildRecord) -> None:
            async with gate:
                try:
                    await self._launch(child)
                except StartChildError as exc:
                    failed[child.spec.id] = exc

        async with self._lock:
            self._check_alive()
            specs = list(specs)
            duplicate = [s.id for s in specs if s.id in self._children]
            if duplicate:
                raise SupervisorError(f"child {duplicate[0]!r} already exists")
            children = [self._children.setdefault(s.id, ChildRecord(s, port=s.port)) for s in specs]
            await asyncio.gather(*map(launch, children))
        return failed

    async def stop(self, reason: str = "shutdown") -> str:
        """Stop every child in reverse start order; idempotent. Returns the stop reason."""
        if self._stopped_reason is None:
            self._stopped_reason = reason
        async with self._lock:
            await self._stop_all()
        if self._done is not None and not self._done.done():
            self._done.set_result(self._stopped_reason)
            self._emit(ProcessSupervisorStopped(self._stopped_reason))
        return self._stopped_reason

    async def wait(self) -> str:
        """Wait until the supervisor stops (asked to, or gave up); return the reason."""
        if self._done is None:
            raise SupervisorError("the supervisor was never started")
        return await asyncio.shield(self._done)

    @property
    def stopped(self) -> bool:
        """True once the supervisor stopped or gave up."""
        return self._stopped_reason is not None

    # ---------------------------------------------------------- OTP-like API

    async def start_child(self, spec: ProcessSpec) -> ProcessInfo:
        """Add `spec` and start it; returns once its ready line arrived.

        Raises `StartChildError` (and forgets the spec) if it exits or stays
        silent past `spec.ready_timeout`; `SupervisorError` for a duplicate id.
        """
        async with self._lock:
            self._check_alive()
            if spec.id in self._children:
                raise SupervisorError(f"child {spec.id!r} already exists")
            child = ChildRecord(spec, port=spec.port)
            self._children[spec.id] = child
            try:
                await self._launch(child)
            except BaseException:
                del self._children[spec.id]
                raise
            return child.info()

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (shutdown rules apply) without restarting it; a temporary one is forgotten."""
        async with self._lock:
            child = self._get(child_id)
            await self._shutdown(child)
            if child.spec.restart is TEMPORARY:
                del self._children[child_id]

    async def restart_child(self, child_id: str) -> ProcessInfo:
        """Start a terminated child again (on its last port)."""
        async with self._lock:
            self._check_alive()
            child = self._get(child_id)
            if child.state is not ProcessState.TERMINATED:
                raise SupervisorError(f"child {child_id!r} is {child.state.value}, not terminated")
            await self._launch(child)
            return child.info()

    async def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        async with self._lock:
            child = self._get(child_id)
            if child.state is not ProcessState.TERMINATED:
                raise SupervisorError(f"child {child_id!r} is {child.state.value}, not terminated")
            del self._children[child_id]

    def kill_child(self, child_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a child as if it crashed; the restart rules then apply."""
        child = self._get(child_id)
        if child.proc is not None:
            child.proc.signal(sig)

    def which_children(self) -> list[ProcessInfo]:
        """A snapshot of every child, in start order."""
        return [c.info() for c in self._children.values()]

    def count_children(self) -> dict[str, int]:
        """OTP's counts: ``specs``, ``active`` (running) and ``workers``."""
        active = sum(1 for c in self._children.values() if c.state is ProcessState.RUNNING)
        n = len(self._children)
        return {"specs": n, "active": active, "supervisors": 0, "workers": n}

    def statistics(self) -> ProcessSupervisorStatistics:
        """An immutable snapshot for a live table."""
        children = tuple(self.which_children())
        running = sum(1 for c in children if c.state is ProcessState.RUNNING)
        return ProcessSupervisorStatistics(
            children, self._restart_count, running, self._stopped_reason
        )

    # ---------------------------------------------------------------- events

    def subscribe(self, listener: Callable[[ProcessEvent], None]) -> Callable[[], None]:
        """Call `listener(event)` on the loop for every event; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def history(self) -> list[ProcessEvent]:
        """The most recent events, oldest first."""
        return list(self._history)

    def _emit(self, event: ProcessEvent) -> None:
        self._history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break supervision
                log.exception("process supervisor listener %r failed", listener)

    # ------------------------------------------------------------- internals

    def _get(self, child_id: str) -> ChildRecord:
        try:
            return self._children[child_id]
        except KeyError:
            raise SupervisorError(f"no child {child_id!r}") from None

    def _check_alive(self) -> None:
        if self._stopped_reason is not None:
            raise SupervisorError(f"the supervisor has stopped ({self._stopped_reason})")

    async def _launch(self, child: ChildRecord) -> None:
        """Spawn one incarnation and wait for its ready line (caller holds the lock)."""
        spec = child.spec
        child.state = ProcessState.STARTING
        try:
            argv = (
                spec.command(child.port)
                if self._command_for is None
                else list(self._command_for(spec, child.port))
            )
            proc = OsProcess.spawn(argv, env=spec.env, cwd=spec.cwd, stderr_path=spec.stderr_path)
        except OSError as exc:  # no such program, bad cwd, unwritable stderr_path...
            child.state = ProcessState.TERMINATED
            self._emit(ProcessStartFailed(spec.id, str(exc)))
            raise StartChildError(spec.id, f"cannot run {spec.argv[0]!r}: {exc}") from exc
        child.proc = proc
        try:
            ready = await asyncio.wait_for(asyncio.shield(proc.ready), spec.ready_timeout)
        except BaseException as exc:
            await self._reap_failed(proc)
            child.state = ProcessState.TERMINATED
            child.proc = None
            if isinstance(exc, TimeoutError):
                reason = f"no ready line within {spec.ready_timeout} s"
                tail = proc.stderr_tail()
                reason = f"{reason}; last output:\n{tail}" if tail else reason
            elif isinstance(exc, ChildProcessError):
                reason = str(exc)
            else:
                raise
            self._emit(ProcessStartFailed(spec.id, reason))
            raise StartChildError(spec.id, reason) from None
        child.ready = ready
        child.port = ready_port(ready) or child.port
        child.state = ProcessState.RUNNING
        child.started_at = time.time()
        child.watcher = asyncio.get_running_loop().create_task(self._watch(child, proc))
        log.info("child %s running as os pid %d at %s", spec.id, proc.pid, ready.get("address"))
        self._emit(
            ProcessStarted(
                spec.id, proc.pid, child.info().address, child.info().incarnation, child.restarts
            )
        )

    async def _reap_failed(self, proc: OsProcess) -> None:
        proc.kill()
        proc.close_stdin()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(proc.exited)
        proc.close()

    async def _watch(self, child: ChildRecord, proc: OsProcess) -> None:
        """Wait for this incarnation's death; restart it unless we caused it."""
        code = await asyncio.shield(proc.exited)
        if child.proc is not proc or child.state is ProcessState.STOPPING:
            return  # a stop in progress owns this exit
        proc.close()
        child.proc = None
        reason = exit_reason(code)
        child.last_exit = reason
        restart = should_restart(child.spec.restart, "normal" if code == 0 else reason)
        within = restart and self._intensity_of(child).add(self._clock())
        log.warning("child %s (os pid %d) exited: %s", child.spec.id, proc.pid, reason)
        self._emit(ProcessExited(child.spec.id, proc.pid, code, reason, False, within))
        if not restart:
            child.state = ProcessState.TERMINATED
            if child.spec.restart is TEMPORARY:
                self._children.pop(child.spec.id, None)
            return
        if not within:
            self._exceeded(child)
            return
        child.state = ProcessState.RESTARTING
        try:
            await self._restart(child)
        except Exception:  # a bug here must not silently end supervision
            log.exception("restarting %s failed unexpectedly", child.spec.id)
            if self._stopped_reason is None:
                self._give_up(f"shutdown: restarting {child.spec.id!r} failed unexpectedly")

    async def _restart(self, child: ChildRecord) -> None:
        """Restart after a crash; a failed start is another crash, under the same intensity."""
        async with self._lock:
            # A stop or terminate_child while we waited for the lock wins.
            while self._stopped_reason is None and child.state is ProcessState.RESTARTING:
                child.restarts += 1
                self._restart_count += 1
                try:
                    await self._launch(child)
                    return
                except StartChildError as exc:
                    log.warning("restart of %s failed: %s", child.spec.id, exc.reason)
                    child.state = ProcessState.RESTARTING
                    if not self._intensity_of(child).add(self._clock()):
                        self._exceeded(child)
                        return

    def _intensity_of(self, child: ChildRecord) -> RestartIntensity:
        """The intensity a restart of `child` counts against: shared, or the child's own."""
        if self._escalate:
            return self._intensity
        if child.intensity is None:
            child.intensity = RestartIntensity(*self._limits)
        return child.intensity

    def _exceeded(self, child: ChildRecord) -> None:
        """`child` restarted too often: give up (escalate) or leave only it down."""
        child.state = ProcessState.TERMINATED
        if self._escalate:
            self._give_up(f"shutdown: child {child.spec.id!r} exceeded the restart intensity")
            return
        intensity, period = self._limits
        child.last_exit = (
            f"{child.last_exit or 'crashed'}; left down after more than "
            f"{intensity} restarts in {period:g} s"
        )
        log.error("child %s: %s", child.spec.id, child.last_exit)

    def _give_up(self, reason: str) -> None:
        log.error("process supervisor giving up: %s", reason)
        self._stopped_reason = reason
        task = asyncio.get_running_loop().create_task(self.stop(reason))
        task.add_done_callback(_log_failure)
        self._give_up_task = task  # a strong reference until it finishes

    async def _stop_all(self) -> None:
        """Stop children in reverse order, `stop_concurrency` at a time."""
        gate = asyncio.Semaphore(self._stop_concurrency)

        async def shutdown(child: ChildRecord) -> None:
            async with gate:
                await self._shutdown(child)

        await asyncio.gather(*map(shutdown, reversed(list(self._children.values()))))

    async def _shutdown(self, child: ChildRecord) -> None:
        """Stop one child: SIGTERM, its shutdown time, then SIGKILL (caller holds the lock)."""
        proc = child.proc
        if proc is None or child.state is ProcessState.TERMINATED:
            child.state = ProcessState.TERMINATED
            return
        child.state = ProcessState.STOPPING
        shutdown = child.spec.shutdown
        if shutdown is Shutdown.BRUTAL_KILL:
            proc.kill()
        else:
            proc.signal(signal.SIGTERM)
            proc.signal(
                signal.SIGCONT
            )  # a paused (SIGSTOPped) child acts on SIGTERM only once resumed
            timeout = None if shutdown is Shutdown.INFINITY else float(shutdown)
            try:
                await asyncio.wait_for(asyncio.shield(proc.exited), timeout)
            except TimeoutError:
                log.warning("child %s ignored SIGTERM for %s s: killing it", child.spec.id, timeout)
                proc.kill()
        proc.close_stdin()
        code = await asyncio.shield(proc.exited)
        proc.close()
        child.proc = None
        child.last_exit = exit_reason(code)
        child.state = ProcessState.TERMINATED
        self._emit(ProcessExited(child.spec.id, proc.pid, code, child.last_exit, True, False))
        if child.watcher is not None:
            child.watcher.cancel()
            child.watcher = None

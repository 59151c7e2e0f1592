"""`Supervisor`: OTP's supervisor as an actor, local or with children on other nodes.

Theory of operation
-------------------
A supervisor is an actor that traps exits and is linked to each child it
spawns. Children start in order (each `spawn` returns once the child's init
returned; a failure stops those already started, in reverse, and fails the
supervisor's own start). When a child's `Exit` arrives the child's restart
type decides (`policy.should_restart`), then the restart intensity (more than
`intensity` restarts within `period` seconds): exceeding it terminates every
child in reverse order and the supervisor exits with reason ``"shutdown"``, so
its parent sees exactly one exit and applies its own rules: escalation goes
up one level at a time. Otherwise the strategy picks who restarts:

* `ONE_FOR_ONE` / `SIMPLE_ONE_FOR_ONE`: the child alone;
* `ONE_FOR_ALL`: every other child is terminated (reverse order), then all
  are started again in order;
* `REST_FOR_ONE`: the children started after it are terminated (reverse),
  then it and they are started again in order.

Terminating a child is OTP's: unlink, monitor, ``exit(child, "shutdown")``,
wait for its `Down` up to its `shutdown` seconds, then ``exit(child,
"kill")``; `BRUTAL_KILL` kills at once, `INFINITY` waits. Temporary children
are never restarted and are forgotten when they exit.

A child whose `node` is another node is spawned there and supervised through
the link; losing that node delivers ``Exit(pid, "noconnection")``, which is an
abnormal exit like any other. Deviation from OTP: a restart that cannot
*reach* the child's node (`NotConnected`, `CallTimeout`) is not counted as
another crash; the child waits, marked restarting, and is retried when a
`NodeUp` for that node arrives (and every `retry_interval` seconds), so a
node that is killed and comes back gets its children back instead of
exhausting the intensity in a tight loop. Any other failed restart counts
against the intensity and is retried at once, as in OTP.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from partisan.actors import api
from partisan.actors.actor import Behaviour
from partisan.actors.gen_server import _StopRequest
from partisan.actors.process import ActorExit
from partisan.actors.signals import Call, Down, Exit, NodeUp
from partisan.errors import CallExit, CallTimeout, NotConnected, ReceiveTimeout
from partisan.identity import Pid
from partisan.supervision.child_spec import ChildInfo, ChildSpec, SupervisorSpec
from partisan.supervision.errors import StartChildError, SupervisorError
from partisan.supervision.policy import (
    TEMPORARY,
    ChildType,
    RestartIntensity,
    Shutdown,
    Strategy,
    should_restart,
)

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Request:
    """A supervisor API call: `op` names the method, `arg` its argument."""

    op: str
    arg: Any = None


@dataclass(frozen=True, slots=True)
class _Failed:
    """A call reply carrying an exception to re-raise at the caller."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class _Retry:
    """Self-message: try the pending restarts again."""


@dataclass(slots=True, eq=False)
class _Child:
    spec: ChildSpec
    args: tuple[Any, ...]
    pid: Pid | None = None
    restarting: bool = False

    def info(self) -> ChildInfo:
        return ChildInfo(
            self.spec.id,
            self.pid,
            self.spec.child_type,
            self.spec.restart,
            self.spec.node,
            self.restarting,
            self.args,
        )


class Supervisor(Behaviour):
    """Start with ``await Supervisor.start_link(SupervisorSpec([...], strategy=...))``.

    Or subclass and override ``init(*args)`` to return a `SupervisorSpec` or
    a list of `ChildSpec` (the flags then come from the class attributes).
    Manage it with the functions of `partisan.supervision.api`
    (``start_child``, ``which_children``, ...).
    """

    trap_exit = True
    strategy: ClassVar[Strategy] = Strategy.ONE_FOR_ONE
    intensity: ClassVar[int] = 1
    period: ClassVar[float] = 5.0
    #: Seconds between attempts to restart a child whose node is unreachable.
    retry_interval: ClassVar[float] = 1.0
    #: The clock of the intensity rule (monotonic seconds).
    clock: ClassVar[Callable[[], float]] = time.monotonic
    #: How long a child's init may take when it is (re)started.
    start_timeout: ClassVar[float] = 5.0
    #: What a `ChildSpec` starting this class defaults its `type` to (as in OTP).
    child_spec_type: ClassVar[ChildType] = ChildType.SUPERVISOR

    _spec: SupervisorSpec
    _children: list[_Child]
    _by_pid: dict[Pid, _Child]
    _restarts: RestartIntensity
    _retry_pending: bool
    _watched_nodes: set[str]

    def init(self, spec: SupervisorSpec | Iterable[ChildSpec] = ()) -> Any:
        """Return the tree to run: a `SupervisorSpec` or the children (flags from the class)."""
        return spec

    # ------------------------------------------------------------ start-up

    async def _partisan_start(self, *args: Any) -> None:
        try:
            spec = self.init(*args)
            if inspect.isawaitable(spec):
                spec = await spec
            if not isinstance(spec, SupervisorSpec):
                spec = SupervisorSpec(
                    spec, strategy=self.strategy, intensity=self.intensity, period=self.period
                )
            self._spec = spec
            self._children = []
            self._by_pid = {}
            self._restarts = RestartIntensity(spec.intensity, spec.period)
            self._retry_pending = False
            self._watched_nodes = set()
            if spec.strategy is not Strategy.SIMPLE_ONE_FOR_ONE:
                for child_spec in spec.children:
                    child = _Child(child_spec, child_spec.args)
                    self._children.append(child)
                    try:
                        await self._spawn(child)
                    except StartChildError:
                        self._children.pop()
                        await self._terminate_all()
                        raise
        except BaseException as exc:
            self._partisan_init_failed(exc)
            raise
        self._partisan_started()
        reason = await self._loop()
        if reason != "normal":
            raise ActorExit(reason)

    async def _loop(self) -> Any:
        proc = self._process
        while True:
            msg = await proc.receive()
            kind = type(msg)
            if kind is Exit:
                if msg.pid == proc.parent:
                    await self._terminate_all()
                    return msg.reason
                child = self._by_pid.get(msg.pid)
                if child is not None and await self._child_exited(child, msg.reason):
                    return "shutdown"
            elif kind is Call and isinstance(msg.request, _Request):
                try:
                    value = await self._handle(msg.request)
                except SupervisorError as exc:
                    value = _Failed(exc)
                proc.runtime.reply(proc, msg.caller, value)
            elif kind is _Retry or kind is NodeUp:
                self._retry_pending = False if kind is _Retry else self._retry_pending
                if await self._restart_pending():
                    return "shutdown"
            elif kind is _StopRequest:
                await self._terminate_all()
                return msg.reason
            # Anything else (a stale Down, a stray message) is ignored, as in OTP.

    # ------------------------------------------------------------- restarts

    async def _child_exited(self, child: _Child, reason: Any) -> bool:
        """Apply restart type, intensity and strategy; True when the supervisor must give up."""
        self._by_pid.pop(child.pid, None)  # type: ignore[arg-type]  # pid is set while linked
        child.pid = None
        logger.info("child %r of %r exited: %r", child.spec.id, self.pid, reason)
        if not should_restart(child.spec.restart, reason):
            if (
                child.spec.restart is TEMPORARY
                or self._spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE
            ):
                self._children.remove(child)
            return False
        if not self._restarts.add(type(self).clock()):
            logger.error(
                "supervisor %r: child %r exceeded the restart intensity (%d in %s s); shutting down",
                self.pid,
                child.spec.id,
                self._spec.intensity,
                self._spec.period,
            )
            await self._terminate_all()
            return True
        strategy = self._spec.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            group = list(self._children)
        elif strategy is Strategy.REST_FOR_ONE:
            group = self._children[self._children.index(child) :]
        else:
            group = [child]
        for other in reversed(group):
            if other is not child:
                await self._terminate(other)
        for other in group:
            if other is not child and other.spec.restart is TEMPORARY:
                self._children.remove(other)  # OTP: a terminated temporary child is gone
            elif other in self._children:
                other.restarting = True
        return await self._restart_pending()

    async def _restart_pending(self) -> bool:
        """Start the children marked restarting, in order; stop at the first failure."""
        for child in list(self._children):
            if not child.restarting or child not in self._children:
                continue
            try:
                await self._spawn(child)
            except StartChildError as exc:
                if _node_unreachable(exc.__cause__) and child.spec.node:
                    logger.warning(
                        "restart of %r waits for node %s", child.spec.id, child.spec.node
                    )
                    if child.spec.node not in self._watched_nodes:
                        self._watched_nodes.add(child.spec.node)
                        api.monitor_node(child.spec.node)  # its NodeUp triggers a retry
                    self._schedule_retry(type(self).retry_interval)
                    return False
                logger.warning("restart of %r failed: %s", child.spec.id, exc.reason)
                if not self._restarts.add(type(self).clock()):
                    await self._terminate_all()
                    return True
                self._schedule_retry(0.0)
                return False
            child.restarting = False
        return False

    def _schedule_retry(self, delay: float) -> None:
        if not self._retry_pending:
            self._retry_pending = True
            api.send_after(delay, self.pid, _Retry())

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        try:
            pid = await api.spawn(
                spec.start,
                *child.args,
                node=spec.node,
                link=True,
                name=spec.name,
                timeout=type(self).start_timeout,
            )
        except Exception as exc:
            raise StartChildError(spec.id, f"{type(exc).__name__}: {exc}") from exc
        child.pid = pid
        child.restarting = False
        self._by_pid[pid] = child

    # ---------------------------------------------------------- termination

    async def _terminate_all(self) -> None:
        for child in reversed(list(self._children)):
            await self._terminate(child)
            child.restarting = False

    async def _terminate(self, child: _Child) -> None:
        """OTP's shutdown: unlink, monitor, exit(shutdown), wait, then kill."""
        pid = child.pid
        if pid is None:
            return
        proc = self._process
        runtime = proc.runtime
        ref = runtime.monitor(proc, pid)
        runtime.unlink(proc, pid)
        while proc.take(lambda m: type(m) is Exit and m.pid == pid)[0]:
            pass  # an Exit queued before the unlink: this death is ours to handle now
        shutdown = child.spec.shutdown_value

        def is_down(m: Any) -> bool:
            return type(m) is Down and m.ref == ref

        if shutdown is Shutdown.BRUTAL_KILL:
            api.exit(pid, "kill")
            await proc.receive(is_down)
        else:
            api.exit(pid, "shutdown")
            timeout = None if shutdown is Shutdown.INFINITY else float(shutdown)
            try:
                await proc.receive(is_down, timeout=timeout)
            except ReceiveTimeout:
                logger.warning(
                    "child %r ignored shutdown for %s s: killing it", child.spec.id, timeout
                )
                api.exit(pid, "kill")
                await proc.receive(is_down)
        self._by_pid.pop(pid, None)
        child.pid = None

    # ------------------------------------------------------------ API calls

    async def _handle(self, request: _Request) -> Any:
        op, arg = request.op, request.arg
        if op == "which_children":
            return [c.info() for c in self._children]
        if op == "count_children":
            sups = sum(1 for c in self._children if c.spec.child_type is ChildType.SUPERVISOR)
            return {
                "specs": 1 if self._is_simple() else len(self._children),
                "active": sum(1 for c in self._children if c.pid is not None),
                "supervisors": sups,
                "workers": len(self._children) - sups,
            }
        if op == "start_child":
            return await self._start_child(arg)
        if op == "terminate_child":
            child = self._find(arg)
            await self._terminate(child)
            child.restarting = False
            if child.spec.restart is TEMPORARY or self._is_simple():
                self._children.remove(child)
            return None
        if op == "restart_child":
            child = self._find(arg)
            if child.pid is not None or child.restarting:
                raise SupervisorError(f"child {arg!r} is running")
            await self._spawn(child)
            return child.pid
        if op == "delete_child":
            child = self._find(arg)
            if child.pid is not None or child.restarting:
                raise SupervisorError(f"child {arg!r} is running")
            self._children.remove(child)
            return None
        raise SupervisorError(f"unknown supervisor request {op!r}")

    def _is_simple(self) -> bool:
        return self._spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE

    async def _start_child(self, arg: Any) -> Pid:
        if self._is_simple():
            template = self._spec.children[0]
            child = _Child(template, template.args + tuple(arg or ()))
        else:
            if not isinstance(arg, ChildSpec):
                raise SupervisorError(f"start_child needs a ChildSpec, got {arg!r}")
            if any(c.spec.id == arg.id for c in self._children):
                raise SupervisorError(f"child {arg.id!r} already exists")
            child = _Child(arg, arg.args)
        self._children.append(child)
        try:
            await self._spawn(child)
        except StartChildError:
            self._children.remove(child)
            raise
        assert child.pid is not None
        return child.pid

    def _find(self, key: Any) -> _Child:
        for child in self._children:
            if child.pid == key if isinstance(key, Pid) else child.spec.id == key:
                return child
        if self._is_simple() and not isinstance(key, Pid):
            raise SupervisorError("SIMPLE_ONE_FOR_ONE children are named by their Pid")
        raise SupervisorError(f"no child {key!r}")


def _node_unreachable(cause: BaseException | None) -> bool:
    """A remote start failed because its node cannot be reached (not because of the child).

    A down node raises `NotConnected`; one that connect-on-use dialled and
    could not reach fails the request with `CallExit("noconnection")`.
    """
    if isinstance(cause, (NotConnected, CallTimeout)):
        return True
    return isinstance(cause, CallExit) and cause.reason == "noconnection"

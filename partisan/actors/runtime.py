"""The actor runtime of one node: processes, routing, exits, links, monitors and calls.

Theory of operation
-------------------
Every actor is an asyncio Task running `_run`, and a `Process` record held in
``Runtime.processes`` (a strong reference: a Task nobody references can be
garbage collected mid-flight). `_run` observes every exit, whatever ended the
actor (return, exception, cancellation, a kill before it even started), and
runs `_exit` inside the task, the single place where an actor's death is
turned into signals, as in Erlang:

* to each linked actor an *exit signal*: a trapping actor gets an `Exit`
  message; a non-trapping one dies with the same reason unless the reason is
  ``"normal"``. ``exit(pid, "kill")`` is untrappable and ends the target with
  ``"killed"``.
* to each monitor holder a `Down(ref, pid, reason)` message, or, for a pending
  `call`, a `CallExit(reason)` raised in the caller at once (a call is a
  monitor whose holder is a Future: OTP's gen:call does the same).

Killing an actor cancels its task; the reason is kept in ``kill_reason``.

Local sends are plain function calls (`route`): resolve the destination and
append to the mailbox. Anything for another node goes to ``self.dist``, the
distribution layer (`partisan.actors.remote`), which implements the same
signals over the wire and turns a lost node into ``noconnection``.

Erlang semantics we keep: a link to a dead or unknown actor gives an exit
signal ``noproc``; unlink guarantees no later exit signal from that link;
the monitors an actor holds vanish with it; ``demonitor`` before the exit
means no `Down`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from partisan.actors.monitors import MonitorsAndCalls, Watch
from partisan.actors.process import ActorExit, Process, _current
from partisan.actors.signals import Crashed, Exit, Ref, make_ref
from partisan.errors import AlreadyStarted, CallExit, NotConnected
from partisan.identity import Pid

if TYPE_CHECKING:
    from partisan.actors.remote import Distribution

__all__ = ["Dest", "Runtime", "RuntimeStatistics", "Watch", "crashed_from"]

logger = logging.getLogger(__name__)

#: Where a message can go: a Pid, a local registered name, or (name, node).
Dest = Pid | str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """An immutable snapshot of the runtime's counters."""

    actors: int
    deepest_mailboxes: tuple[tuple[Pid, int], ...]
    routed_local: int
    routed_remote: int
    received_remote: int
    drops: dict[str, int] = field(default_factory=dict)
    timers: int = 0
    monitors: int = 0


def crashed_from(exc: BaseException) -> Crashed:
    """The `Crashed` exit reason for `exc` (type, message, formatted traceback)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Crashed(type(exc).__name__, str(exc), text)


class Runtime(MonitorsAndCalls):
    """All actors of one node incarnation. Create one per Node; never share."""

    def __init__(self, node: str, incarnation: int, *, call_timeout: float = 5.0) -> None:
        self.node = node
        self.incarnation = incarnation
        self.call_timeout = call_timeout
        self.running = True
        self.processes: dict[int, Process] = {}
        self.names: dict[str, Process] = {}
        self.watches: dict[Ref, Watch] = {}
        self.timers: dict[Ref, asyncio.TimerHandle] = {}
        self.dist: Distribution | None = None
        self.routed_local = 0
        self.routed_remote = 0
        self.received_remote = 0
        self.drops: collections.Counter[str] = collections.Counter()
        self._ids = itertools.count(1)
        self.main = Process(Pid(node, incarnation, 0), self, trap_exit=True)
        self.processes[0] = self.main

    # ------------------------------------------------------------ lookups

    def lookup(self, pid: Pid) -> Process | None:
        """The live local process for `pid` (None for another node or incarnation)."""
        if pid.node != self.node or pid.incarnation != self.incarnation:
            return None
        return self.processes.get(pid.id)

    def resolve_local(self, dest: Dest) -> Process | None:
        """The local process `dest` names, if it is local and alive."""
        if isinstance(dest, Pid):
            return self.lookup(dest)
        if isinstance(dest, str):
            return self.names.get(dest)
        if isinstance(dest, tuple) and len(dest) == 2 and dest[1] == self.node:
            return self.names.get(dest[0])
        return None

    def is_local(self, dest: Dest) -> bool:
        if isinstance(dest, Pid):
            return dest.node == self.node
        if isinstance(dest, str):
            return True
        return dest[1] == self.node

    def node_of(self, dest: Dest) -> str:
        if isinstance(dest, Pid):
            return dest.node
        if isinstance(dest, str):
            return self.node
        if isinstance(dest, tuple) and len(dest) == 2:
            return dest[1]
        raise TypeError(f"bad destination {dest!r}: use a Pid, a name, or (name, node)")

    # ------------------------------------------------------------- spawn

    def spawn(
        self,
        entry: Callable[..., Coroutine[Any, Any, Any]],
        args: tuple[Any, ...] = (),
        *,
        parent: Pid | None = None,
        link: bool = False,
        name: str | None = None,
        wants_start: bool = False,
    ) -> Process:
        """Start `entry(*args)` as a new actor; `link` links it to `parent` first."""
        if not self.running:
            raise RuntimeError(f"node {self.node} is stopping: cannot spawn")
        if name is not None:
            self._check_name_free(name)
        proc = Process(Pid(self.node, self.incarnation, next(self._ids)), self)
        proc.parent = parent
        self.processes[proc.pid.id] = proc
        if name is not None:
            proc.name = name
            self.names[name] = proc
        loop = asyncio.get_running_loop()
        if wants_start:
            proc.started = loop.create_future()
        proc.task = loop.create_task(self._run(proc, entry, args))
        if link and parent is not None:
            self.link(proc, parent)  # after the task exists: a noproc exit must cancel it
        return proc

    async def _run(
        self, proc: Process, entry: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...]
    ) -> Any:
        _current.set(proc)
        proc.stepped = True
        reason: Any = "normal"
        try:
            if proc.kill_reason is not None:  # killed before it ever ran
                raise ActorExit(proc.kill_reason)
            await entry(*args)
        except asyncio.CancelledError:
            reason = proc.kill_reason if proc.kill_reason is not None else "killed"
        except ActorExit as exc:
            reason = exc.reason
        except Exception as exc:
            reason = crashed_from(exc)
            logger.error("actor %r crashed:\n%s", proc.pid, reason.traceback_text.rstrip())
        # exit now, inside the task, so nobody sees a finished actor as alive
        self._exit(proc, reason)
        return reason

    def _check_name_free(self, name: str) -> None:
        if not isinstance(name, str) or not name or name.startswith(("$", "partisan:")):
            raise ValueError(f"invalid name {name!r}: a non-empty str not starting with '$'")
        if name in self.names:
            raise AlreadyStarted(name, self.names[name].pid)

    # ------------------------------------------------------------- exits

    def _exit(self, proc: Process, reason: Any) -> None:
        """Turn `proc`'s death into exit signals and Down messages (runs exactly once)."""
        if not proc.alive:
            return
        proc.alive = False
        self.processes.pop(proc.pid.id, None)
        if proc.name is not None and self.names.get(proc.name) is proc:
            del self.names[proc.name]
        if proc.started is not None and not proc.started.done():
            proc.started.set_exception(CallExit(reason))
            proc.started.exception()  # mark retrieved: the starter may have given up
        for ref in list(proc.watching or ()):
            self.demonitor(proc, ref)
        links, proc.links = proc.links, None
        for other in links or ():
            self.send_exit(proc.pid, other, reason, linked=True)
        monitored_by, proc.monitored_by = proc.monitored_by, None
        for ref, watcher in (monitored_by or {}).items():
            self.notify_down(ref, watcher, proc.pid, reason, via_name=None)
        if self.dist is not None:
            self.dist.forget_process(proc)
        proc.clear()

    def kill(self, proc: Process, reason: Any) -> None:
        """End `proc` with `reason` (cancelling its task); the first reason wins."""
        if not proc.alive or proc.is_main:
            return
        if proc.kill_reason is None:
            proc.kill_reason = reason
        task = proc.task
        if task is None or not proc.stepped:
            return  # _run sees kill_reason on its first step (a cancel now would skip _run)
        if task is asyncio.current_task():
            raise ActorExit(reason)
        task.cancel()

    def send_exit(self, src: Pid, dst: Pid, reason: Any, *, linked: bool) -> None:
        """Send an exit signal from `src` to `dst` (local or remote)."""
        target = self.lookup(dst)
        if target is not None:
            self.deliver_exit(target, src, reason, linked=linked)
        elif dst.node != self.node and self.dist is not None:
            self.dist.send_exit(src, dst, reason, linked=linked)

    def deliver_exit(self, target: Process, src: Pid, reason: Any, *, linked: bool) -> None:
        """Act on an exit signal that reached local `target`."""
        if linked:
            if target.links is None or src not in target.links:
                return  # unlinked meanwhile: an unlink guarantees no signal
            target.links.discard(src)
        if target.is_main:
            target.put(Exit(src, reason))
        elif reason == "kill" and not linked:
            self.kill(target, "killed")
        elif target.trap_exit:
            target.put(Exit(src, reason))
        elif reason != "normal" or src == target.pid:
            self.kill(target, reason)

    # ------------------------------------------------------------- links

    def link(self, proc: Process, other: Pid) -> None:
        """Link `proc` and `other`; an unknown or dead `other` sends `proc` an exit ``noproc``."""
        if other == proc.pid:
            return
        target = self.lookup(other)
        if target is not None:
            proc.add_link(other)
            target.add_link(proc.pid)
            return
        if other.node != self.node and self.dist is not None:
            proc.add_link(other)
            self.dist.link(proc, other)
            return
        proc.add_link(other)
        self.deliver_exit(proc, other, "noproc", linked=True)

    def unlink(self, proc: Process, other: Pid) -> None:
        if proc.links is not None:
            proc.links.discard(other)
        target = self.lookup(other)
        if target is not None:
            if target.links is not None:
                target.links.discard(proc.pid)
        elif other.node != self.node and self.dist is not None:
            self.dist.unlink(proc, other)

    # ------------------------------------------------------------- sends

    def route(
        self,
        sender: Process,
        dest: Dest,
        msg: Any,
        channel: str = "default",
        partition_key: Any = None,
        transitive: bool = False,
    ) -> None:
        """Deliver `msg` to `dest` now (local) or hand it to the distribution layer."""
        if isinstance(dest, Pid):
            if dest.node == self.node:
                if dest.incarnation != self.incarnation:
                    self.drops["stale_incarnation"] += 1
                    return
                proc = self.processes.get(dest.id)
                if proc is None:
                    self.drops["noproc"] += 1
                    return
                proc.put(msg)
                self.routed_local += 1
                return
        elif isinstance(dest, str):
            proc = self.names.get(dest)
            if proc is None:
                self.drops["unknown_name"] += 1
                return
            proc.put(msg)
            self.routed_local += 1
            return
        elif isinstance(dest, tuple) and len(dest) == 2:
            if dest[1] == self.node:
                self.route(sender, dest[0], msg)
                return
        else:
            raise TypeError(f"bad destination {dest!r}: use a Pid, a name, or (name, node)")
        if self.dist is None:
            raise NotConnected(
                f"no route to node {self.node_of(dest)!r}: this node is not distributed"
            )
        key = sender.pid if partition_key is None else partition_key
        self.dist.send(dest, msg, channel, key, transitive)

    # ------------------------------------------------------------ timers

    def send_after(self, sender: Process, delay: float, dest: Dest, msg: Any) -> Ref:
        """Send `msg` to `dest` after `delay` seconds; returns a ref for `cancel_timer`."""
        ref = make_ref(self.node, self.incarnation)
        loop = asyncio.get_running_loop()
        self.timers[ref] = loop.call_later(
            max(0.0, delay), self._fire_timer, ref, sender, dest, msg
        )
        return ref

    def _fire_timer(self, ref: Ref, sender: Process, dest: Dest, msg: Any) -> None:
        self.timers.pop(ref, None)
        try:
            self.route(sender, dest, msg)
        except Exception as exc:  # a timer has nobody to raise to: count and log
            self.drops["timer_send_failed"] += 1
            logger.warning("send_after to %r failed: %s", dest, exc)

    def cancel_timer(self, ref: Ref) -> bool:
        """Cancel a pending `send_after`; False if it already fired or was cancelled."""
        handle = self.timers.pop(ref, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    # --------------------------------------------------------- lifecycle

    async def shutdown(self, timeout: float) -> None:
        """Kill every actor (reason ``"shutdown"``) and wait for their tasks, up to `timeout`."""
        self.running = False
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()
        procs = [p for p in self.processes.values() if not p.is_main]
        for proc in reversed(procs):
            self.kill(proc, "shutdown")
        tasks = [p.task for p in procs if p.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                logger.warning("%d actors did not stop within %.1f s", len(pending), timeout)
        for watch in list(self.watches.values()):
            if watch.future is not None and not watch.future.done():
                watch.future.set_exception(CallExit("shutdown"))
                watch.future.exception()
        self.watches.clear()
        self.main.alive = False

    def statistics(self) -> RuntimeStatistics:
        """Snapshot: actor count, the five deepest mailboxes, routing and drop counters."""
        deepest = sorted(
            ((p.pid, len(p)) for p in self.processes.values() if p._queue),
            key=lambda item: -item[1],
        )[:5]
        return RuntimeStatistics(
            actors=len(self.processes) - 1,
            deepest_mailboxes=tuple(deepest),
            routed_local=self.routed_local,
            routed_remote=self.routed_remote,
            received_remote=self.received_remote,
            drops=dict(self.drops),
            timers=len(self.timers),
            monitors=len(self.watches),
        )

"""The runtime's record of one actor (`Process`) and "which actor is running now".

A `Process` *is* its mailbox (it subclasses `Mailbox`) so an idle actor costs
one object plus its asyncio Task and coroutine frames. Links, monitors and
watches are created lazily: most actors never use them.

The current actor is a context variable set by the actor's task. Outside any
actor (the user's ``main()``, a test body, the blocking facade) it falls back
to the *main pseudo-actor* of the node that is running: it has a Pid and a
mailbox, traps exits, and is never killed by a link.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from partisan.actors.mailbox import Mailbox
from partisan.identity import Pid

if TYPE_CHECKING:
    from partisan.actors.runtime import Runtime
    from partisan.actors.signals import Ref

__all__ = ["ActorExit", "Process", "current", "current_or_none", "set_default_runtime"]


class ActorExit(BaseException):  # an exit, not an error: like SystemExit
    """Raised inside an actor to end it with `reason` (``exit(self(), reason)``)."""

    def __init__(self, reason: Any) -> None:
        super().__init__(reason)
        self.reason = reason


class Process(Mailbox):
    """One actor: mailbox, task, links, monitors on it and monitors it holds."""

    __slots__ = (
        "actor",
        "alive",
        "kill_reason",
        "links",
        "monitored_by",
        "name",
        "parent",
        "pid",
        "runtime",
        "started",
        "stepped",
        "task",
        "trap_exit",
        "watching",
    )

    def __init__(self, pid: Pid, runtime: Runtime, *, trap_exit: bool = False) -> None:
        super().__init__()
        self.pid = pid
        self.runtime = runtime
        self.task: asyncio.Task[Any] | None = None
        self.alive = True
        self.trap_exit = trap_exit
        self.kill_reason: Any = None
        self.name: str | None = None
        self.parent: Pid | None = None
        #: Pids (local or remote) linked to this actor.
        self.links: set[Pid] | None = None
        #: ref -> watcher Pid, for monitors other actors hold on this one.
        self.monitored_by: dict[Ref, Pid] | None = None
        #: refs of the monitors (and calls) this actor holds on others.
        self.watching: set[Ref] | None = None
        #: The Actor/GenServer instance, if the actor is a class.
        self.actor: Any = None
        #: Resolved once a GenServer's init returned (start waits on it).
        self.started: asyncio.Future[None] | None = None
        #: True once the actor's task took its first step (a kill before that must not cancel).
        self.stepped = False

    @property
    def is_main(self) -> bool:
        """The node's main pseudo-actor (id 0): traps exits, never killed."""
        return self.pid.id == 0

    def add_link(self, pid: Pid) -> None:
        if self.links is None:
            self.links = set()
        self.links.add(pid)

    def __repr__(self) -> str:
        return f"<Process {self.pid!r} alive={self.alive} queued={len(self)}>"


_current: contextvars.ContextVar[Process] = contextvars.ContextVar("partisan_current_process")
_default_runtimes: list[Runtime] = []


def set_default_runtime(runtime: Runtime, present: bool) -> None:
    """Record (or forget) a running node's runtime for code outside any actor."""
    if present:
        _default_runtimes.append(runtime)
    elif runtime in _default_runtimes:
        _default_runtimes.remove(runtime)


def current_or_none() -> Process | None:
    """The running actor, else the main pseudo-actor of the newest running node, else None."""
    proc = _current.get(None)
    # `alive`, not `runtime.running`: an actor stopping with its node (e.g. a
    # GenServer's terminate during a graceful stop) is still itself.
    if proc is not None and proc.alive:
        return proc
    if _default_runtimes:
        return _default_runtimes[-1].main
    return None


def current() -> Process:
    """The running actor or the main pseudo-actor; RuntimeError when no node runs."""
    proc = current_or_none()
    if proc is None:
        raise RuntimeError(
            "no partisan Node is running here: use `async with partisan.Node(...)`, "
            "partisan.run(main) or partisan.blocking.Node(...)"
        )
    return proc

"""Starting an actor on this node: what `spawn` accepts and how a class-based actor runs.

`spawn`, a remote spawn served here (`remote_requests`) and a `ChildSpec`
(checked when it is built) all use these, so they live apart from the module
functions of `api`. `spawn_local` is the internal API behaviours and
supervision build on (docs/actors.md); `partisan.actors.api` re-exports it.
An Actor class is recognised by the runtime protocol it implements, not by
importing `Actor` (which imports `spawn`, so it sits above this module).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any

from partisan.actors.process import _current
from partisan.actors.runtime import Runtime
from partisan.errors import CallTimeout
from partisan.identity import Pid

__all__ = ["check_spawnable", "spawn_local"]


def _is_actor_class(cls: type) -> bool:
    """True for `Actor` subclasses, known by the runtime protocol they implement.

    Not ``issubclass(cls, Actor)``: `Actor.start` calls `spawn`, so
    `partisan.actors.actor` imports `partisan.actors.api` (which imports this
    module), not the other way round.
    """
    return callable(getattr(cls, "_partisan_start", None))


async def _run_actor_class(cls: Any, args: tuple[Any, ...]) -> None:
    """The task entry for a class-based actor (runs inside the new actor's task)."""
    proc = _current.get()
    if cls.trap_exit:
        proc.trap_exit = True
    instance = cls.__new__(cls)
    instance._process = proc
    proc.actor = instance
    await instance._partisan_start(*args)


def check_spawnable(fn: Any) -> None:
    """Raise TypeError at the call site unless `fn` is an ``async def`` or an Actor class."""
    if isinstance(fn, type):
        if _is_actor_class(fn):
            return
        raise TypeError(f"spawn: class {fn.__name__} is not an Actor/GenServer subclass")
    target = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.iscoroutinefunction(target):
        return
    if callable(target) and inspect.iscoroutinefunction(type(target).__call__):
        return
    raise TypeError(
        f"spawn: {fn!r} is not an `async def` function or an Actor subclass "
        "(a plain `def` cannot be an actor: it would block the node's event loop)"
    )


async def spawn_local(
    runtime: Runtime,
    fn: Any,
    args: tuple[Any, ...],
    *,
    parent: Pid | None,
    link: bool,
    name: str | None,
    timeout: float | None,
) -> Pid:
    """Start `fn` on this node; for behaviours, wait for their init (raising what it raised)."""
    if isinstance(fn, type):
        proc = runtime.spawn(
            _run_actor_class,
            (fn, args),
            parent=parent,
            link=link,
            name=name,
            wants_start=bool(getattr(fn, "waits_for_init", False)),
        )
    else:
        proc = runtime.spawn(fn, args, parent=parent, link=link, name=name)
    if proc.started is not None:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(proc.started)
        except TimeoutError:
            runtime.kill(proc, "init_timeout")
            raise CallTimeout(f"{fn!r} did not finish init within {timeout} s") from None
    return proc.pid

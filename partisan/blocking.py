"""`partisan.blocking`: the same node and module functions for synchronous code.

`blocking.Node(...)` runs a `partisan.Node` on an event loop in a background
thread; the module functions here (`spawn`, `send`, `call`, `receive`, ...)
mirror `partisan`'s and run on that loop as the node's main pseudo-actor,
blocking the calling thread until they finish::

    from partisan import blocking

    with blocking.Node("script", port=0, key_dir="keys") as node:
        node.join("b@127.0.0.1:9101")
        print(blocking.call(("db", "b"), "get"))

Calling any of them from the loop's own thread would deadlock, so it raises
`RuntimeError` instead.
"""

from __future__ import annotations

# The one import inside a function here is lazy on purpose: `partisan.node` is loaded when the
# first blocking node is made, not on import. It closes no import cycle (tests/unit/test_imports.py).
import asyncio
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any

from partisan.actors import api, gen_server
from partisan.actors.process import _current
from partisan.supervision import api as supervision

__all__ = [
    "Node",
    "broadcast",
    "call",
    "cancel_timer",
    "cast",
    "count_children",
    "delete_child",
    "demonitor",
    "exit",
    "is_alive",
    "link",
    "members",
    "monitor",
    "monitor_node",
    "node",
    "nodes",
    "ping",
    "receive",
    "register",
    "reply",
    "restart_child",
    "rpc",
    "self",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "start",
    "start_child",
    "start_link",
    "stop",
    "terminate_child",
    "unlink",
    "unregister",
    "whereis",
    "which_children",
]

_nodes: list[Node] = []


class Node:
    """A `partisan.Node` whose loop runs in a daemon thread; use ``with blocking.Node(...)``."""

    def __init__(self, name: str | None = None, **options: Any) -> None:
        from partisan.node import Node as AsyncNode

        self.node = AsyncNode(name, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float | None = None) -> Node:
        """Start the loop thread and the node; returns self."""
        if self._thread is not None:
            raise RuntimeError(f"blocking node {self.node.name} was already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"partisan-{self.node.name}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self.node.start(), loop).result(timeout)
        except BaseException:
            self._shutdown_loop()
            raise
        _nodes.append(self)
        return self

    def stop(self) -> None:
        """Stop the node gracefully, then the loop and its thread (idempotent)."""
        if self._loop is None:
            return
        self._check_thread()
        try:
            asyncio.run_coroutine_threadsafe(self.node.stop(), self._loop).result()
        finally:
            if self in _nodes:
                _nodes.remove(self)
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "partisan.blocking called from the node's own event loop thread: "
                "use the async API there (it would deadlock)"
            )

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the node's loop as its main pseudo-actor; wait for it."""
        self._check_thread()
        if self._loop is None:
            raise RuntimeError(f"blocking node {self.node.name} is not running")
        return asyncio.run_coroutine_threadsafe(
            self._as_main(fn, args, kwargs), self._loop
        ).result()

    async def _as_main(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        runtime = self.node.runtime
        assert runtime is not None
        _current.set(runtime.main)  # this task's own context: no reset needed
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    # -- the Node's methods, blocking

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def spec(self) -> Any:
        return self.node.spec

    @property
    def pid(self) -> Any:
        return self.node.pid

    def join(self, contact: Any, *, timeout: float | None = None) -> Any:
        return self.run(self.node.join, contact, timeout=timeout)

    def sync_join(self, contact: Any, *, timeout: float | None = None) -> Any:
        return self.run(self.node.sync_join, contact, timeout=timeout)

    def leave(self, other: Any = None) -> None:
        self.run(self.node.leave, other)

    def nodes(self) -> list[str]:
        return list(self.run(self.node.nodes))

    def members(self) -> list[str]:
        return list(self.run(self.node.members))

    def statistics(self) -> Any:
        return self.run(self.node.statistics)


def _default() -> Node:
    if not _nodes:
        raise RuntimeError("no partisan.blocking.Node is running: start one first")
    return _nodes[-1]


def _mirror(fn: Callable[..., Any]) -> Callable[..., Any]:
    def blocking_fn(*args: Any, **kwargs: Any) -> Any:
        return _default().run(fn, *args, **kwargs)

    blocking_fn.__name__ = fn.__name__
    blocking_fn.__qualname__ = fn.__name__
    blocking_fn.__doc__ = f"Blocking `partisan.{fn.__name__}`.\n\n{fn.__doc__ or ''}"
    return blocking_fn


spawn = _mirror(api.spawn)
spawn_link = _mirror(api.spawn_link)
send = _mirror(api.send)
cast = _mirror(api.cast)
broadcast = _mirror(api.broadcast)
call = _mirror(api.call)
reply = _mirror(api.reply)
receive = _mirror(api.receive)
monitor = _mirror(api.monitor)
demonitor = _mirror(api.demonitor)
link = _mirror(api.link)
unlink = _mirror(api.unlink)
exit = _mirror(api.exit)
register = _mirror(api.register)
unregister = _mirror(api.unregister)
whereis = _mirror(api.whereis)
self = _mirror(api.self)
node = _mirror(api.node)
nodes = _mirror(api.nodes)
members = _mirror(api.members)
monitor_node = _mirror(api.monitor_node)
is_alive = _mirror(api.is_alive)
ping = _mirror(api.ping)
send_after = _mirror(api.send_after)
cancel_timer = _mirror(api.cancel_timer)
rpc = _mirror(api.rpc)
stop = _mirror(gen_server.stop)
start_child = _mirror(supervision.start_child)
terminate_child = _mirror(supervision.terminate_child)
restart_child = _mirror(supervision.restart_child)
delete_child = _mirror(supervision.delete_child)
which_children = _mirror(supervision.which_children)
count_children = _mirror(supervision.count_children)


def start(behaviour: type[Any], *args: Any, **options: Any) -> Any:
    """Blocking ``await behaviour.start(*args, ...)``: a GenServer, StateMachine or Supervisor.

    Returns its Pid once its ``init`` returned; `AlreadyStarted` if `name` is taken.
    """
    return _default().run(behaviour.start, *args, **options)


def start_link(behaviour: type[Any], *args: Any, **options: Any) -> Any:
    """Blocking ``await behaviour.start_link(*args, ...)`` (linked to the node's main actor)."""
    return _default().run(behaviour.start_link, *args, **options)


#: ``partisan.blocking`` is listed in ``partisan._EXPORTS``; its lazy loader
#: does ``getattr(module, "blocking")``, so the module names itself here.
blocking = sys.modules[__name__]

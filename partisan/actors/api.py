"""The module functions users call: they act for the current actor (or the main pseudo-actor).

What doesn't wait is a plain function (`send`, `cast`,
`monitor`, `link`, `exit`, ...); what may wait is ``async def`` with
``timeout=`` (`spawn`, `call`, `receive`, `ping`, `rpc`). Each function finds
the acting process with `partisan.actors.process.current`, so the same code
runs inside an actor, in ``main()`` under `partisan.run`, or in a test body
inside ``async with partisan.Node(...)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from partisan.actors.arg_checks import check_rpc_args, check_timeout
from partisan.actors.loop_guard import needs_loop, require_loop
from partisan.actors.mailbox import Match
from partisan.actors.process import ActorExit, Process, _current, current
from partisan.actors.runtime import Dest, Runtime
from partisan.actors.signals import Cast, From, NodeDown, Ref
from partisan.actors.spawning import check_spawnable, spawn_local
from partisan.errors import NotConnected
from partisan.identity import Pid

_current_get = _current.get

__all__ = [
    "broadcast",
    "call",
    "cancel_timer",
    "cast",
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
    "rpc",
    "self",
    "send",
    "send_after",
    "spawn",
    "spawn_link",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]


@needs_loop("partisan.blocking.spawn(...)")
async def spawn(
    fn: Any,
    *args: Any,
    node: str | None = None,
    link: bool = False,
    monitor: bool = False,
    name: str | None = None,
    timeout: float | None = 5.0,
) -> Pid:
    """Start an actor running ``fn(*args)`` (an ``async def``, an Actor or GenServer class).

    `node` starts it on another node, shipping the code with pickle (dill when
    pickle cannot). `link` links it to the caller; `monitor` monitors it (the
    `Down` carries the Pid). `name` registers it on its node.
    """
    check_spawnable(fn)
    check_timeout(timeout, "spawn")
    proc = current()
    runtime = proc.runtime
    if node is None or node == runtime.node:
        pid = await spawn_local(
            runtime, fn, args, parent=proc.pid, link=link, name=name, timeout=timeout
        )
        if monitor:
            runtime.monitor(proc, pid)
        return pid
    if runtime.dist is None:
        raise NotConnected(f"no route to node {node!r}: this node is not distributed")
    return await runtime.dist.spawn(
        proc, node, fn, args, link=link, monitor=monitor, name=name, timeout=timeout
    )


@needs_loop("partisan.blocking.spawn_link(...)")
async def spawn_link(fn: Any, *args: Any, **options: Any) -> Pid:
    """`spawn` with ``link=True``."""
    return await spawn(fn, *args, link=True, **options)


def self() -> Pid:
    """The Pid of the current actor (or of the main pseudo-actor)."""
    return current().pid


def node() -> str:
    """The name of the current node."""
    return current().runtime.node


def nodes() -> list[str]:
    """Connected, non-hidden peers (self excluded), sorted."""
    dist = current().runtime.dist
    return [] if dist is None else dist.nodes()


def members() -> list[str]:
    """The membership view, self included, sorted."""
    runtime = current().runtime
    if runtime.dist is None:
        return [runtime.node]
    return runtime.dist.members()


def send(
    dest: Dest,
    msg: Any,
    *,
    channel: str = "default",
    partition_key: Any = None,
    transitive: bool = False,
    wait: bool = False,
    timeout: float | None = None,
) -> Any:
    """Send `msg` to `dest`; never waits unless ``wait=True`` (then await the result).

    Raises `NotConnected` when `dest`'s node has no route, `Overloaded` when
    the peer's send budget is used up. An unknown local or remote Pid or name
    is dropped and counted (Erlang semantics: sends never fail on the target).
    """
    if wait:
        require_loop("partisan.send(..., wait=True)", "partisan.blocking.send(..., wait=True)")
        check_timeout(timeout, "send")
        caller = current()
        return _send_wait(
            caller.runtime, caller, dest, msg, channel, partition_key, timeout, transitive
        )
    # `current()`, inlined for the common case (a live actor); routed positionally: cheaper
    proc: Process | None = _current_get(None)
    if proc is None or not proc.alive:
        proc = current()
    proc.runtime.route(proc, dest, msg, channel, partition_key, transitive)
    return None


async def _send_wait(
    runtime: Runtime,
    proc: Any,
    dest: Dest,
    msg: Any,
    channel: str,
    partition_key: Any,
    timeout: float | None,
    transitive: bool = False,
) -> None:
    if runtime.is_local(dest) or runtime.dist is None:
        runtime.route(proc, dest, msg, channel=channel, partition_key=partition_key)
        return
    key = proc.pid if partition_key is None else partition_key
    try:
        await runtime.dist.send_wait(dest, msg, channel=channel, partition_key=key, timeout=timeout)
    except NotConnected:
        if not transitive:
            raise
        # No direct link: relayed (a relay hop queues without waiting for budget).
        runtime.route(
            proc, dest, msg, channel=channel, partition_key=partition_key, transitive=True
        )


def cast(
    dest: Dest,
    request: Any,
    *,
    channel: str = "default",
    partition_key: Any = None,
    transitive: bool = False,
) -> None:
    """Send `request` to a GenServer's ``handle_cast`` (wrapped in `Cast`).

    `transitive=True`: with no direct link to `dest`'s node, relay it over
    the overlay (as `send`); `NotConnected` only when no route exists.
    """
    proc = current()
    proc.runtime.route(
        proc,
        dest,
        Cast(request),
        channel=channel,
        partition_key=partition_key,
        transitive=transitive,
    )


def broadcast(msg: Any, *, name: str, channel: str = "broadcast") -> None:
    """Deliver `msg` once to the actor registered as `name` on every live non-hidden node.

    Carried over the membership overlay (Plumtree; flooded for the static
    manager), this node included; a node without such an actor drops it and
    counts it (``unknown_name``). Never waits. Raises `NotConnected` on a
    node with no overlay (a hidden node, or one without a peer service),
    `ValueError` for an unknown channel.
    """
    runtime = current().runtime
    dist = runtime.dist
    broadcaster = None if dist is None else dist.broadcaster
    if broadcaster is None:
        raise NotConnected(
            f"broadcast: node {runtime.node!r} runs no membership overlay (hidden or standalone)"
        )
    broadcaster.broadcast(msg, name, channel)


@needs_loop("partisan.blocking.call(...)")
async def call(
    dest: Dest,
    request: Any,
    *,
    timeout: float | None = 5.0,
    channel: str = "default",
    partition_key: Any = None,
) -> Any:
    """Send a request and wait for the reply.

    Raises `CallExit(reason)` as soon as the callee is known dead (``noproc``,
    ``noconnection``, a crash...), `CallTimeout` after `timeout` seconds.
    """
    check_timeout(timeout, "call")
    proc = current()
    return await proc.runtime.call(
        proc, dest, request, timeout=timeout, channel=channel, partition_key=partition_key
    )


def reply(caller: From, value: Any) -> None:
    """Answer the `Call` whose ``caller`` is given (for actors that are not GenServers)."""
    proc = current()
    proc.runtime.reply(proc, caller, value)


def receive(match: Match = None, timeout: float | None = None) -> Awaitable[Any]:
    """``await receive(...)``: the first queued message matching `match`.

    `match` is a type, a tuple of types or a predicate; non-matching messages
    stay queued in order; `ReceiveTimeout` after `timeout` seconds. (A plain
    function returning the awaitable, to save a coroutine frame per waiting
    actor.)
    """
    check_timeout(timeout, "receive")
    return current().receive(match, timeout)


def monitor(target: Dest) -> Ref:
    """Monitor `target`: a `Down(ref, pid, reason)` arrives when it is gone (at once if it is)."""
    proc = current()
    return proc.runtime.monitor(proc, target)


def demonitor(ref: Ref, *, flush: bool = False) -> bool:
    """Stop monitoring; with `flush` also drop a `Down` already queued. True if it was active."""
    proc = current()
    return proc.runtime.demonitor(proc, ref, flush=flush)


def link(pid: Pid) -> None:
    """Link the current actor with `pid`: when one exits abnormally, so does the other."""
    if not isinstance(pid, Pid):
        raise TypeError(f"link: expected a Pid, got {pid!r}")
    proc = current()
    proc.runtime.link(proc, pid)


def unlink(pid: Pid) -> None:
    """Remove a link; no exit signal from it arrives afterwards."""
    proc = current()
    proc.runtime.unlink(proc, pid)


def exit(pid: Pid, reason: Any = "normal") -> None:  # Erlang's name, kept
    """Send an exit signal to `pid`. ``"kill"`` cannot be trapped; ``"normal"`` is ignored by others."""
    if not isinstance(pid, Pid):
        raise TypeError(f"exit: expected a Pid, got {pid!r}")
    proc = current()
    runtime = proc.runtime
    target = runtime.lookup(pid)
    if target is not None:
        if target is proc and not proc.is_main and reason != "kill" and not proc.trap_exit:
            raise ActorExit(reason)
        runtime.deliver_exit(target, proc.pid, reason, linked=False)
    elif pid.node != runtime.node and runtime.dist is not None:
        runtime.dist.send_exit(proc.pid, pid, reason, linked=False)


def trap_exit(enabled: bool = True) -> bool:
    """Turn exit signals into `Exit` messages for the current actor; returns the old flag."""
    proc = current()
    old = proc.trap_exit
    if not proc.is_main:
        proc.trap_exit = enabled
    return old


def register(name: str, pid: Pid | None = None) -> None:
    """Register a local actor under `name` (ValueError if taken or not a local live actor)."""
    proc = current()
    runtime = proc.runtime
    target = proc if pid is None else runtime.lookup(pid)
    if target is None:
        raise ValueError(f"register: {pid!r} is not a live actor of this node")
    runtime._check_name_free(name)
    if target.name is not None:
        raise ValueError(f"register: {target.pid!r} is already registered as {target.name!r}")
    target.name = name
    runtime.names[name] = target


def unregister(name: str) -> None:
    """Remove a registered name (KeyError if unknown)."""
    runtime = current().runtime
    target = runtime.names.pop(name)
    target.name = None


def whereis(name: str) -> Pid | None:
    """The Pid registered locally under `name`, or None."""
    target = current().runtime.names.get(name)
    return None if target is None else target.pid


def is_alive(pid: Pid) -> bool:
    """Exact for local pids; for remote ones False on a stale incarnation or a lost node."""
    runtime = current().runtime
    if pid.node == runtime.node:
        return runtime.lookup(pid) is not None
    return runtime.dist is not None and runtime.dist.may_be_alive(pid)


@needs_loop("partisan.blocking.ping(...)")
async def ping(target: Pid | str | tuple[str, str], *, timeout: float = 5.0) -> bool:
    """Ask the owner: True if the actor (or, for a node name, the node) answers in time."""
    check_timeout(timeout, "ping")
    runtime = current().runtime
    if isinstance(target, Pid) and target.node == runtime.node:
        return runtime.lookup(target) is not None
    if isinstance(target, str) and target == runtime.node:
        return True
    if isinstance(target, tuple) and target[1] == runtime.node:
        return target[0] in runtime.names
    if runtime.dist is None:
        return False
    return await runtime.dist.ping(target, timeout=timeout)


def monitor_node(node_name: str | None = None, enable: bool = True) -> None:
    """Subscribe to `NodeUp`/`NodeDown` for `node_name` (None: every non-hidden node).

    One message per transition. Monitoring a node that is not connected gives
    ``NodeDown(node, "noconnection")`` at once. ``enable=False`` unsubscribes.
    """
    proc = current()
    runtime = proc.runtime
    if runtime.dist is None:
        if enable and node_name is not None and node_name != runtime.node:
            proc.put(NodeDown(node_name, "noconnection"))
        return
    runtime.dist.monitor_node(proc, node_name, enable)


def send_after(delay: float, dest: Dest, msg: Any) -> Ref:
    """Send `msg` to `dest` after `delay` seconds; returns a ref for `cancel_timer`."""
    proc = current()
    return proc.runtime.send_after(proc, delay, dest, msg)


def cancel_timer(ref: Ref) -> bool:
    """Cancel a `send_after`; False if it already fired or was cancelled."""
    return current().runtime.cancel_timer(ref)


@needs_loop("partisan.blocking.rpc(...)")
async def rpc(
    node_name: str,
    fn: Callable[..., Any] | Callable[..., Awaitable[Any]],
    *args: Any,
    timeout: float = 5.0,
) -> Any:
    """Run ``fn(*args)`` on `node_name` (sync or async) and return its result.

    The remote exception is re-raised here with the remote traceback as a note;
    `CallExit("noconnection")` if the node is lost meanwhile.
    """
    check_timeout(timeout, "rpc")
    check_rpc_args(node_name, fn, args)
    runtime = current().runtime
    if node_name == runtime.node:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result
    if runtime.dist is None:
        raise NotConnected(f"no route to node {node_name!r}: this node is not distributed")
    return await runtime.dist.rpc(node_name, fn, args, timeout=timeout)

"""Monitors and calls: who waits for whose death, and the call protocol built on it.

A monitor is a `Watch` held in ``Runtime.watches`` by its owner, plus an entry
in the target's ``monitored_by`` (on the target's node). When the target
exits, `Runtime._exit` fires every entry: a local owner gets
`Down(ref, pid, reason)` in its mailbox; a remote one gets a `DownSig`
through the distribution layer. `demonitor` removes both halves, so no `Down`
arrives afterwards (and ``flush=True`` drops one already queued).

A call is a monitor whose holder is a Future instead of a mailbox (OTP's
gen:call monitors the server the same way): the callee's death, its node's
loss or an unknown target fail the Future with `CallExit(reason)` at once; the
reply resolves it and removes the monitor; a timer fails it with
`CallTimeout`. A reply that finds no pending call is a late reply: dropped
and counted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from partisan.actors.process import Process
from partisan.actors.signals import Call, Down, From, Ref, make_ref
from partisan.errors import CallExit, CallTimeout, NotConnected, Overloaded
from partisan.identity import Pid

if TYPE_CHECKING:
    import collections

    from partisan.actors.remote import Distribution
    from partisan.actors.runtime import Dest

__all__ = ["MonitorsAndCalls", "Watch"]


class Watch:
    """A monitor (or pending call) this node holds on `target`, living on `node`."""

    __slots__ = ("future", "node", "owner", "proc", "target")

    def __init__(
        self,
        owner: Process,
        target: Any,
        node: str,
        future: asyncio.Future[Any] | None = None,
        proc: Process | None = None,
    ) -> None:
        self.owner = owner
        self.target = target
        self.node = node
        self.future = future
        #: the local target process (saves resolving it again on demonitor)
        self.proc = proc


def _expire_call(future: asyncio.Future[Any], dest: Any, timeout: float) -> None:
    if not future.done():
        future.set_exception(CallTimeout(f"call to {dest!r} got no reply within {timeout} s"))


class MonitorsAndCalls:
    """The monitor and call half of `Runtime` (a mixin: state lives on the Runtime)."""

    if TYPE_CHECKING:  # provided by Runtime
        node: str
        incarnation: int
        watches: dict[Ref, Watch]
        dist: Distribution | None
        drops: collections.Counter[str]
        routed_local: int

        def lookup(self, pid: Pid) -> Process | None: ...
        def resolve_local(self, dest: Dest) -> Process | None: ...
        def is_local(self, dest: Dest) -> bool: ...
        def node_of(self, dest: Dest) -> str: ...

    # ---------------------------------------------------------- monitors

    def monitor(
        self, owner: Process, target: Dest, *, future: asyncio.Future[Any] | None = None
    ) -> Ref:
        """Monitor `target` for `owner`: a `Down` (or the future's `CallExit`) follows its death."""
        ref = make_ref(self.node, self.incarnation)
        node = self.node_of(target)
        if isinstance(target, str):
            target = (target, self.node)
        watch = Watch(owner, target, node, future)
        if node == self.node:
            proc = self.resolve_local(target)
            if proc is None:
                self._add_watch(ref, watch, owner)
                self.fire(ref, target, "noproc")
                return ref
            watch.proc = proc
            self._add_watch(ref, watch, owner)
            if proc.monitored_by is None:
                proc.monitored_by = {}
            proc.monitored_by[ref] = owner.pid
            return ref
        self._add_watch(ref, watch, owner)
        if self.dist is None:
            self.fire(ref, target, "noconnection")
        else:
            self.dist.monitor(ref, owner, target)
        return ref

    def _add_watch(self, ref: Ref, watch: Watch, owner: Process) -> None:
        self.watches[ref] = watch
        if owner.watching is None:
            owner.watching = set()
        owner.watching.add(ref)
        if self.dist is not None and watch.node != self.node:
            self.dist.index_watch(ref, watch.node)

    def demonitor(self, owner: Process, ref: Ref, *, flush: bool = False) -> bool:
        """Remove monitor `ref`; True if it was active. `flush` drops a queued Down too."""
        watch = self.watches.get(ref)
        active = watch is not None and watch.owner is owner
        if active:
            self.demonitor_any(ref)
        if flush:
            owner.take(lambda msg: isinstance(msg, Down) and msg.ref == ref)
        return active

    def _unwatch(self, ref: Ref, watch: Watch) -> None:
        if watch.owner.watching is not None:
            watch.owner.watching.discard(ref)
        if self.dist is not None and watch.node != self.node:
            self.dist.unindex_watch(ref, watch.node)

    def notify_down(self, ref: Ref, watcher: Pid, pid: Any, reason: Any, via_name: Any) -> None:
        """Tell `watcher` (local or remote) that the actor it monitors with `ref` is gone."""
        if watcher.node == self.node:
            self.fire(ref, pid, reason)
        elif self.dist is not None:
            self.dist.send_down(watcher, ref, pid, reason)

    def fire(self, ref: Ref, pid: Any, reason: Any) -> None:
        """A monitored target is gone: deliver `Down` or fail the pending call."""
        watch = self.watches.pop(ref, None)
        if watch is None:
            return  # demonitored meanwhile
        self._unwatch(ref, watch)
        if watch.future is not None:
            if not watch.future.done():
                watch.future.set_exception(CallExit(reason, watch.target))
        elif watch.owner.alive:
            shown = watch.target if not isinstance(watch.target, Pid) else pid
            watch.owner.put(Down(ref, shown, reason))

    # ------------------------------------------------------------- calls

    async def call(
        self,
        caller: Process,
        dest: Dest,
        request: Any,
        *,
        timeout: float | None,
        channel: str = "default",
        partition_key: Any = None,
    ) -> Any:
        """Send `Call(From, request)` to `dest` and wait for `reply`; fail fast if it dies.

        One Future, one timer handle and no other await on the way (no
        `asyncio.timeout` context, no coroutine for the send).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.is_local(dest):
            target = self.resolve_local(dest)
            if target is None:
                self.drops["noproc" if isinstance(dest, Pid) else "unknown_name"] += 1
                raise CallExit("noproc", dest)
            if target is caller:
                raise CallExit("calling_self", dest)
            # the monitor, inlined; not in caller.watching: the finally below removes it
            ref = make_ref(self.node, self.incarnation)
            self.watches[ref] = Watch(caller, target.pid, self.node, future, target)
            monitored_by = target.monitored_by
            if monitored_by is None:
                monitored_by = target.monitored_by = {}
            monitored_by[ref] = caller.pid
            target.put(Call(From(caller.pid, ref), request))
            self.routed_local += 1
        else:
            if self.dist is None:
                raise NotConnected(f"no route to node {self.node_of(dest)!r}")
            ref = make_ref(self.node, self.incarnation)
            key = caller.pid if partition_key is None else partition_key
            pending = self.dist.call(
                ref, caller, dest, request, future, channel=channel, partition_key=key
            )
            if pending is not None:  # Overloaded: wait for room within the call's timeout
                started = loop.time()
                try:
                    await self.dist.call_wait(
                        ref, pending, channel=channel, partition_key=key, timeout=timeout
                    )
                except Overloaded:
                    raise CallTimeout(
                        f"no room to send the call to {dest!r} within {timeout} s"
                    ) from None
                if timeout is not None:
                    timeout = max(0.0, timeout - (loop.time() - started))
        timer = None
        if timeout is not None:
            timer = loop.call_later(timeout, _expire_call, future, dest, timeout)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()
            if ref in self.watches:
                self.demonitor_any(ref)

    def reply(self, replier: Process | None, caller: From, value: Any) -> None:
        """Answer the call `caller` with `value` (from any actor, on any node)."""
        if caller.pid.node == self.node:
            if caller.pid.incarnation != self.incarnation:
                self.drops["stale_incarnation"] += 1
                return
            self.on_reply(caller.ref, value, demonitored=False)
        elif self.dist is not None:
            key = replier.pid if replier is not None else None
            self.dist.send_reply(caller, value, partition_key=key)

    def on_reply(self, ref: Ref, value: Any, *, demonitored: bool) -> None:
        """A reply reached this node: resolve the pending call or count a late reply."""
        watch = self.watches.get(ref)
        if watch is None or watch.future is None:
            self.drops["late_reply"] += 1
            return
        future = watch.future
        if demonitored:
            # the callee's node already dropped its side of the monitor
            del self.watches[ref]
            self._unwatch(ref, watch)
        else:
            self.demonitor_any(ref)
        if not future.done():
            future.set_result(value)

    def demonitor_any(self, ref: Ref) -> None:
        """Remove monitor `ref` whoever holds it."""
        watch = self.watches.get(ref)
        if watch is None:
            return
        del self.watches[ref]
        self._unwatch(ref, watch)
        if watch.node == self.node:
            proc = watch.proc
            if proc is not None and proc.monitored_by is not None:
                proc.monitored_by.pop(ref, None)
        elif self.dist is not None:
            self.dist.demonitor(ref, watch.node, watch.target)

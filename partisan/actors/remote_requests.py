"""Request/response services between runtimes: remote spawn, rpc and ping.

Both halves live here. The asking side keeps a Future per request, indexed
by the node asked, so losing that node fails the request at once with
`CallExit("noconnection")`; a timeout gives `CallTimeout`. The answering side
runs each request in a helper task it keeps a strong reference to, and
answers even when the code cannot be loaded or raises: a `SpawnError` or the
remote exception (with its traceback as a note) reaches the caller instead
of a silent timeout.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import traceback
from typing import TYPE_CHECKING, Any

from partisan.actors import envelopes as env
from partisan.actors.process import Process, _current
from partisan.actors.runtime import Watch, crashed_from
from partisan.actors.signals import Crashed, Ref, make_ref
from partisan.actors.spawning import check_spawnable, spawn_local
from partisan.errors import AlreadyStarted, CallExit, CallTimeout, NotConnected, SpawnError
from partisan.identity import NodeSpec, Pid

if TYPE_CHECKING:
    from partisan.actors.remote import Distribution

__all__ = ["Requests"]

logger = logging.getLogger(__name__)


class Requests:
    """Pending outbound requests and the handlers for inbound ones."""

    def __init__(self, dist: Distribution) -> None:
        self.dist = dist
        self.pending: dict[Ref, tuple[asyncio.Future[Any], str]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        #: node -> spawn/rpc requests we are serving for it (they pin its link)
        self.serving: dict[str, int] = {}

    # ------------------------------------------------------- asking side

    async def _ask(self, node: str, make: Any, key: Any, timeout: float | None) -> Any:
        dist = self.dist
        if node not in dist.up:
            dist.on_demand.route(node)  # dials a known node; NotConnected for an unknown one
        runtime = dist.runtime
        ref = make_ref(runtime.node, runtime.incarnation)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[ref] = (future, node)
        try:
            if not dist.post(node, make(ref), key):
                raise NotConnected(f"could not send the request to node {node!r}")
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise CallTimeout(f"node {node!r} did not answer within {timeout} s") from None
        finally:
            self.pending.pop(ref, None)

    def _answer(self, ref: Ref, value: Any = None, exc: BaseException | None = None) -> None:
        entry = self.pending.pop(ref, None)
        if entry is None:
            self.dist.runtime.drops["late_reply"] += 1
            return
        future = entry[0]
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def node_down(self, node: str) -> None:
        for ref, (future, asked) in list(self.pending.items()):
            if asked == node:
                del self.pending[ref]
                if not future.done():
                    future.set_exception(CallExit("noconnection"))

    async def spawn(
        self,
        proc: Process,
        node: str,
        fn: Any,
        args: tuple[Any, ...],
        *,
        link: bool,
        monitor: bool,
        name: str | None,
        timeout: float | None,
    ) -> Pid:
        try:
            code = env.ship((fn, args))
        except Exception as exc:
            raise SpawnError(f"cannot serialize {fn!r} for node {node!r}: {exc}") from exc
        runtime = self.dist.runtime
        monitor_ref = make_ref(runtime.node, runtime.incarnation) if monitor else None
        watch: Watch | None = None
        if monitor_ref is not None:
            watch = Watch(proc, None, node)
            runtime._add_watch(monitor_ref, watch, proc)
        try:
            pid: Pid = await self._ask(
                node,
                lambda ref: env.SpawnReq(ref, proc.pid, code, link, monitor_ref, name, timeout),
                proc.pid,
                timeout,
            )
        except BaseException:
            if monitor_ref is not None:
                runtime.demonitor_any(monitor_ref)
            raise
        if watch is not None:
            watch.target = pid
        return pid

    async def rpc(self, node: str, fn: Any, args: tuple[Any, ...], timeout: float | None) -> Any:
        try:
            code = env.ship((fn, args))
        except Exception as exc:
            raise SpawnError(f"cannot serialize {fn!r} for node {node!r}: {exc}") from exc
        return await self._ask(node, lambda ref: env.RpcReq(ref, code), None, timeout)

    async def ping(self, target: Any, timeout: float | None) -> bool:
        dist = self.dist
        wire: env.Target | None
        if isinstance(target, Pid):
            node, wire = target.node, target
            if not dist.may_be_alive(target):
                return False
        elif isinstance(target, tuple):
            node, wire = target[1], target[0]
        else:
            node, wire = target, None
        if node not in dist.up and not dist.on_demand.ensure_link(node):
            return False
        try:
            return bool(await self._ask(node, lambda ref: env.PingReq(ref, wire), None, timeout))
        except (CallTimeout, CallExit, NotConnected):
            return False

    # ---------------------------------------------------- answering side

    def handle(self, sender: NodeSpec, msg: Any) -> None:
        kind = type(msg)
        if kind is env.SpawnReply:
            if msg.pid is not None:
                self._answer(msg.ref, msg.pid)
            elif msg.already is not None:
                self._answer(msg.ref, exc=AlreadyStarted(msg.error or "?", msg.already))
            else:
                self._answer(
                    msg.ref, exc=SpawnError(msg.error or "spawn failed", msg.traceback_text)
                )
        elif kind is env.RpcReply:
            self._answer(msg.ref, *self._rpc_outcome(msg))
        elif kind is env.PingReply:
            self._answer(msg.ref, msg.alive)
        elif kind is env.PingReq:
            alive = msg.target is None or self.dist._resolve(msg.target) is not None
            self.dist.post(sender.name, env.PingReply(msg.ref, alive), None)
        elif kind is env.SpawnReq:
            self._start(self._serve_spawn(sender, msg), sender.name)
        elif kind is env.RpcReq:
            self._start(self._serve_rpc(sender, msg), sender.name)
        else:
            self.dist.runtime.drops["unknown_control"] += 1
            logger.warning("dropped unknown control message %s from %s", kind.__name__, sender)

    def _start(self, coro: Any, node: str) -> None:
        # run as the node's main pseudo-actor, whatever context the transport calls us in
        context = contextvars.copy_context()
        context.run(_current.set, self.dist.runtime.main)
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self.tasks.add(task)
        self.serving[node] = self.serving.get(node, 0) + 1  # pins the asker's link

        def done(task: asyncio.Task[Any]) -> None:
            self.tasks.discard(task)
            left = self.serving.get(node, 1) - 1
            if left > 0:
                self.serving[node] = left
            else:
                self.serving.pop(node, None)

        task.add_done_callback(done)

    def _rpc_outcome(self, msg: env.RpcReply) -> tuple[Any, BaseException | None]:
        if msg.ok:
            return msg.value, None
        exc: BaseException | None = None
        if msg.error is not None:
            try:
                loaded = env.unship(msg.error)
                if isinstance(loaded, BaseException):
                    exc = loaded
            except Exception:
                exc = None
        if exc is None:
            exc = CallExit(Crashed("RemoteError", msg.error_text or "", msg.traceback_text or ""))
        elif msg.traceback_text:
            exc.add_note(f"--- remote traceback ---\n{msg.traceback_text}")
        return None, exc

    async def _serve_spawn(self, sender: NodeSpec, req: env.SpawnReq) -> None:
        dist = self.dist
        runtime = dist.runtime
        try:
            fn, args = env.unship(req.code)
            check_spawnable(fn)
        except Exception as exc:
            text = traceback.format_exc()
            dist.post(
                sender.name, env.SpawnReply(req.ref, None, f"cannot load code: {exc!r}", text), None
            )
            return
        try:
            pid = await spawn_local(
                runtime,
                fn,
                args,
                parent=req.caller,
                link=req.link,
                name=req.name,
                timeout=req.timeout,
            )
        except AlreadyStarted as exc:
            reply = env.SpawnReply(req.ref, None, exc.name, already=exc.pid)  # type: ignore[arg-type]
            dist.post(sender.name, reply, None)
            return
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            crash_text: str | None = None
            if not isinstance(exc, CallExit):
                crash_text = crashed_from(exc).traceback_text
            dist.post(
                sender.name,
                env.SpawnReply(req.ref, None, f"spawn failed: {exc!r}", crash_text),
                None,
            )
            return
        if req.monitor_ref is not None:
            proc = runtime.lookup(pid)
            if proc is None:
                dist.post(sender.name, env.DownSig(req.monitor_ref, pid, "noproc"), pid)
            else:
                dist._add_in_monitor(req.monitor_ref, proc, req.caller)
        dist.post(sender.name, env.SpawnReply(req.ref, pid), pid)

    async def _serve_rpc(self, sender: NodeSpec, req: env.RpcReq) -> None:
        dist = self.dist
        try:
            fn, args = env.unship(req.code)
            result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            text = traceback.format_exc()
            try:
                shipped: env.Shipped | None = env.ship(exc)
            except Exception:
                shipped = None
            dist.post(
                sender.name, env.RpcReply(req.ref, False, None, shipped, repr(exc), text), None
            )
            return
        if not dist.post(sender.name, env.RpcReply(req.ref, True, result), None):
            dist.post(
                sender.name,
                env.RpcReply(req.ref, False, error_text=f"cannot send the result {result!r}"),
                None,
            )

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(CallExit("shutdown"))
                future.exception()
        self.pending.clear()

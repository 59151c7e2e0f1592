"""Inbound half of `Distribution`: frames from peers become local runtime operations.

User messages arrive addressed to ``str(pid)`` or a registered name and go
straight into the mailbox (a Pid of another incarnation is dropped and
counted as ``stale_incarnation``; an unknown one as ``noproc`` or
``unknown_name``). Control envelopes arrive at ``"$runtime"``: calls and
replies as tuples (the hot path), the rest as dataclasses. A malformed
envelope from an (authenticated) peer is counted as ``bad_control`` and
logged; it never takes the node down.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from partisan.actors import envelopes as env
from partisan.actors.process import Process
from partisan.actors.signals import Call, From, Ref
from partisan.delivery.acked import Ack
from partisan.delivery.streams import ACKED_DEST
from partisan.identity import NodeSpec, Pid

if TYPE_CHECKING:
    from partisan.actors.on_demand import OnDemand
    from partisan.actors.remote_requests import Requests
    from partisan.actors.runtime import Runtime

__all__ = ["RUNTIME_DEST", "Inbound"]

logger = logging.getLogger(__name__)

RUNTIME_DEST = "$runtime"
_PID_PREFIX = "partisan:pid:"
_PID_CACHE_MAX = 10_000


class Inbound:
    """What `Distribution` does with each frame a peer sends (a mixin)."""

    #: The transport's `InboundGauge` (set by the Node): what a peer's message
    #: queued in a mailbox holds against the node's `inbound_buffer_bytes`.
    gauge: Any = None

    if TYPE_CHECKING:  # provided by Distribution
        runtime: Runtime
        requests: Requests
        on_demand: OnDemand
        delivery: Any
        in_monitors: dict[Ref, Process]
        in_by_node: defaultdict[str, set[Ref]]
        remote_links: defaultdict[str, set[tuple[Pid, Pid]]]
        _pid_cache: dict[str, Pid]
        _pid_tuples: dict[tuple[Any, ...], Pid]

        def post(
            self, node: str, envelope: Any, partition_key: Any, channel: str = "default"
        ) -> bool: ...

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: Any) -> None:
        """A frame for an actor (or ``$runtime``) arrived from `sender` (LinkHandler)."""
        runtime = self.runtime
        if dest == RUNTIME_DEST:
            try:
                if type(payload) is tuple:  # a call or a reply: `_control`'s first case
                    self._hot(sender, payload)
                else:
                    self._control(sender, payload)
            except Exception:  # an authenticated peer's malformed envelope: count, never crash
                runtime.drops["bad_control"] += 1
                logger.exception("bad control message from %s", sender)
            return
        if dest == ACKED_DEST:
            self._acked(sender, payload)
            return
        runtime.received_remote += 1
        if dest.startswith(_PID_PREFIX):
            pid = self._pid_cache.get(dest)
            if pid is None:
                try:
                    pid = Pid.parse(dest)
                except ValueError:
                    runtime.drops["bad_destination"] += 1
                    return
                if len(self._pid_cache) >= _PID_CACHE_MAX:
                    self._pid_cache.clear()
                self._pid_cache[dest] = pid
            if pid.node != runtime.node or pid.incarnation != runtime.incarnation:
                runtime.drops["stale_incarnation"] += 1
                return
            proc = runtime.processes.get(pid.id)
            if proc is None:
                runtime.drops["noproc"] += 1
                return
        else:
            proc = runtime.names.get(dest)
            if proc is None:
                runtime.drops["unknown_name"] += 1
                return
        gauge = self.gauge
        if gauge is None:
            proc.put(payload)
        else:
            proc.put_held(payload, gauge)

    def _acked(self, sender: NodeSpec, wire: Any) -> None:
        """Data of an acked channel (a plain tuple, `partisan.delivery.streams.Data`)."""
        delivery = self.delivery
        if delivery is None:
            self.runtime.drops["not_acked_here"] += 1
            return
        try:
            if type(wire) is not tuple:
                raise TypeError(f"not a tuple: {type(wire).__name__}")
            delivery.on_data(sender, wire)
        except TypeError:  # an authenticated peer's malformed tuple: count, never crash
            self.runtime.drops["bad_control"] += 1
            logger.warning("bad acked data from %s: %.200r", sender, wire)

    def _cache_pid(self, wire: tuple[Any, ...]) -> Pid:
        pid = Pid(*wire)  # a malformed tuple raises here: the caller counts bad_control
        if len(self._pid_tuples) >= _PID_CACHE_MAX:
            self._pid_tuples.clear()
        self._pid_tuples[wire] = pid
        return pid

    def _resolve(self, target: Any) -> Process | None:
        if isinstance(target, Pid):
            return self.runtime.lookup(target)
        if isinstance(target, str):
            return self.runtime.names.get(target)
        return None

    def _shown(self, target: Any) -> Any:
        return target if isinstance(target, Pid) else (target, self.runtime.node)

    def _add_in_monitor(self, ref: Ref, proc: Process, watcher: Pid) -> None:
        if proc.monitored_by is None:
            proc.monitored_by = {}
        proc.monitored_by[ref] = watcher
        self.in_monitors[ref] = proc
        self.in_by_node[watcher.node].add(ref)

    def _hot(self, sender: NodeSpec, msg: tuple[Any, ...]) -> None:
        """A call or a reply (tuples, see `envelopes.CALL`)."""
        runtime = self.runtime
        tag = msg[0]
        if tag == env.REPLY:
            _, ref, value, demonitored = msg
            runtime.on_reply(Ref(*ref), value, demonitored=demonitored)
        elif tag == env.CALL:
            _, ref_t, caller_t, target, request = msg
            ref = Ref(*ref_t)
            # A frozen dataclass costs ~1 us to build; the same callers and
            # targets recur, so their Pids are cached by wire tuple.
            cache = self._pid_tuples
            caller = cache.get(caller_t)
            if caller is None:
                caller = self._cache_pid(caller_t)
            if type(target) is tuple:
                pid = cache.get(target)
                target = pid if pid is not None else self._cache_pid(target)
            proc = self._resolve(target)
            if proc is None:
                runtime.drops["noproc" if isinstance(target, Pid) else "unknown_name"] += 1
                self.post(sender.name, env.DownSig(ref, self._shown(target), "noproc"), None)
                return
            self._add_in_monitor(ref, proc, caller)
            gauge = self.gauge
            if gauge is None:
                proc.put(Call(From(caller, ref), request))
            else:
                proc.put_held(Call(From(caller, ref), request), gauge)
            runtime.received_remote += 1
        else:
            runtime.drops["bad_control"] += 1

    def _control(self, sender: NodeSpec, msg: Any) -> None:
        runtime = self.runtime
        kind = type(msg)
        if kind is tuple:
            self._hot(sender, msg)
        elif kind is env.MonitorReq:
            proc = self._resolve(msg.target)
            if proc is None:
                self.post(
                    sender.name, env.DownSig(msg.ref, self._shown(msg.target), "noproc"), None
                )
            else:
                self._add_in_monitor(msg.ref, proc, msg.watcher)
        elif kind is env.DemonitorReq:
            proc = self.in_monitors.pop(msg.ref, None)
            if proc is not None and proc.monitored_by is not None:
                proc.monitored_by.pop(msg.ref, None)
            self.in_by_node[sender.name].discard(msg.ref)
        elif kind is env.DownSig:
            watch = runtime.watches.get(msg.ref)
            owner = watch.owner if watch is not None and watch.future is None else None
            queued = len(owner) if owner is not None else 0
            runtime.fire(msg.ref, msg.pid, msg.reason)
            if owner is not None and self.gauge is not None and len(owner) > queued:
                owner.hold_last(self.gauge)  # the Down it queued counts as unread
        elif kind is env.LinkReq:
            proc = runtime.lookup(msg.dst)
            if proc is None:
                self.post(sender.name, env.ExitSig(msg.dst, msg.src, "noproc", True), msg.dst)
            else:
                proc.add_link(msg.src)
                self.remote_links[sender.name].add((proc.pid, msg.src))
        elif kind is env.UnlinkReq:
            proc = runtime.lookup(msg.dst)
            if proc is not None and proc.links is not None:
                proc.links.discard(msg.src)
            self.remote_links[sender.name].discard((msg.dst, msg.src))
        elif kind is env.ExitSig:
            proc = runtime.lookup(msg.dst)
            if proc is None:
                runtime.drops["noproc"] += 1
                return
            if msg.linked:
                self.remote_links[sender.name].discard((msg.dst, msg.src))
            queued = len(proc)
            runtime.deliver_exit(proc, msg.src, msg.reason, linked=msg.linked)
            if self.gauge is not None and len(proc) > queued:
                proc.hold_last(self.gauge)  # the Exit it queued counts as unread
        elif kind is env.CloseReq:
            self.on_demand.on_close_req(sender)
        elif kind is env.CloseAck:
            self.on_demand.on_close_ack(sender, msg.ok is True)
        elif kind is env.CloseCancel:
            self.on_demand.on_close_cancel(sender)
        elif kind is Ack:
            delivery = self.delivery
            if delivery is None:
                runtime.drops["not_acked_here"] += 1
            else:
                delivery.on_ack(sender, msg)
        else:
            self.requests.handle(sender, msg)

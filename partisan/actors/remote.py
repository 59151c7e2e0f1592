"""Distribution: the actor runtime across nodes (the node's `LinkHandler`).

Theory of operation
-------------------
`Distribution` sits between one `Runtime` and the transport (`Links`, or the
in-memory `MemoryNetwork` in tests). Outbound, the runtime hands it whatever
concerns another node: user messages (sent to ``str(pid)`` or a name), and
the envelopes of `partisan.actors.envelopes` for monitors, links, exit
signals, calls, replies, spawn, rpc and ping (sent to ``"$runtime"``).
Inbound, `on_message` turns them back into local runtime operations.

Failure handling is where Partisan has gaps we close (reference §4.4-4.5):

* Every remote monitor, pending call, link and request is indexed by the
  node it depends on. When the transport reports `on_peer_down`, each one
  fires exactly once with ``noconnection`` — a pending call raises
  `CallExit("noconnection")` immediately, not at its timeout — and
  `monitor_node` subscribers get one `NodeDown`.
* Pids carry the incarnation. A peer's new incarnation (a HELLO from a
  restarted node, possibly without a down in between) is a down of the old
  one with reason ``restarted``; Pids of the old incarnation are dead:
  messages to them are dropped and counted, monitors give ``noproc``.
* Links work across nodes (Partisan has none), monitors work whatever the
  membership manager, and an unknown target answers a monitor, link or call
  with ``noproc`` instead of silence.

Up/down transitions are de-duplicated so that `NodeUp`/`NodeDown` arrive
exactly once per transition whatever the transport reports; that half (peer
liveness, its transitions and the views on it) is the `NodeEvents` mixin of
`remote_nodes.py`. This module holds the state and the outbound operations.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from partisan.actors import envelopes as env
from partisan.actors.on_demand import QUEUED, RELAYED, OnDemand
from partisan.actors.process import Process
from partisan.actors.remote_acked import AckedSends
from partisan.actors.remote_inbound import RUNTIME_DEST, Inbound
from partisan.actors.remote_nodes import NodeEvents
from partisan.actors.remote_requests import Requests
from partisan.actors.runtime import Dest, Runtime, Watch
from partisan.actors.signals import From, Ref
from partisan.errors import CallExit, NotConnected, Overloaded
from partisan.identity import NodeSpec, Pid

__all__ = ["RUNTIME_DEST", "Distribution"]

logger = logging.getLogger(__name__)


class Distribution(NodeEvents, AckedSends, Inbound):
    """One node's remote half of the actor runtime; implements LinkHandler."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.links: Any = None  # the transport, set by the Node before start
        runtime.dist = self
        self.up: dict[str, NodeSpec] = {}
        #: the last spec each node had while linked (connect-on-use dials parked nodes there)
        self.specs: dict[str, NodeSpec] = {}
        #: the membership view (`partisan.members()`), set by the Node when a manager runs
        self.members_of: Any = None
        self.hidden: set[str] = set()
        self.incarnations: dict[str, int] = {}
        #: peers whose link closed for a view change (no NodeDown): name -> incarnation
        self.parked: dict[str, int] = {}
        #: nodes seen failing and not back since: operations on them raise NotConnected
        self.down: set[str] = set()
        #: node -> refs of monitors/calls held here on that node's actors
        self.watch_index: defaultdict[str, set[Ref]] = defaultdict(set)
        #: ref -> local process monitored by a remote watcher; and by watcher node
        self.in_monitors: dict[Ref, Process] = {}
        self.in_by_node: defaultdict[str, set[Ref]] = defaultdict(set)
        #: node -> {(local pid, remote pid)} links that cross to that node
        self.remote_links: defaultdict[str, set[tuple[Pid, Pid]]] = defaultdict(set)
        #: monitor_node subscribers: node name (None = all visible) -> processes
        self.node_subs: defaultdict[str | None, set[Process]] = defaultdict(set)
        self._pid_cache: dict[str, Pid] = {}
        self._pid_tuples: dict[tuple[Any, ...], Pid] = {}
        self._last_pid: Pid | None = None
        self._last_wire = ""
        self.requests: Requests = Requests(self)
        #: Relays `transitive=True` sends over the overlay (set by the Node; None: no relay).
        self.relay: Any = None
        self.on_demand = OnDemand(self)
        self._waiting = self.on_demand.queues  # node -> messages waiting for its link
        #: Carries `partisan.broadcast` over the overlay (set by the Node; None: no overlay).
        self.broadcaster: Any = None
        #: The event log's writer (set by the Node; None: no event log).
        self.record: Any = None

    # ---------------------------------------------------------- incarnations

    def _stale(self, pid: Pid) -> bool:
        known = self.incarnations.get(pid.node)
        return known is not None and pid.incarnation < known

    # ------------------------------------------------------- outbound

    def post(self, node: str, envelope: Any, partition_key: Any, channel: str = "default") -> bool:
        """Send a control envelope; never raises.

        Control envelopes have no caller to refuse, so the transport queues
        them on their lane even over the peer's send budget (``control=True``),
        behind what that lane holds: one ordered path per lane for every
        message kind. Other failures are counted and logged.
        """
        how: str | None = None
        if node in self._waiting or node not in self.up:
            try:
                how = self.on_demand.route(node)
            except NotConnected:
                self.runtime.drops["control_not_connected"] += 1
                return False
            if how is not QUEUED and how is not RELAYED:
                how = None
        try:
            if how is QUEUED:
                item = (channel, RUNTIME_DEST, envelope, partition_key)
                self.on_demand.enqueue(node, item, control=True)
            elif how is RELAYED:
                self.relay.forward(node, channel, RUNTIME_DEST, envelope, partition_key)
            else:
                self.links.send(
                    node, channel, RUNTIME_DEST, envelope, partition_key=partition_key, control=True
                )
        except NotConnected:
            self.runtime.drops["control_not_connected"] += 1
            return False
        except Exception as exc:
            self.runtime.drops["control_send_failed"] += 1
            logger.warning("could not send %s to %s: %s", type(envelope).__name__, node, exc)
            return False
        return True

    def send(
        self, dest: Dest, msg: Any, channel: str, partition_key: Any, transitive: bool = False
    ) -> None:
        """Send a user message to an actor on another node (raises NotConnected/Overloaded)."""
        if self.reliable and channel in self.reliable:
            self._send_acked(dest, msg, channel, partition_key, transitive, None)
            return
        if type(dest) is Pid:  # the hot path of casts; `_stale`, inlined
            node = dest.node
            known = self.incarnations.get(node)
            if known is not None and dest.incarnation < known:
                self.runtime.drops["stale_incarnation"] += 1
                return
            # A stream of sends usually targets one Pid object: remember its
            # wire name by identity (Pids are immutable) instead of
            # formatting it per message.
            if dest is self._last_pid:
                wire_dest = self._last_wire
            else:
                wire_dest = self._last_wire = str(dest)
                self._last_pid = dest
        elif isinstance(dest, Pid):
            if self._stale(dest):
                self.runtime.drops["stale_incarnation"] += 1
                return
            node, wire_dest = dest.node, str(dest)
        else:
            node, wire_dest = dest[1], dest[0]
        if (node in self._waiting or node not in self.up) and self._indirect(
            node, channel, wire_dest, msg, partition_key, transitive
        ):
            return
        self.links.send(node, channel, wire_dest, msg, partition_key=partition_key)
        self.runtime.routed_remote += 1

    def _indirect(
        self, node: str, channel: str, dest: str, msg: Any, key: Any, transitive: bool
    ) -> bool:
        """Queue behind a dial or relay (True), or say the link is there (False).

        Raises `NotConnected` when `node` cannot be reached at all.
        """
        how = self.on_demand.route(node, transitive=transitive)
        if how is QUEUED:
            self.on_demand.enqueue(node, (channel, dest, msg, key), control=False)
        elif how is RELAYED:
            # relay.forward(node, channel, dest, msg, key) raises NotConnected without a route
            self.relay.forward(node, channel, dest, msg, key)
        else:
            return False
        self.runtime.routed_remote += 1
        return True

    async def send_wait(
        self, dest: Dest, msg: Any, *, channel: str, partition_key: Any, timeout: float | None
    ) -> None:
        """Like `send`, waiting for room in the peer's send budget.

        On an acked channel, waits until the receiving node acknowledged
        (`DeliveryError` if it never will).
        """
        if self.reliable and channel in self.reliable:
            await self._send_acked_wait(dest, msg, channel, partition_key, timeout)
            return
        if isinstance(dest, Pid):
            if self._stale(dest):
                self.runtime.drops["stale_incarnation"] += 1
                return
            node, wire_dest = dest.node, str(dest)
        else:
            node, wire_dest = dest[1], dest[0]
        if (node in self._waiting or node not in self.up) and self._indirect(
            node, channel, wire_dest, msg, partition_key, False
        ):
            return
        await self.links.send_wait(
            node, channel, wire_dest, msg, partition_key=partition_key, timeout=timeout
        )
        self.runtime.routed_remote += 1

    def index_watch(self, ref: Ref, node: str) -> None:
        self.watch_index[node].add(ref)

    def unindex_watch(self, ref: Ref, node: str) -> None:
        refs = self.watch_index.get(node)
        if refs is not None:
            refs.discard(ref)

    def monitor(self, ref: Ref, owner: Process, target: Dest) -> None:
        """Ask `target`'s node to monitor it for `owner` (the Watch is already registered)."""
        node = self.runtime.node_of(target)
        if isinstance(target, Pid) and self._stale(target):
            self.runtime.fire(ref, target, "noproc")
            return
        wire = target if isinstance(target, Pid) else target[0]
        if not self.post(node, env.MonitorReq(ref, owner.pid, wire), owner.pid):
            self.runtime.fire(ref, target, "noconnection")

    def demonitor(self, ref: Ref, node: str, target: Any) -> None:
        self.post(node, env.DemonitorReq(ref), target if isinstance(target, Pid) else None)

    def send_down(self, watcher: Pid, ref: Ref, pid: Any, reason: Any) -> None:
        """A local actor monitored from another node is gone: tell the watcher's node."""
        self.in_monitors.pop(ref, None)
        refs = self.in_by_node.get(watcher.node)
        if refs is not None:
            refs.discard(ref)
        self.post(watcher.node, env.DownSig(ref, pid, reason), pid)

    def link(self, proc: Process, other: Pid) -> None:
        self.remote_links[other.node].add((proc.pid, other))
        if self._stale(other):
            self.runtime.deliver_exit(proc, other, "noproc", linked=True)
        elif not self.post(other.node, env.LinkReq(proc.pid, other), proc.pid):
            self.remote_links[other.node].discard((proc.pid, other))
            self.runtime.deliver_exit(proc, other, "noconnection", linked=True)

    def unlink(self, proc: Process, other: Pid) -> None:
        self.remote_links[other.node].discard((proc.pid, other))
        self.post(other.node, env.UnlinkReq(proc.pid, other), proc.pid)

    def send_exit(self, src: Pid, dst: Pid, reason: Any, *, linked: bool) -> None:
        if linked:
            self.remote_links[dst.node].discard((src, dst))
        if not self._stale(dst):
            self.post(dst.node, env.ExitSig(src, dst, reason, linked), src)

    def call(
        self,
        ref: Ref,
        caller: Process,
        dest: Dest,
        request: Any,
        future: asyncio.Future[Any],
        *,
        channel: str,
        partition_key: Any,
    ) -> tuple[str, Any] | None:
        """Register the call's monitor and send it.

        Returns None when sent, or ``(node, envelope)`` when the peer's send
        budget is used up (`Overloaded`): the caller then awaits `call_wait`.
        """
        runtime = self.runtime
        if type(dest) is Pid:
            node: str = dest.node
            known = self.incarnations.get(node)
            if known is not None and dest.incarnation < known:  # `_stale`, inlined
                runtime.drops["stale_incarnation"] += 1
                raise CallExit("noproc", dest)
        else:
            node = runtime.node_of(dest)
            if isinstance(dest, Pid) and self._stale(dest):
                runtime.drops["stale_incarnation"] += 1
                raise CallExit("noproc", dest)
        how = None
        if node in self._waiting or node not in self.up:
            how = self.on_demand.route(node)  # NotConnected when there is no way at all
        wire: env.Target = dest if isinstance(dest, Pid) else dest[0]
        runtime._add_watch(ref, Watch(caller, dest, node, future), caller)
        envelope = env.call_envelope(ref, caller.pid, wire, request)
        try:
            if how is QUEUED:
                item = (channel, RUNTIME_DEST, envelope, partition_key)
                self.on_demand.enqueue(node, item, control=True)
            elif how is RELAYED:
                self.relay.forward(node, channel, RUNTIME_DEST, envelope, partition_key)
            else:
                self.links.send(node, channel, RUNTIME_DEST, envelope, partition_key=partition_key)
        except Overloaded:
            return node, envelope
        except BaseException:
            self.runtime.demonitor_any(ref)
            raise
        self.runtime.routed_remote += 1
        return None

    async def call_wait(
        self,
        ref: Ref,
        pending: tuple[str, Any],
        *,
        channel: str,
        partition_key: Any,
        timeout: float | None,
    ) -> None:
        """Send a call that met `Overloaded`, waiting for room (within the call's timeout)."""
        node, envelope = pending
        try:
            await self.links.send_wait(
                node, channel, RUNTIME_DEST, envelope, partition_key=partition_key, timeout=timeout
            )
        except BaseException:
            self.runtime.demonitor_any(ref)
            raise
        self.runtime.routed_remote += 1

    def send_reply(self, caller: From, value: Any, *, partition_key: Any) -> None:
        demonitored = False
        proc = self.in_monitors.pop(caller.ref, None)
        if proc is not None:
            demonitored = True
            if proc.monitored_by is not None:
                proc.monitored_by.pop(caller.ref, None)
            self.in_by_node[caller.pid.node].discard(caller.ref)
        if self._stale(caller.pid):
            self.runtime.drops["stale_incarnation"] += 1
            return
        self.post(
            caller.pid.node, env.reply_envelope(caller.ref, value, demonitored), partition_key
        )

    def forget_process(self, proc: Process) -> None:
        """`proc` exited: drop its node subscriptions (its links and monitors are handled)."""
        if self.node_subs:
            for subs in self.node_subs.values():
                subs.discard(proc)

    async def spawn(
        self, proc: Process, node: str, fn: Any, args: tuple[Any, ...], **kw: Any
    ) -> Pid:
        return await self.requests.spawn(proc, node, fn, args, **kw)

    async def rpc(self, node: str, fn: Any, args: tuple[Any, ...], *, timeout: float | None) -> Any:
        return await self.requests.rpc(node, fn, args, timeout)

    async def ping(self, target: Any, *, timeout: float | None) -> bool:
        return await self.requests.ping(target, timeout)

    async def close(self, flush_timeout: float = 0.0) -> None:
        """Stop the helper tasks (requests being served).

        Control envelopes are already in the transport's lane queues, which
        `Links.close` flushes within its own `flush_timeout`.
        """
        await self.requests.close()
        await self.on_demand.close()
        if self.delivery is not None:
            self.delivery.close()

"""Connect-on-use and agreed closes: how actor traffic reaches a node without a link.

Theory of operation
-------------------
The membership manager decides which links the overlay keeps; actors should
not care. An actor operation (`send`, `call`, `monitor`, `link`, `spawn`,
`rpc`, a reply or signal) for a node that has no link but whose spec is known
— a member, a passive-view entry, a node we were linked to before — dials one
on demand, as distributed Erlang does. Until the dial is done, everything for
that node waits in one FIFO here (`queues`), so the order in which actors
sent is the order the link carries; the moment the peer is up the queue is
handed to the transport, before anything sent later. A dial that fails drops
the queue (counted as ``dial_failed``) and the node is reported down with
reason ``"unreachable"``: monitors fire ``noconnection``, pending calls fail
with `CallExit`.

Closing a link for a view change is *agreed* by both ends (`CloseReq`): the
asking side closes only if the peer answers that nothing on its side depends
on the link (no monitors, links, calls, served requests) and it still has no
such need itself; otherwise the link stays and the manager's sweep asks
again later. A peer that agreed holds its new traffic for us in the same FIFO
until the link is gone (then dials again if anything is waiting) or the
close is cancelled. So a view change never fails anything in flight on
either side, and replies sent during the close are delivered.

With ``connect_on_use = False`` (Partisan's strict mode) none of this dials:
operations on a node without a link raise `NotConnected` (or relay, with
``transitive=True``). Client-server never links two clients: their traffic
goes through the relay (a server) instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from partisan.actors import envelopes as env
from partisan.errors import NotConnected, Overloaded, PartisanError
from partisan.identity import NodeSpec

if TYPE_CHECKING:
    from partisan.actors.remote import Distribution

__all__ = ["DIRECT", "QUEUED", "RELAYED", "OnDemand"]

logger = logging.getLogger(__name__)

#: How `route` says a node is reached.
DIRECT, QUEUED, RELAYED = "direct", "queued", "relayed"

#: User messages one node's FIFO takes while its link is being dialled.
MAX_QUEUED = 10_000

_Item = tuple[str, str, Any, Any]  # channel, wire destination, payload, partition key


class OnDemand:
    """One node's dial-on-use FIFOs and the agreed-close protocol (see module docstring)."""

    def __init__(self, dist: Distribution) -> None:
        self.dist = dist
        #: node -> messages waiting for its link (a dial, or a close being agreed)
        self.queues: dict[str, deque[_Item]] = {}
        #: nodes our own dial is running for
        self.dialing: set[str] = set()
        #: node -> spec, for nodes whose close we asked for and await the answer
        self.asked: dict[str, NodeSpec] = {}
        #: nodes whose close we agreed to: their traffic waits until the link is gone
        self.held: dict[str, asyncio.TimerHandle] = {}
        #: nodes dialled here for actor traffic (the sweep closes them when idle)
        self.dialled: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: spec lookup for a node name (the peer service's views); set by the Node
        self.find: Callable[[str], NodeSpec | None] = lambda name: None
        #: True while the manager's overlay wants a link to the node (set by the Node)
        self.in_view: Callable[[str], bool] = lambda name: False
        self.enabled = True
        self.client_server_role: str | None = None
        self.dial_timeout = 5.0

    # ------------------------------------------------------------- routing

    def route(self, node: str, *, transitive: bool = False) -> str:
        """How to reach `node` now: DIRECT, QUEUED (dial or close under way) or RELAYED.

        Raises `NotConnected` when there is no way: unknown node, strict mode
        without `transitive`, or a relay with no route.
        """
        dist = self.dist
        if node in self.queues:
            return QUEUED
        if node in dist.up:
            return DIRECT
        if node == dist.runtime.node:
            raise NotConnected(f"{node!r} is this node")
        spec = self.spec_of(node)
        if node in dist.down and not transitive and not self._newer(spec):
            # Seen failing, and no newer incarnation known: one cause, one type.
            raise NotConnected(f"node {node!r} is down")
        if spec is not None and self._clients_both(spec) and dist.relay is not None:
            return RELAYED
        if self.enabled and spec is not None and not self._clients_both(spec):
            self._dial(spec)
            return QUEUED
        if transitive and dist.relay is not None:
            return RELAYED
        if spec is None and self.client_server_role == "client" and dist.relay is not None:
            return RELAYED  # a client knows only servers: anyone else is a client, via a server
        if spec is None:
            raise NotConnected(f"no route to node {node!r} (not a known member)")
        raise NotConnected(f"no route to node {node!r} (no link; connect_on_use is off)")

    def spec_of(self, node: str) -> NodeSpec | None:
        """The spec to dial `node` at: the manager's views, else its last one if parked.

        A node seen failing is not dialled from memory: only the manager (which
        learns of restarts and removals) can name it again.
        """
        spec = self.find(node)
        if spec is None and node in self.dist.parked:
            spec = self.dist.specs.get(node)
        return spec

    def _newer(self, spec: NodeSpec | None) -> bool:
        """True if `spec` is an incarnation after the last one we saw (a restart)."""
        return spec is not None and spec.incarnation > self.dist.incarnations.get(spec.name, 0)

    def _clients_both(self, spec: NodeSpec) -> bool:
        return self.client_server_role == "client" and (spec.role or "server") == "client"

    def enqueue(self, node: str, item: _Item, *, control: bool) -> None:
        """Queue one message for `node` behind what waits already (user ones are bounded)."""
        queue = self.queues[node]
        if not control and len(queue) >= MAX_QUEUED:
            raise Overloaded(
                f"{len(queue)} messages already wait for the link to {node}; retry later"
            )
        queue.append(item)

    def ensure_link(self, node: str) -> bool:
        """Dial `node` if it is known and has no link (monitor_node); False if impossible."""
        try:
            self.route(node)
        except NotConnected:
            return False
        return True

    # ---------------------------------------------------------------- dials

    def _dial(self, spec: NodeSpec) -> None:
        name = spec.name
        self.queues.setdefault(name, deque())
        if name in self.dialing:
            return
        self.dialing.add(name)
        task = asyncio.get_running_loop().create_task(self._connect(spec))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, spec: NodeSpec) -> None:
        name = spec.name
        error: BaseException | None = None
        try:
            await self.dist.links.connect(spec, timeout=self.dial_timeout)
        except (PartisanError, OSError) as exc:
            error = exc
        finally:
            self.dialing.discard(name)
        if error is None:
            self.dialled.add(name)
            self.flush(name)  # (usually done already by on_peer_up)
            return
        logger.info("dial of %s for actor traffic failed: %s", spec, error)
        self.fail(name, "unreachable")

    def fail(self, node: str, reason: str) -> None:
        """The link to `node` cannot be had: drop what waits, report the node down."""
        queue = self.queues.pop(node, None)
        self._end_hold(node)
        if queue:
            self.dist.runtime.drops["dial_failed"] += len(queue)
        self.dist.unreachable(node, reason)

    def flush(self, node: str) -> None:
        """`node`'s link is up: hand the waiting messages to it in order."""
        if node in self.held or node not in self.dist.up:
            return  # (the hold's end or the peer's up flushes)
        queue = self.queues.pop(node, None)
        if not queue:
            return
        links = self.dist.links
        drops = self.dist.runtime.drops
        while queue:
            channel, dest, payload, key = queue.popleft()
            try:
                links.send(node, channel, dest, payload, partition_key=key, control=True)
            except NotConnected:
                drops["dial_failed"] += 1 + len(queue)
                return
            except Exception as exc:  # an unpicklable message: it alone is lost
                drops["send_failed"] += 1
                logger.warning("message for %s dropped after the dial: %s", node, exc)

    def on_peer_up(self, node: str) -> None:
        if node in self.queues and node not in self.held:
            self.flush(node)

    def on_parked(self, node: str) -> None:
        """The link to `node` closed for a view change: dial again if anything needs it."""
        self._end_hold(node)
        self.asked.pop(node, None)
        self.dialled.discard(node)
        if self.queues.get(node) or self.dist.pinned(node):
            spec = self.spec_of(node)
            if spec is not None and self.enabled:
                self._dial(spec)
            else:
                self.fail(node, "disconnected")

    def on_node_down(self, node: str) -> None:
        """`node` failed: whatever waited for it is lost (counted)."""
        queue = self.queues.pop(node, None)
        if queue:
            self.dist.runtime.drops["control_not_connected"] += len(queue)
        self._end_hold(node)
        self.asked.pop(node, None)
        self.dialled.discard(node)

    # ------------------------------------------------------- agreed closes

    def request_close(self, peer: NodeSpec) -> None:
        """Ask `peer` whether the link may close for a view change (see module docstring)."""
        name = peer.name
        dist = self.dist
        if name in self.asked or name in self.held or not dist.links.is_connected(name):
            return
        if dist.pinned(name) or self.queues.get(name):
            logger.debug("keeping pinned link to %s across a view change", name)
            return
        self.asked[name] = peer
        dist.post(name, env.CloseReq(), None, self._close_channel(name))

    def on_close_req(self, sender: NodeSpec) -> None:
        name = sender.name
        dist = self.dist
        channel = self._close_channel(name)
        if dist.pinned(name) or self.in_view(name) or self.queues.get(name):
            dist.post(name, env.CloseAck(False), None, channel)
            return
        # (If we asked too, both ends want it closed: each agrees and each closes.)
        dist.post(name, env.CloseAck(True), None, channel)
        # Agreed: our later traffic for it waits until the link is gone or the close is off.
        self.queues.setdefault(name, deque())
        loop = asyncio.get_running_loop()
        self.held[name] = loop.call_later(self.dial_timeout, self._hold_expired, name)

    def on_close_ack(self, sender: NodeSpec, ok: bool) -> None:
        name = sender.name
        peer = self.asked.pop(name, None)
        dist = self.dist
        if peer is None or not ok:
            return
        if dist.pinned(name) or self.in_view(name) or self.queues.get(name):
            dist.post(name, env.CloseCancel(), None, self._close_channel(name))
            return
        dist.links.disconnect(name, reason="disconnected")
        dist.park(peer)

    def _close_channel(self, node: str) -> str:
        """Where the close handshake travels: behind our actor traffic to `node`, if any.

        Each end's messages must not overtake what that end already sent on
        the link (an answer must not arrive before the replies it vouches
        for), so with a data lane open they go on `default`; a link that
        never carried any (a temporary membership link) uses the membership
        lane, which is always open, instead of opening `default` just for this.
        """
        return "default" if self.dist.links.carries_data(node) else "membership"

    def closing_agreed(self, node: str) -> bool:
        """True between our yes to `node`'s `CloseReq` and the end of the link."""
        return node in self.held

    def on_close_cancel(self, sender: NodeSpec) -> None:
        self._end_hold(sender.name)
        self.flush(sender.name)

    def _hold_expired(self, node: str) -> None:
        self.held.pop(node, None)
        if node in self.dist.up:
            self.flush(node)
        else:
            self.on_parked(node)

    def _end_hold(self, node: str) -> None:
        handle = self.held.pop(node, None)
        if handle is not None:
            handle.cancel()

    async def close(self) -> None:
        for handle in self.held.values():
            handle.cancel()
        self.held.clear()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        self.queues.clear()

"""Which peers are up, parked or down, and what each transition fires (part of `Distribution`).

The transport reports sessions (`on_peer_up`, `on_peer_down`), the node
reports view changes (`park`) and its own leave (`disconnected`), on-demand
dials report failures (`unreachable`). This mixin turns those reports into
one `NodeUp`/`NodeDown` per transition for `monitor_node` subscribers, and on
a down fires every monitor, call, link and request that depended on the node
exactly once with ``noconnection`` (`_fail_dependents`). It also answers the
views built on that state (`nodes`, `members`, `pinned`, `may_be_alive`).
Kept apart from `remote.py`, which sends; the state itself (``up``,
``parked``, ``down``, the indexes) is created by `Distribution.__init__`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from partisan.actors.process import Process
from partisan.actors.signals import NodeDown, NodeUp, Ref
from partisan.identity import NodeSpec, Pid

if TYPE_CHECKING:
    from partisan.actors.on_demand import OnDemand
    from partisan.actors.remote_requests import Requests
    from partisan.actors.runtime import Runtime

__all__ = ["NodeEvents"]

#: The log lines "node up/down/unreachable" keep the name they had before this module was
#: split out of remote.py, so log output and logging configuration see no change.
logger = logging.getLogger("partisan.actors.remote")


class NodeEvents:
    """Peer liveness and its transitions (a mixin of `Distribution`)."""

    if TYPE_CHECKING:  # provided by Distribution
        runtime: Runtime
        up: dict[str, NodeSpec]
        specs: dict[str, NodeSpec]
        members_of: Any
        hidden: set[str]
        incarnations: dict[str, int]
        parked: dict[str, int]
        down: set[str]
        watch_index: defaultdict[str, set[Ref]]
        in_monitors: dict[Ref, Process]
        in_by_node: defaultdict[str, set[Ref]]
        remote_links: defaultdict[str, set[tuple[Pid, Pid]]]
        node_subs: defaultdict[str | None, set[Process]]
        requests: Requests
        on_demand: OnDemand
        _waiting: Any
        delivery: Any
        record: Any

    # ---------------------------------------------------------- views

    def nodes(self) -> list[str]:
        return sorted(name for name in self.up if name not in self.hidden)

    def members(self) -> list[str]:
        """The membership manager's view (self included); without one, self + `nodes()`."""
        if self.members_of is not None:
            members: list[str] = self.members_of()
            return members
        return sorted({self.runtime.node, *self.nodes()})

    def is_up(self, node: str) -> bool:
        return node in self.up

    def pinned(self, node: str) -> bool:
        """True while monitors, links, calls or requests depend on `node`.

        For the membership driver (CONTRACT.md): a view change
        (`DisconnectReason.VIEW_CHANGE`) must not close a pinned link.
        """
        return bool(
            self.watch_index.get(node)
            or self.in_by_node.get(node)
            or self.remote_links.get(node)
            or self.node_subs.get(node)
            or self.requests.serving.get(node)
            or self._waiting.get(node)
            or any(asked == node for _, asked in self.requests.pending.values())
        )

    def may_be_alive(self, pid: Pid) -> bool:
        """Linked with that incarnation, or parked by a view change (healthy, no link)."""
        spec = self.up.get(pid.node)
        if spec is not None:
            return spec.incarnation == pid.incarnation
        return self.parked.get(pid.node) == pid.incarnation

    # -------------------------------------------------------- node events

    def monitor_node(self, proc: Process, node: str | None, enable: bool) -> None:
        if not enable:
            self.node_subs[node].discard(proc)
            return
        self.node_subs[node].add(proc)
        if node is None or node in self.up or node == self.runtime.node:
            return
        # A known node without a link (parked by a view change, or a member not
        # dialled yet) gets one, so that its failure can be seen.
        if not self.on_demand.ensure_link(node):
            proc.put(NodeDown(node, "noconnection"))

    def _notify(self, node: str, event: Any, hidden: bool) -> None:
        targets = set(self.node_subs.get(node, ()))
        if not hidden:
            targets |= self.node_subs.get(None, set())
        delivered = 0
        for proc in targets:
            if proc.alive:
                proc.put(event)
                delivered += 1
        if self.record is not None and not hidden:
            # For the history checker: NodeUp/NodeDown once per peer incarnation.
            self.record(
                "signal.nodeup" if type(event) is NodeUp else "signal.nodedown",
                peer=node, peer_incarnation=self.incarnations.get(node),
                reason=getattr(event, "reason", None), subscribers=delivered,
            )  # fmt: skip

    def park(self, peer: NodeSpec) -> None:
        """A healthy peer's link closed for a view change: leave `nodes()`, no NodeDown.

        Only for an unpinned link (the membership driver checks). If the same
        incarnation comes back, `on_peer_up` raises no NodeUp either.
        """
        current = self.up.pop(peer.name, None)
        if current is not None:
            self.hidden.discard(peer.name)
            self.parked[peer.name] = current.incarnation
        self.on_demand.on_parked(peer.name)

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        """The transport has a session with `peer` (LinkHandler)."""
        self.specs[peer.name] = peer
        self.down.discard(peer.name)
        if self.parked.pop(peer.name, None) == peer.incarnation and peer.name not in self.up:
            self.up[peer.name] = peer  # back from a view change: it never went down
            if hidden:
                self.hidden.add(peer.name)
            self.on_demand.on_peer_up(peer.name)
            if self.delivery is not None:
                self.delivery.peer_up(peer)
            return
        current = self.up.get(peer.name)
        if current is not None:
            if current.incarnation >= peer.incarnation:
                return  # the same session reported twice, or an older one
            self._node_down(peer.name, "restarted")
        self.up[peer.name] = peer
        if hidden:
            self.hidden.add(peer.name)
        self.incarnations[peer.name] = max(peer.incarnation, self.incarnations.get(peer.name, 0))
        logger.info("node up: %s%s", peer, " (hidden)" if hidden else "")
        self._notify(peer.name, NodeUp(peer.name), hidden)
        self.on_demand.on_peer_up(peer.name)
        if self.delivery is not None:
            self.delivery.peer_up(peer)

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        """The session with `peer` ended (LinkHandler).

        ``"disconnected"`` is a close the peer made on purpose for a view change
        (agreed, see on_demand.py): the peer is parked, not down.
        """
        if reason == "disconnected":
            self.park(peer)
            return
        current = self.up.get(peer.name)
        if current is None or current.incarnation > peer.incarnation:
            return  # already down, or news about an older incarnation
        self._node_down(peer.name, reason)
        if self.delivery is not None:
            self.delivery.peer_gone(peer, reason)

    def _node_down(self, node: str, reason: str) -> None:
        """Fire everything that depends on `node`, exactly once."""
        self.up.pop(node, None)
        self.parked.pop(node, None)
        self.down.add(node)
        hidden = node in self.hidden
        self.hidden.discard(node)
        logger.info("node down: %s (%s)", node, reason)
        self.on_demand.on_node_down(node)
        self._fail_dependents(node)
        self._notify(node, NodeDown(node, reason), hidden)

    def unreachable(self, node: str, reason: str) -> None:
        """A dial for actor traffic failed: what waited on `node` fails as if it went down.

        `NodeDown` goes to the node's own subscribers if it was believed alive
        (parked by a view change) or never seen (they subscribed before any
        link), and to every-node subscribers only if it was parked. A node
        already seen going down is not reported down twice.
        """
        if node in self.up:
            self._node_down(node, reason)
            return
        was_parked = self.parked.pop(node, None) is not None
        self.down.add(node)
        logger.info("node unreachable: %s (%s)", node, reason)
        self._fail_dependents(node)
        targets: set[Process] = set()
        if was_parked or node not in self.incarnations:
            targets |= self.node_subs.get(node, set())
        if was_parked:
            targets |= self.node_subs.get(None, set())
        for proc in targets:
            if proc.alive:
                proc.put(NodeDown(node, reason))

    def _fail_dependents(self, node: str) -> None:
        """Monitors, calls, links and requests on `node` fire ``noconnection``."""
        runtime = self.runtime
        for ref in list(self.watch_index.pop(node, ())):
            watch = runtime.watches.get(ref)
            if watch is not None:
                runtime.fire(ref, watch.target, "noconnection")
        for ref in self.in_by_node.pop(node, ()):
            proc = self.in_monitors.pop(ref, None)
            if proc is not None and proc.monitored_by is not None:
                proc.monitored_by.pop(ref, None)
        for local, remote in self.remote_links.pop(node, ()):
            target = runtime.lookup(local)
            if target is not None:
                runtime.deliver_exit(target, remote, "noconnection", linked=True)
        self.requests.node_down(node)

    def disconnected(self, node: str, reason: str) -> None:
        """We closed the session ourselves (leave): same effects as a peer down."""
        if node in self.up:
            self._node_down(node, reason)

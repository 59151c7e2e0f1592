"""The peer service: drive one membership manager with a node's real links.

Theory of operation
-------------------
A membership manager (`partisan.membership`) is a pure state machine: events
in, actions out. `PeerService` is its driver on a real node. It sits between
the transport (`Links`) and the actor runtime (`Distribution`): it *is* the
`LinkHandler` the node gives to `Links`, and it forwards every callback to
the `Distribution` after looking at it:

* ``on_message`` — frames to ``"$membership"`` become `Received` events for
  the manager (the payload was unpickled only after CURVE authenticated the
  peer); everything else goes to the runtime.
* ``on_peer_up`` / ``on_peer_down`` — become `PeerUp` / `PeerDown` (hidden
  peers are not members and are not reported to the manager).

Actions are carried out in order (docs/membership.md, "What the driver must
do"): ``Connect`` dials (one dial per peer at a time; a failure comes back as
``PeerDown(peer, "unreachable")``); ``Send`` queues on the link, dialling
first when the peer is not connected (HyParView's temporary connections), and
sends queued behind a dial keep their order; ``Disconnect`` closes the link
after what was queued is flushed — unless the reason is a failure (the link
is gone or going already) or the link is *pinned* (`Distribution.pinned`:
monitors, links or calls depend on it); ``SetTimer`` / ``CancelTimer`` use
``loop.call_at`` with the loop's clock, the same clock passed as ``now``;
``MembersChanged`` is what `Node.members()` returns.

View changes are not failures. A link closed for ``VIEW_CHANGE`` is closed
only when both ends agree that nothing depends on it (`CloseReq`, see
partisan/actors/on_demand.py); both ends then *park* the peer in the
`Distribution`: it leaves `nodes()` but no `NodeDown` fires and nothing gets
``noconnection``; if it comes back with the same incarnation no `NodeUp` fires
either, and actor traffic for it dials a link on demand. A sweep every
``connection_interval`` asks to close links that no view needs any more:
temporary ones after a second look, links dialled for actor traffic after
``idle_link_timeout`` without messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from partisan.broadcast_service import BROADCAST_DEST, BroadcastService
from partisan.config import Config
from partisan.errors import Overloaded, PartisanError
from partisan.eventlog import EventLog, ViewTracker, leave_reasons
from partisan.identity import NodeSpec
from partisan.membership.registry import create_manager
from partisan.membership.types import (
    Action,
    CancelTimer,
    Connect,
    Disconnect,
    DisconnectReason,
    Event,
    Join,
    Leave,
    Manager,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)
from partisan.relay import RELAY_DEST, Relay
from partisan.transport.ticks import call_on_grid

__all__ = ["BROADCAST_DEST", "MEMBERSHIP_DEST", "RELAY_DEST", "PeerService"]

logger = logging.getLogger(__name__)

#: The destination membership messages are addressed to (like ``"$runtime"``).
MEMBERSHIP_DEST = "$membership"


class _Dial:
    """A dial in flight: sends queued behind it, and whether to close once they are out."""

    __slots__ = ("close_reason", "sends", "spec")

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.sends: list[tuple[str, str, Any]] = []  # (channel, dest, msg)
        self.close_reason: DisconnectReason | None = None


class PeerService:
    """One node's membership driver; the `LinkHandler` in front of its `Distribution`."""

    def __init__(
        self,
        config: Config,
        spec: NodeSpec,
        dist: Any,
        links: Any,
        *,
        rng: random.Random | None = None,
        event_log: EventLog | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.dist = dist
        self.links = links
        self.manager: Manager = create_manager(config.manager, spec, config, rng or random.Random())
        self._members: tuple[NodeSpec, ...] = (spec,)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._dials: dict[str, _Dial] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._unneeded: set[str] = set()
        #: on-demand links: name -> (traffic count last seen, when it last changed)
        self._idle: dict[str, tuple[int, float]] = {}
        self._heard = asyncio.Event()
        self._heard_from: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        #: True while carrying out our own Leave (its LEFT disconnects are ours to do).
        self._own_leave = False
        #: True during a graceful stop: `Links.close` closes every link after the flush.
        self._keep_links = False
        self.drops: dict[str, int] = {}
        #: The node's event log (None: off, and the view diffs below cost nothing).
        self.event_log = event_log
        self._views = ViewTracker(event_log, spec.name) if event_log is not None else None
        #: `partisan.broadcast` over the overlay (partisan/broadcast_service.py).
        self.broadcasts = BroadcastService(self)
        #: `transitive=True` sends relayed over the overlay (partisan/relay.py).
        self.relay = Relay(self)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Arm the manager's timers and the sweep of unneeded links."""
        self._loop = asyncio.get_running_loop()
        actions = self.manager.start(self._loop.time())
        self._apply(actions)
        if self._views is not None:
            self._record_views(None, actions)
        self._sweep_handle = call_on_grid(self._loop, self.config.connection_interval, self._sweep)

    def leave_for_stop(self) -> None:
        """A graceful stop: tell the cluster we leave, keep the links for the flush.

        The manager's farewell `Send`s go out now; its `Disconnect`s are left to
        `Links.close`, which says BYE ``"left"`` after the flush.
        """
        if self._loop is None or self._stopping:
            return
        self._keep_links = True
        self.handle(Leave())
        self.close()

    def close(self) -> None:
        """Cancel timers and dials (idempotent)."""
        self._stopping = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for task in list(self._tasks):
            task.cancel()
        self.broadcasts.close()
        self.relay.close()

    # --------------------------------------------------------------- views

    def members(self) -> list[str]:
        """The manager's view, self included, sorted (HyParView: active view + self)."""
        return sorted(spec.name for spec in self._members)

    def member_specs(self) -> tuple[NodeSpec, ...]:
        return self._members

    def find(self, name: str) -> NodeSpec | None:
        """The spec the manager (or a live link) knows for `name`."""
        for spec in (*self._members, *self.manager.passive(), *self.links.peers()):
            if spec.name == name:
                return spec
        return None

    # -------------------------------------------------------------- events

    def handle(self, event: Event) -> list[Action]:
        """Feed one event to the manager and carry out its actions; return them."""
        if self._stopping or self._loop is None:
            return []
        try:
            actions = self.manager.handle(event, self._loop.time())
        except Exception:  # a peer's malformed message must never take the node down
            self.drops["bad_membership"] = self.drops.get("bad_membership", 0) + 1
            logger.exception("membership manager rejected %r", event)
            return []
        self._own_leave = type(event) is Leave
        try:
            self._apply(actions)
        finally:
            self._own_leave = False
        self.broadcasts.sync()  # the overlay may have changed: tell the broadcast layer
        if self._views is not None:
            self._record_views(event, actions)
        return actions

    def _record_views(self, event: Event | None, actions: Sequence[Action]) -> None:
        """Event log: what this step changed in the members, active and passive views."""
        views = self._views
        assert views is not None
        try:
            if any(type(action) is MembersChanged for action in actions):
                views.members_changed(self._members, leave_reasons(event, actions, views.members))
            views.views_changed(self.manager.active(), self.manager.passive())
        except Exception:  # the log must never take the membership driver down
            logger.exception("event log: recording the views failed")

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        """LinkHandler: membership frames to the manager, broadcast and relay frames to
        their services, the rest to the runtime."""
        if dest != MEMBERSHIP_DEST:
            if dest == BROADCAST_DEST:
                self.broadcasts.on_message(sender, channel, payload)
            elif dest == RELAY_DEST:
                self.relay.on_message(sender, payload)
            else:
                self.dist.on_message(sender, channel, dest, payload)
        elif channel != "membership" or sender.name in self.dist.hidden:
            self.drops["misrouted_membership"] = self.drops.get("misrouted_membership", 0) + 1
        else:
            self.handle(Received(sender, payload))
            if sender.name not in self._heard_from:
                self._heard_from.add(sender.name)
                self._heard.set()

    async def heard_from(self, name: str, timeout: float) -> bool:
        """Wait until the manager received a message from `name` (a join's answer).

        After a full-mesh join the contact answers with its state: waiting for
        it makes the members it knows ours before `join` returns, so the caller
        can address them at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while name not in self._heard_from:
            self._heard.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._heard.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        self.dist.on_peer_up(peer, hidden)
        if not hidden:
            if self.event_log is not None:
                self.event_log.write("peer.up", peer=peer.name, peer_incarnation=peer.incarnation)
            self.handle(PeerUp(peer))

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        hidden = peer.name in self.dist.hidden
        if reason == "connection_closed" and self.dist.on_demand.closing_agreed(peer.name):
            # We agreed to this close: its connections may drop before its BYE is read.
            reason = "disconnected"
        if not hidden and self.event_log is not None:
            self.event_log.write(
                "peer.down", peer=peer.name, peer_incarnation=peer.incarnation, reason=reason
            )
        if reason == "disconnected":
            # The peer closed a healthy link on purpose, after we agreed (or, from an
            # older peer, without asking): no NodeDown; whatever still needs the
            # link dials it again (partisan/actors/on_demand.py).
            self.dist.park(peer)
        else:
            self.dist.on_peer_down(peer, reason)
        if not hidden:
            self.handle(PeerDown(peer, reason))

    # ------------------------------------------------------------- actions

    def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                self._send(action)  # type: ignore[arg-type]
            elif kind is Connect:
                self._dial(action.peer)  # type: ignore[union-attr]
            elif kind is Disconnect:
                self._disconnect(action.peer, action.reason)  # type: ignore[union-attr]
            elif kind is SetTimer:
                self._set_timer(action.name, action.at)  # type: ignore[union-attr]
            elif kind is CancelTimer:
                handle = self._timers.pop(action.name, None)  # type: ignore[union-attr]
                if handle is not None:
                    handle.cancel()
            elif kind is MembersChanged:
                self._members = tuple(action.members)  # type: ignore[union-attr]
                logger.info("members of %s: %s", self.spec.name, ", ".join(self.members()))

    def _set_timer(self, name: str, at: float) -> None:
        assert self._loop is not None
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._timers[name] = self._loop.call_at(at, self._fire, name)

    def _fire(self, name: str) -> None:
        self._timers.pop(name, None)
        self.handle(TimerFired(name))

    def _send(self, action: Send) -> None:
        self.send(action.peer, action.channel, MEMBERSHIP_DEST, action.msg)

    def send(self, peer: NodeSpec, channel: str, dest: str, msg: Any) -> None:
        """Queue `msg` for `dest` on `peer`, dialling a temporary link first if there is none.

        Sends queued behind a dial keep their order. A failed dial or send is
        reported to the manager as ``PeerDown(peer, "unreachable")``; an
        `Overloaded` broadcast frame is counted and dropped (a full budget is
        not a failed peer, and Plumtree's lazy links repair the loss).
        """
        name = peer.name
        dial = self._dials.get(name)
        if dial is not None:
            dial.sends.append((channel, dest, msg))
        elif self.links.is_connected(name):
            self._send_now(peer, channel, dest, msg)
        else:
            self._dial(peer).sends.append((channel, dest, msg))

    def _send_now(self, peer: NodeSpec, channel: str, dest: str, msg: Any) -> bool:
        try:
            self.links.send(peer.name, channel, dest, msg)
        except Overloaded as exc:
            if dest != MEMBERSHIP_DEST:
                key = "overloaded" + dest
                self.drops[key] = self.drops.get(key, 0) + 1
                return True
            logger.info("membership send to %s failed: %s", peer.name, exc)
        except (PartisanError, ValueError) as exc:
            logger.info("send to %s (%s) failed: %s", peer.name, dest, exc)
        else:
            return True
        self._report_unreachable(peer)
        return False

    def _report_unreachable(self, peer: NodeSpec) -> None:
        assert self._loop is not None
        # Reported from the loop, not from inside the action list being applied.
        self._loop.call_soon(self.handle, PeerDown(peer, "unreachable"))

    def _dial(self, spec: NodeSpec) -> _Dial:
        dial = self._dials.get(spec.name)
        if dial is not None:
            return dial
        dial = self._dials[spec.name] = _Dial(spec)
        if self.links.is_connected(spec.name):
            self._loop_call(self._finish_dial, spec.name, None)
        else:
            task = asyncio.get_running_loop().create_task(self._connect(spec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return dial

    def _loop_call(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon(fn, *args)

    async def _connect(self, spec: NodeSpec) -> None:
        error: BaseException | None = None
        try:
            await self.links.connect(spec, timeout=self.config.handshake_timeout)
        except (PartisanError, OSError) as exc:
            error = exc
        self._finish_dial(spec.name, error)

    def _finish_dial(self, name: str, error: BaseException | None) -> None:
        dial = self._dials.pop(name, None)
        if dial is None or self._stopping:
            return
        if error is not None:
            logger.info("dial of %s failed: %s", dial.spec, error)
            self.handle(PeerDown(dial.spec, "unreachable"))
            return
        for channel, dest, msg in dial.sends:
            if not self._send_now(dial.spec, channel, dest, msg):
                return
        if dial.close_reason is not None:
            self._close(dial.spec, dial.close_reason)

    def _disconnect(self, peer: NodeSpec, reason: DisconnectReason) -> None:
        name = peer.name
        if reason is DisconnectReason.FAILED or self._stopping or self._keep_links:
            return  # a failed link is gone already; a stop closes every link itself
        if reason is DisconnectReason.LEFT and not self._own_leave:
            # The peer left (or was removed and will leave): it closes the link
            # itself, BYE "left" after its last Downs. Closing it from here would
            # cut those short; the sweep closes it if it never does.
            return
        dial = self._dials.get(name)
        if dial is not None:
            dial.close_reason = reason  # after the queued sends are out
            return
        self._close(peer, reason)

    def _close(self, peer: NodeSpec, reason: DisconnectReason) -> None:
        name = peer.name
        if reason is DisconnectReason.VIEW_CHANGE:
            # Both ends must agree: the peer may have calls or monitors in flight.
            self.dist.on_demand.request_close(peer)
            return
        if not self.links.is_connected(name):
            return
        bye = "left" if reason is DisconnectReason.LEFT else "disconnected"
        self.links.disconnect(name, reason=bye)
        self.dist.disconnected(name, bye if reason is DisconnectReason.LEFT else reason.value)

    def in_view(self, name: str) -> bool:
        """True while the manager's overlay wants a link to `name` (or dials it)."""
        return name in self._dials or any(spec.name == name for spec in self.manager.active())

    def _sweep(self) -> None:
        """Close links no view needs and nothing pins (asking the peer; on_demand.py).

        A link the membership dialled for a moment (HyParView's shuffles and
        joins) goes once seen unneeded twice in a row; one that carries actor
        traffic (dialled here or by the peer) goes after `idle_link_timeout`
        without any message on it.
        """
        assert self._loop is not None
        now = self._loop.time()
        self._sweep_handle = call_on_grid(self._loop, self.config.connection_interval, self._sweep)
        needed = {spec.name for spec in self.manager.active()} | set(self._dials)
        on_demand = self.dist.on_demand
        unneeded = set()
        idle: dict[str, tuple[int, float]] = {}
        for spec in self.links.peers():
            name = spec.name
            if name in needed or name in self.dist.hidden or self.dist.pinned(name):
                continue
            traffic = self.links.traffic(name)
            if traffic or name in on_demand.dialled:  # it carries (or was dialled for) actors
                seen, since = self._idle.get(name, (-1, now))
                if traffic != seen:
                    seen, since = traffic, now
                idle[name] = (seen, since)
                if now - since >= self.config.idle_link_timeout:
                    on_demand.request_close(spec)
            elif name in self._unneeded:
                on_demand.request_close(spec)
            else:
                unneeded.add(name)
        self._unneeded = unneeded
        self._idle = idle

    def join_actions(self, contact: NodeSpec) -> list[Action]:
        """Feed `Join(contact)` (after the node dialled it) and carry out the actions."""
        return self.handle(Join(contact))

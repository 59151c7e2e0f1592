"""Static membership: exactly the peers that were explicitly joined, no gossip.

Theory of operation (after Partisan's static peer service manager)
-------------------------------------------------------------------
Each node keeps a plain map of the peers it was explicitly joined with.
``Join(contact)`` adds the contact at once, dials it and sends it a
`JoinRequest`; the contact adds the joiner when that request arrives, so joins
are symmetric. Nothing is ever forwarded: if C joins B, A (joined to B) does
not learn of C (Partisan test 30).

Connections are kept up: every `connection_interval` each member without a
live connection is re-dialled, and whenever a connection to a member comes up
we send it a `Refresh`. A member that restarted (with empty state, or with a
newer incarnation) therefore learns of us again and the newer spec replaces
the older one. A refresh from a node we do not know is accepted (that is the
restart case) unless we removed that node, or left ourselves: then we answer
`LeaveNotice`, which makes the sender drop us, so stale traffic never re-adds
a node that left.

``Leave()`` sends `LeaveNotice` to every member and disconnects with reason
LEFT; ``Leave(node)`` does the same for one member. A removed name is
remembered with its incarnation (a tombstone) until an explicit join with it.

Deviations from Partisan: its static manager has no leave and never
re-dials after a failure; here a crashed member stays a member and is
re-dialled, and leave is symmetric.

`DirectPeers` holds this machinery; the client-server manager reuses it with
role rules (`partisan.membership.client_server`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.types import (
    Action,
    Connect,
    Disconnect,
    DisconnectReason,
    Event,
    Join,
    Leave,
    MembersChanged,
    PeerDown,
    PeerUp,
    Random,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

__all__ = [
    "CONNECT_TIMER",
    "DirectPeers",
    "JoinRefusal",
    "JoinRequest",
    "LeaveNotice",
    "PeerStatistics",
    "Refresh",
    "Static",
]

logger = logging.getLogger(__name__)

CONNECT_TIMER = "peers.connect"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Explicit join: "add me" (the receiver may refuse)."""


@dataclass(frozen=True, slots=True)
class Refresh:
    """Sent when a connection comes up: "I still count you as a member"."""


@dataclass(frozen=True, slots=True)
class LeaveNotice:
    """ "Drop me": the sender left, removed us, or does not know us any more."""


@dataclass(frozen=True, slots=True)
class JoinRefusal:
    """The receiver refuses our join; `reason` is what `JoinRefused` carries."""

    reason: str


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    """Counters for the CLI and tests (immutable snapshot)."""

    members: int
    left: bool
    refused: int
    rejected: int


class DirectPeers:
    """Explicit-join membership machinery shared by `Static` and `ClientServer`."""

    name = "direct"

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        self.self_spec = self_spec
        self.config = config
        self.rng = rng  # unused: no random choices here
        self._members: dict[str, NodeSpec] = {}
        self._removed: dict[str, int] = {}
        self._up: set[str] = set()
        self._left = False
        self._refused = 0
        self._rejected = 0

    # --------------------------------------------------------------- queries

    @property
    def left(self) -> bool:
        """True after ``Leave()``, until the next explicit join in either direction."""
        return self._left

    def members(self) -> Sequence[NodeSpec]:
        """The joined peers and self, sorted by name."""
        specs = [*self._members.values(), self.self_spec]
        return tuple(sorted(specs, key=lambda s: s.name))

    def active(self) -> Sequence[NodeSpec]:
        """The joined peers (self excluded), sorted by name."""
        return tuple(self._members[n] for n in sorted(self._members))

    def passive(self) -> Sequence[NodeSpec]:
        """Always empty."""
        return ()

    def statistics(self) -> PeerStatistics:
        """An immutable snapshot of the counters."""
        return PeerStatistics(len(self._members) + 1, self._left, self._refused, self._rejected)

    # ------------------------------------------------------------ subclasses

    def refusal(self, peer: NodeSpec) -> str | None:
        """Why a join with `peer` is refused, or None to accept it."""
        return None

    def _accepted(self, peer: NodeSpec) -> list[Action]:
        """Extra actions after accepting `peer`'s JoinRequest."""
        return []

    def _connected(self, peer: NodeSpec) -> list[Action]:
        """Extra actions when a connection to member `peer` comes up."""
        return []

    def _on_other_message(self, sender: NodeSpec, msg: object) -> list[Action]:
        return self._reject(sender, f"unexpected message type {type(msg).__name__}")

    # --------------------------------------------------------------- driving

    def start(self, now: float) -> list[Action]:
        """Arm the re-dial timer."""
        return [SetTimer(CONNECT_TIMER, now + self.config.connection_interval)]

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event and return the actions to carry out, in order."""
        if isinstance(event, Received):
            return self._on_received(event.sender, event.msg)
        if isinstance(event, TimerFired):
            if event.name != CONNECT_TIMER:
                logger.warning("%s: ignoring unknown timer %r", self.name, event.name)
                return []
            dial: list[Action] = [Connect(s) for s in self.active() if s.name not in self._up]
            return [*dial, SetTimer(CONNECT_TIMER, now + self.config.connection_interval)]
        if isinstance(event, PeerUp):
            return self._on_peer_up(event.peer)
        if isinstance(event, PeerDown):
            self._up.discard(event.peer.name)
            return []
        if isinstance(event, Join):
            return self._join(event.contact)
        if isinstance(event, Leave):
            return self._leave(event.node)
        raise TypeError(f"unknown membership event {event!r}")

    # -------------------------------------------------------------- handlers

    def _join(self, contact: NodeSpec) -> list[Action]:
        if contact.name == self.self_spec.name:
            raise ValueError(f"cannot join self ({contact})")
        reason = self.refusal(contact)
        if reason is not None:
            self._refused += 1
            return [Disconnect(contact, DisconnectReason.REFUSED)]
        self._left = False
        self._removed.pop(contact.name, None)
        before = self.members()
        self._put(contact)
        return [Connect(contact), Send(contact, JoinRequest()), *self._changed(before)]

    def _leave(self, node: NodeSpec | None) -> list[Action]:
        before = self.members()
        if node is None or node.name == self.self_spec.name:
            if self._left:
                return []
            peers = self.active()
            self._members.clear()
            self._up.clear()
            self._left = True
        else:
            member = self._members.pop(node.name, None)
            if member is None:
                return []
            self._up.discard(node.name)
            self._removed[node.name] = max(member.incarnation, node.incarnation)
            peers = (member,)
        actions: list[Action] = [Send(p, LeaveNotice()) for p in peers]
        actions += [Disconnect(p, DisconnectReason.LEFT) for p in peers]
        return actions + self._changed(before)

    def _on_received(self, sender: NodeSpec, msg: object) -> list[Action]:
        if isinstance(msg, JoinRequest):
            return self._on_join_request(sender)
        if isinstance(msg, Refresh):
            return self._on_refresh(sender)
        if isinstance(msg, LeaveNotice):
            return self._on_leave_notice(sender)
        if isinstance(msg, JoinRefusal):
            return self._on_refusal(sender, msg)
        return self._on_other_message(sender, msg)

    def _on_join_request(self, sender: NodeSpec) -> list[Action]:
        reason = self.refusal(sender)
        if reason is not None:
            self._refused += 1
            logger.info("%s: refused join from %s: %s", self.name, sender, reason)
            return [Send(sender, JoinRefusal(reason)), Disconnect(sender, DisconnectReason.REFUSED)]
        member = self._members.get(sender.name)
        if member is not None and member.incarnation > sender.incarnation:
            return []  # a zombie of a restarted node
        self._left = False
        self._removed.pop(sender.name, None)
        before = self.members()
        self._put(sender)
        dial: list[Action] = [] if member == sender else [Connect(sender)]
        return dial + self._accepted(sender) + self._changed(before)

    def _on_refresh(self, sender: NodeSpec) -> list[Action]:
        member = self._members.get(sender.name)
        if member is not None and member.incarnation > sender.incarnation:
            return []  # a zombie of a restarted node
        if member is None and (self._left or self._tombstoned(sender)):
            return [Send(sender, LeaveNotice())]
        if member == sender:
            return []
        reason = self.refusal(sender)
        if reason is not None:
            self._refused += 1
            return [Send(sender, JoinRefusal(reason)), Disconnect(sender, DisconnectReason.REFUSED)]
        before = self.members()
        self._put(sender)
        return [Connect(sender), *self._changed(before)]

    def _on_leave_notice(self, sender: NodeSpec) -> list[Action]:
        member = self._members.get(sender.name)
        if member is None or member.incarnation > sender.incarnation:
            return []
        before = self.members()
        del self._members[sender.name]
        self._up.discard(sender.name)
        self._removed[sender.name] = sender.incarnation
        return [Disconnect(member, DisconnectReason.LEFT), *self._changed(before)]

    def _on_refusal(self, sender: NodeSpec, msg: JoinRefusal) -> list[Action]:
        reason = getattr(msg, "reason", None)  # a peer's object may lack the field
        logger.warning("%s: %s refused our join: %r", self.name, sender, reason)
        self._refused += 1
        member = self._members.get(sender.name)
        if member is None:
            return []
        before = self.members()
        del self._members[sender.name]
        self._up.discard(sender.name)
        return [Disconnect(member, DisconnectReason.REFUSED), *self._changed(before)]

    def _on_peer_up(self, peer: NodeSpec) -> list[Action]:
        member = self._members.get(peer.name)
        if member is None or member.incarnation > peer.incarnation:
            return []
        self._up.add(peer.name)
        before = self.members()
        self._put(peer)  # a newer incarnation replaces the old spec
        return [Send(peer, Refresh()), *self._connected(peer), *self._changed(before)]

    # ------------------------------------------------------------- internals

    def _put(self, spec: NodeSpec) -> None:
        old = self._members.get(spec.name)
        if old is None or spec.incarnation >= old.incarnation:
            self._members[spec.name] = spec

    def _tombstoned(self, spec: NodeSpec) -> bool:
        return spec.name in self._removed and spec.incarnation <= self._removed[spec.name]

    def _changed(self, before: Sequence[NodeSpec]) -> list[Action]:
        after = tuple(self.members())
        return [] if tuple(before) == after else [MembersChanged(after)]

    def _reject(self, sender: NodeSpec, why: str) -> list[Action]:
        self._rejected += 1
        logger.warning("%s: dropped a bad message from %s: %s", self.name, sender, why)
        return []


class Static(DirectPeers):
    """Static manager: exactly the explicitly joined peers."""

    name = "static"

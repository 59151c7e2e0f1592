"""Full-mesh membership: every node knows and connects to every member.

Theory of operation (after Partisan's pluggable manager with its full
membership strategy; see docs/membership.md)
---------------------------------------------------------------------------
The membership is an add-wins OR-Set of node specs (`partisan.membership.orset`).
Each node adds only its own spec, under a tag it mints itself, and gossips the
whole set:

* ``Join(contact)`` sends our state to the contact at once, marked as a join
  (and again every `connection_interval` until the contact answers). The contact merges
  it, sees a change and floods the merged state to all its members (the joiner
  included, marked `flood`); each of them merges, and floods again only if it
  now knows more than that flood carried (a receiver whose merged state
  equals a flood's has nothing the flooder did not send everyone). The
  flood stops at the fixpoint because a receiver that learns nothing sends
  nothing. A receiver whose merged state differs from the sender's replies to
  the sender only (push-pull), so a stale sender catches up at once.
* Every `gossip_interval` a 16-byte digest of the state goes to one member,
  chosen in rotation (round r: the member r + our rank places after us in
  name order, so each member hears one digest per round); a member whose own
  state differs answers with its whole state, and push-pull does the rest.
  That repairs lost messages; every `connection_interval` each member without a live
  connection is re-dialled (``Connect``). A crashed member stays a member
  (Partisan #48) until someone removes it with ``Leave(node)``.
* When a connection comes up (``PeerUp``) to a member, we send it our state:
  a member that restarted with empty state learns the cluster, gossips its new
  incarnation, and the OR-Set replaces the old spec (Partisan test 40).
* ``Leave()``: remove our own tags, send that state to every member, then
  disconnect all with reason LEFT. We keep only ourselves and, until the next
  explicit join (ours, or another node's join-marked gossip), answer any gossip
  with a tombstones-only state that tells the sender we left and can add
  nothing, so a late or stale gossip neither re-adds us nor drags us back in
  (Partisan #191). ``Leave(node)`` removes a
  node's tags and floods; the removed node learns of it from that gossip (we
  send it the state too) and leaves itself.
* A node that finds its own spec removed or superseded by a newer incarnation
  of its name (it is a zombie of a restarted node) acts as if it had left.

Deviations from Partisan: Partisan sends the whole state to every member
every round; that is O(n^2) messages of O(n) bytes per round, which made an
idle 32-node mesh cost ~1 core here (issue 10), so the periodic round sends
a digest to one member (changes still flood at once, as in Partisan).
Gossip from a left node is ignored (Partisan's
restarted manager merges it, #191); the receiver replies to a stale sender
directly instead of waiting for the next round; ``Disconnect`` is never
emitted for an older incarnation replaced by a newer one, since the driver
keys connections by name and the new incarnation's session must survive.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

try:  # what hashlib.blake2b is, without hashlib's OpenSSL set-up (~0.65 MB RSS per node)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2b

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.orset import ORSet
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

__all__ = ["CONNECT_TIMER", "GOSSIP_TIMER", "Digest", "FullMesh", "Gossip", "MeshStatistics"]

logger = logging.getLogger(__name__)

GOSSIP_TIMER = "full-mesh.gossip"
CONNECT_TIMER = "full-mesh.connect"


@dataclass(frozen=True, slots=True)
class Gossip:
    """The sender's whole membership state.

    `join` marks an explicit join (``Join`` and its retries): the only gossip a
    node that left will merge, since it asks that node to take part again.
    `flood` says the sender sends this same state to all its members: a
    receiver whose merged state equals it has nothing to forward.
    """

    state: ORSet
    join: bool = False
    flood: bool = False


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest of the sender's state (the periodic round): a receiver that differs answers."""

    digest: bytes


DIGEST_BYTES = 16


def digest_of(state: ORSet) -> bytes:
    """A digest of `state` equal on every node that holds the same set (no hash seed in it)."""
    canonical = repr((sorted(state.dots.items()), sorted(state.removed)))
    return blake2b(canonical.encode(), digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class MeshStatistics:
    """Counters for the CLI and tests (immutable snapshot)."""

    members: int
    left: bool
    gossip_sent: int
    gossip_received: int
    rejected: int


class FullMesh:
    """Full-mesh manager (sans-IO): events in, actions out."""

    name = "full-mesh"

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        self.self_spec = self_spec
        self.config = config
        self.rng = rng  # unused: full mesh makes no random choices
        self._counter = 1
        self._set = ORSet().add(self_spec, self._counter)
        self._left = False
        self._farewell = ORSet()
        self._pending: dict[str, NodeSpec] = {}
        self._up: set[str] = set()
        self._gossip_sent = 0
        self._gossip_received = 0
        self._rejected = 0
        self._round = 0
        self._digest: tuple[ORSet, bytes] | None = None  # (the state it digests, digest)

    # --------------------------------------------------------------- queries

    @property
    def state(self) -> ORSet:
        """The replicated OR-Set (for tests and debugging)."""
        return self._set

    @property
    def left(self) -> bool:
        """True after ``Leave()`` (or after being removed), until the next ``Join``."""
        return self._left

    def members(self) -> Sequence[NodeSpec]:
        """Every member, self included, sorted by name."""
        return self._set.value()

    def active(self) -> Sequence[NodeSpec]:
        """Every member but self: full mesh connects to all of them."""
        return tuple(s for s in self._set.value() if s.name != self.self_spec.name)

    def passive(self) -> Sequence[NodeSpec]:
        """Always empty: full mesh has no passive view."""
        return ()

    def statistics(self) -> MeshStatistics:
        """An immutable snapshot of the counters."""
        return MeshStatistics(
            len(self.members()),
            self._left,
            self._gossip_sent,
            self._gossip_received,
            self._rejected,
        )

    # --------------------------------------------------------------- driving

    def start(self, now: float) -> list[Action]:
        """Arm the gossip and connection timers."""
        return [
            SetTimer(GOSSIP_TIMER, now + self.config.gossip_interval),
            SetTimer(CONNECT_TIMER, now + self.config.connection_interval),
        ]

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event and return the actions to carry out, in order."""
        if isinstance(event, Received):
            return self._on_received(event.sender, event.msg)
        if isinstance(event, TimerFired):
            return self._on_timer(event.name, now)
        if isinstance(event, PeerUp):
            return self._on_peer_up(event.peer)
        if isinstance(event, PeerDown):
            self._up.discard(event.peer.name)
            return []
        if isinstance(event, Join):
            return self._on_join(event.contact)
        if isinstance(event, Leave):
            return self._on_leave(event.node)
        raise TypeError(f"unknown membership event {event!r}")

    # -------------------------------------------------------------- handlers

    def _on_join(self, contact: NodeSpec) -> list[Action]:
        if contact.name == self.self_spec.name:
            raise ValueError(f"cannot join self ({contact})")
        # After a leave our set already holds a fresh tag for us (never sent),
        # and the tombstones of the old ones: re-joining needs nothing more.
        self._left = False
        self._pending[contact.name] = contact
        return [Connect(contact), self._gossip_to(contact, join=True)]

    def _on_leave(self, node: NodeSpec | None) -> list[Action]:
        if node is None or node.name == self.self_spec.name:
            return self._leave_self()
        if self._left:
            logger.info("ignoring leave(%s): this node has left the cluster", node)
            return []
        before = self.members()
        targets = [s for s in before if s.name != self.self_spec.name]
        self._set = self._set.remove_name(node.name)
        self._pending.pop(node.name, None)
        if self.members() == before:
            return []
        # The removed node gets the state too, so it learns it was removed.
        actions: list[Action] = [self._gossip_to(s, flood=True) for s in targets]
        actions.append(Disconnect(_by_name(before, node.name), DisconnectReason.LEFT))
        self._up.discard(node.name)
        return actions + self._members_changed(before)

    def _leave_self(self) -> list[Action]:
        if self._left:
            return []
        before = self.members()
        peers = [s for s in before if s.name != self.self_spec.name]
        peers += [s for n, s in sorted(self._pending.items()) if all(p.name != n for p in peers)]
        self._set = self._set.remove_name(self.self_spec.name)
        actions: list[Action] = [self._gossip_to(s) for s in peers]
        actions += [Disconnect(s, DisconnectReason.LEFT) for s in peers]
        self._become_left()
        return actions + self._members_changed(before)

    def _become_left(self) -> None:
        """Keep only ourselves; remember the tombstones that tell others we left."""
        self._farewell = ORSet(
            {t: s for t, s in self._set.dots.items() if s.name == self.self_spec.name},
            (t for t in self._set.removed if t[0] == self.self_spec.name),
        ).tombstones_only()
        self._counter = self._set.max_counter(self.self_spec.name, self.self_spec.incarnation) + 1
        self._set = ORSet().add(self.self_spec, self._counter).merge(self._farewell)
        self._left = True
        self._pending.clear()
        self._up.clear()

    def _on_received(self, sender: NodeSpec, msg: object) -> list[Action]:
        if isinstance(msg, Digest):
            return self._on_digest(sender, msg)
        if not isinstance(msg, Gossip):
            return self._reject(sender, f"unexpected message type {type(msg).__name__}")
        try:
            # getattr: a peer's object may lack fields its class declares.
            theirs = ORSet.check(getattr(msg, "state", None))
        except ValueError as exc:
            return self._reject(sender, str(exc))
        self._gossip_received += 1
        self._pending.pop(sender.name, None)
        if self._left and getattr(msg, "join", False) is True:
            self._left = False  # explicitly joined: take part again, fresh tag and all
        if self._left:
            # Tell a sender that still lists us that we left; never merge.
            if theirs.tags_of(self.self_spec.name) and theirs.merge(self._farewell) != theirs:
                return [self._send(sender, self._farewell)]
            return []
        before = self.members()
        merged = self._set.merge(theirs)
        if merged == self._set:
            return [] if merged == theirs else [self._gossip_to(sender)]
        self._set = merged
        if self._removed_self():
            return self._removed_by_others(before)
        after = self.members()
        before_names = {s.name: s for s in before}
        actions: list[Action] = []
        for spec in after:
            if spec.name != self.self_spec.name and before_names.get(spec.name) != spec:
                actions.append(Connect(spec))
        after_names = {s.name for s in after}
        for spec in before:
            if spec.name not in after_names:
                actions.append(Disconnect(spec, DisconnectReason.LEFT))
                self._up.discard(spec.name)
        skip_sender = merged == theirs
        if skip_sender and getattr(msg, "flood", False) is True:
            # The sender floods this very state to its members, which are
            # ours: forwarding it would only repeat it (O(n^2) messages per
            # change instead of O(n); joins of a whole cluster at once were
            # O(n^3)). A lost copy is repaired by the periodic digests.
            return actions + self._members_changed(before)
        for spec in after:
            if spec.name == self.self_spec.name or (skip_sender and spec.name == sender.name):
                continue
            actions.append(self._gossip_to(spec, flood=True))
        if not skip_sender and sender.name not in after_names:
            actions.append(self._gossip_to(sender))  # a removed sender learns it
        return actions + self._members_changed(before)

    def _on_digest(self, sender: NodeSpec, msg: Digest) -> list[Action]:
        digest = getattr(msg, "digest", None)
        if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
            return self._reject(sender, "malformed digest")
        if self._left:
            # The sender still counts us a member: tell it we left.
            return [self._send(sender, self._farewell)]
        if digest == self._own_digest():
            return []
        return [self._gossip_to(sender)]  # it merges, and answers if we miss something

    def _own_digest(self) -> bytes:
        if self._digest is None or self._digest[0] is not self._set:
            self._digest = (self._set, digest_of(self._set))
        return self._digest[1]

    def _removed_by_others(self, before: Sequence[NodeSpec]) -> list[Action]:
        """Our spec was removed, or a newer incarnation of us exists: we are out."""
        logger.warning("%s was removed from the cluster (or superseded)", self.self_spec)
        peers = [s for s in before if s.name != self.self_spec.name]
        actions: list[Action] = [Disconnect(s, DisconnectReason.LEFT) for s in peers]
        self._become_left()
        return actions + self._members_changed(before)

    def _on_peer_up(self, peer: NodeSpec) -> list[Action]:
        if self._left:
            return []
        member = self._set.lookup(peer.name)
        if member is None and peer.name not in self._pending:
            return []
        self._up.add(peer.name)
        return [self._gossip_to(peer, join=member is None)]

    def _on_timer(self, name: str, now: float) -> list[Action]:
        if name == GOSSIP_TIMER:
            actions: list[Action] = []
            if not self._left:
                actions = self._digest_round()
            return [*actions, SetTimer(GOSSIP_TIMER, now + self.config.gossip_interval)]
        if name == CONNECT_TIMER:
            actions = []
            if not self._left:
                actions = [Connect(s) for s in self.active() if s.name not in self._up]
                # A contact that never answered: dial and send the join again.
                for contact_name in sorted(self._pending):
                    if self._set.lookup(contact_name) is None:
                        actions.append(self._gossip_to(self._pending[contact_name], join=True))
            return [*actions, SetTimer(CONNECT_TIMER, now + self.config.connection_interval)]
        logger.warning("full-mesh: ignoring unknown timer %r", name)
        return []

    # ------------------------------------------------------------- internals

    def _digest_round(self) -> list[Action]:
        """One periodic round: our digest to the member `round` places after us, in name order."""
        members = self.members()
        if len(members) < 2:
            return []
        self._round += 1
        rank = next(i for i, s in enumerate(members) if s.name == self.self_spec.name)
        step = 1 + (self._round - 1) % (len(members) - 1)  # 1 .. n-1: never ourselves
        return [Send(members[(rank + step) % len(members)], Digest(self._own_digest()))]

    def _removed_self(self) -> bool:
        return self._set.lookup(self.self_spec.name) != self.self_spec

    def _gossip_to(self, peer: NodeSpec, *, join: bool = False, flood: bool = False) -> Send:
        return self._send(peer, self._set, join=join, flood=flood)

    def _send(
        self, peer: NodeSpec, state: ORSet, *, join: bool = False, flood: bool = False
    ) -> Send:
        self._gossip_sent += 1
        return Send(peer, Gossip(state, join, flood))

    def _members_changed(self, before: Sequence[NodeSpec]) -> list[Action]:
        after = tuple(self.members())
        return [] if tuple(before) == after else [MembersChanged(after)]

    def _reject(self, sender: NodeSpec, why: str) -> list[Action]:
        self._rejected += 1
        logger.warning("full-mesh: dropped a bad message from %s: %s", sender, why)
        return []


def _by_name(specs: Sequence[NodeSpec], name: str) -> NodeSpec:
    return next(s for s in specs if s.name == name)

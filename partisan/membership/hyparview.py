"""HyParView (Leitão, Pereira, Rodrigues; DSN 2007, TR DI-FCUL TR-07-13) as a pure state machine.

Theory of operation
-------------------
Every node keeps two partial views of the cluster, keyed by node name:

* the **active view** (at most ``active_size`` = 5 peers): symmetric, one open
  connection per peer; broadcasts flood it and its connections double as the
  failure detector. `members()` is this view plus the node itself.
* the **passive view** (at most ``passive_size`` = 30 peers): live-looking
  backups with no connection, refreshed by periodic shuffles, from which the
  active view is repaired.

Join: the newcomer sends `JoinRequest` to its contact. The contact adds it to
its active view (evicting a random peer with a `DisconnectNotice` if full),
answers `NeighborNotice` and sends `ForwardJoin(newcomer, ARWL)` to all its other
active peers. Each walk takes a random active hop, decrementing the TTL; the node
that holds it at TTL 0 (or whose active view has at most one peer) adds the
newcomer and sends it `NeighborNotice`; the node seeing TTL == PRWL also keeps it
in its passive view. A `NeighborNotice` must be accepted (the sender already
committed), so views stay symmetric.

Repair: when an active peer fails (`PeerDown`) or disconnects us, we send a
`NeighborRequest` to a random passive peer, one at a time: HIGH priority if our
active view is empty (the receiver must accept, evicting if needed), LOW
otherwise (accepted only into a free slot). A refusal, an unreachable peer or a
request unanswered for one promotion interval moves on to the next untried
passive peer. A periodic promotion timer restarts repair while the active view
is below ``active_min_size``.

Shuffle: every ``shuffle_interval`` a node sends itself, ``shuffle_ka`` active
and ``shuffle_kp`` passive peers on a random walk (TTL ``shuffle_ttl``) over
active links. The last node replies straight to the origin with as many
passive ids as it received; both sides merge the other's ids into their
passive views, evicting first the ids they sent.

Epochs: the epoch is the `NodeSpec` incarnation. A message from an older
incarnation than the one in our views is stale and ignored (so a disconnect sent
by a node's previous life cannot cut its new one); a newer incarnation of an
active peer means the old one died. `DisconnectNotice` also carries the
incarnation of the node it is meant for.

Reservations: ``reservations`` lists roles (`NodeSpec.role`). The first peer of
each reserved role holds that role's slot: it is always accepted (evicting a
random unreserved peer if full) and never evicted at random.

Invariants: no view contains self; active and passive are disjoint;
``len(active) <= active_size``, ``len(passive) <= passive_size``. Iteration is
over dicts (insertion order, identical in every process) and randomness comes
only from the injected `random.Random`, so a seed replays a run exactly.

Deviations from the paper (and from Partisan), each with its reason
------------------------------------------------------------------
* The paper has no leave; Partisan returns ``not_implemented``. We send
  `LeaveNotice` to the active peers so they forget us and repair at once,
  instead of waiting for failure detection.
* The paper's contact relies on the TCP connection to make the link symmetric;
  we answer with an explicit `NeighborNotice` (as Partisan does), because our
  drivers report links, not who opened them.
* The paper repairs only after a failure; we also repair after a
  `DisconnectNotice` (with LOW priority, so it cannot cascade evictions), since
  otherwise every eviction during joins leaves a node one peer short for good
  (the paper's Fig. 5 has almost all in-degrees at 5).
* Partisan always asks with HIGH priority; we follow the paper (HIGH only when
  the active view is empty), because forced acceptances evict healthy links.
* Partisan evicts a random passive entry on overflow; we follow the paper and
  evict the entries we just sent in the shuffle first.
* Symmetry probe (ours): `ForwardJoin` and `Shuffle` travel only over active
  links, so receiving one from a peer that is not in our active view means the
  link is one-sided (a lost or reordered message); we answer `DisconnectNotice`
  so the sender drops it. This makes symmetry self-healing under message loss.
* Lost peers (ours, after Serf's reconnect of failed members): an active peer
  that failed is remembered for ``LOST_TIMEOUT_INTERVALS`` promotion intervals
  and one of them is asked, each interval, with HIGH priority to restore the
  link. Without it, two halves of a healed network partition each repair into
  full, disjoint active views and never merge (Partisan issue #75's islands).
* Partisan's epoch is a restart counter on disk plus a per-peer disconnect
  counter; we use the incarnation, which already grows on every restart, and
  rely on per-pair FIFO delivery of the membership channel for the rest.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partisan.config import Config
from partisan.errors import ConfigError
from partisan.identity import NodeSpec
from partisan.membership.hyparview_messages import (
    DisconnectNotice,
    ForwardJoin,
    JoinRequest,
    LeaveNotice,
    NeighborNotice,
    NeighborReply,
    NeighborRequest,
    Priority,
    Shuffle,
    ShuffleReply,
    check,
)
from partisan.membership.types import (
    Action,
    CancelTimer,
    Connect,
    Disconnect,
    DisconnectReason,
    Event,
    Join,
    Leave,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

__all__ = [
    "ESCALATE_AFTER_INTERVALS",
    "LOST_TIMEOUT_INTERVALS",
    "PROMOTE_TIMER",
    "SHUFFLE_TIMER",
    "HyParView",
    "HyParViewStatistics",
]

logger = logging.getLogger(__name__)

SHUFFLE_TIMER = "hyparview.shuffle"
PROMOTE_TIMER = "hyparview.promote"
#: How many promotion intervals a failed active peer stays a reconnect candidate.
LOST_TIMEOUT_INTERVALS = 60
#: Promotion intervals a node may stay short of a full active view before it
#: asks one passive peer with HIGH priority.
ESCALATE_AFTER_INTERVALS = 4

_VIEW_CHANGE = DisconnectReason.VIEW_CHANGE
_NOTICE = NeighborNotice()
_ACCEPT = NeighborReply(True)
_REFUSE = NeighborReply(False)
_HIGH = NeighborRequest(Priority.HIGH)
_LOW = NeighborRequest(Priority.LOW)


@dataclass(frozen=True, slots=True)
class HyParViewStatistics:
    """Counters of one manager (STYLE.md habit 10)."""

    active: int
    passive: int
    lost: int
    joins_handled: int
    shuffles_started: int
    neighbor_requests: int
    evictions: int
    stale_ignored: int
    asymmetric_probes: int
    rejected: int


class HyParView:
    """The HyParView membership manager; see the module docstring."""

    name = "hyparview"

    def __init__(self, self_spec: NodeSpec, config: Config, rng: random.Random) -> None:
        hv = config.hyparview
        if len(hv.reservations) > hv.active_size:
            raise ConfigError(
                f"hyparview.reservations: {len(hv.reservations)} reserved roles do not fit "
                f"in active_size ({hv.active_size})"
            )
        self.self_spec = self_spec
        self._me = self_spec.name
        self._rng = rng
        self._random = rng.random
        self._active_size = hv.active_size
        self._active_min = hv.active_min_size
        self._passive_size = hv.passive_size
        self._arwl = hv.arwl
        self._prwl = hv.prwl
        self._ka = hv.shuffle_ka
        self._kp = hv.shuffle_kp
        self._shuffle_ttl = hv.shuffle_ttl
        self._shuffle_interval = hv.shuffle_interval
        self._promote_interval = hv.random_promotion_interval
        self._lost_timeout = LOST_TIMEOUT_INTERVALS * hv.random_promotion_interval

        self._active: dict[str, NodeSpec] = {}
        self._passive: dict[str, NodeSpec] = {}
        self._reserved: dict[str, str | None] = {role: None for role in hv.reservations}
        # name -> (spec, when lost, was an active peer): unreachable peers to retry
        self._lost: dict[str, tuple[NodeSpec, float, bool]] = {}
        self._pending: NodeSpec | None = None  # outstanding repair NeighborRequest
        self._pending_since = 0.0
        self._probe: str | None = None  # lost peer asked to restore the link
        self._tried: set[str] = set()  # membership tests only, never iterated
        self._attempts = 0  # neighbor requests left in the current repair round
        self._urgent = False  # this round asks with HIGH priority
        self._hungry = 0  # consecutive promotion intervals with a view not full
        self._escalate = False  # the next request is HIGH: we stayed short too long
        self._sent_in_shuffle: tuple[str, ...] = ()
        self._contact: NodeSpec | None = None
        self._left = False
        self._now = 0.0
        self._changed = False
        self._wants_repair = False
        self._active_cache: tuple[NodeSpec, ...] | None = ()
        self._members_cache: tuple[NodeSpec, ...] | None = None

        self._joins = self._shuffles = self._requests = self._evictions = 0
        self._stale = self._probes = self._rejected = 0
        self._handlers: dict[type, Callable[[NodeSpec, Any, list[Action]], None]] = {
            Shuffle: self._on_shuffle,
            ShuffleReply: self._on_shuffle_reply,
            ForwardJoin: self._on_forward_join,
            JoinRequest: self._on_join_request,
            NeighborNotice: self._on_neighbor_notice,
            NeighborRequest: self._on_neighbor_request,
            NeighborReply: self._on_neighbor_reply,
            DisconnectNotice: self._on_disconnect,
            LeaveNotice: self._on_leave,
        }

    # ------------------------------------------------------------------ views

    def members(self) -> tuple[NodeSpec, ...]:
        """The active view plus this node, sorted by name."""
        if self._members_cache is None:
            everyone = [*self._active.values(), self.self_spec]
            everyone.sort(key=_name)
            self._members_cache = tuple(everyone)
        return self._members_cache

    def active(self) -> tuple[NodeSpec, ...]:
        """The active view (insertion order)."""
        if self._active_cache is None:
            self._active_cache = tuple(self._active.values())
        return self._active_cache

    def passive(self) -> tuple[NodeSpec, ...]:
        """The passive view (insertion order)."""
        return tuple(self._passive.values())

    def statistics(self) -> HyParViewStatistics:
        """A snapshot of the counters."""
        return HyParViewStatistics(
            active=len(self._active),
            passive=len(self._passive),
            lost=len(self._lost),
            joins_handled=self._joins,
            shuffles_started=self._shuffles,
            neighbor_requests=self._requests,
            evictions=self._evictions,
            stale_ignored=self._stale,
            asymmetric_probes=self._probes,
            rejected=self._rejected,
        )

    def __repr__(self) -> str:
        return (
            f"<HyParView {self._me} active={sorted(self._active)} "
            f"passive={len(self._passive)} lost={len(self._lost)}>"
        )

    # ----------------------------------------------------------------- driver

    def start(self, now: float) -> list[Action]:
        """Arm the shuffle and promotion timers (first ones jittered)."""
        self._now = now
        return self._arm_timers(now)

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event at time `now` and return what to do."""
        self._now = now
        out: list[Action] = []
        kind = type(event)
        if kind is Received:
            self._on_received(event.sender, event.msg, out)  # type: ignore[union-attr]
        elif kind is PeerDown:
            self._on_peer_down(event.peer, event.reason, out)  # type: ignore[union-attr]
        elif kind is TimerFired:
            self._on_timer(event.name, out)  # type: ignore[union-attr]
        elif kind is Join:
            self._on_join(event.contact, out)  # type: ignore[union-attr]
        elif kind is Leave:
            self._on_leave_event(event.node, out)  # type: ignore[union-attr]
        elif kind is not PeerUp:  # a link coming up changes no view: views drive links
            raise TypeError(f"not a membership event: {event!r}")
        if self._wants_repair:
            self._wants_repair = False
            self._promote(out)
        if self._changed:
            self._changed = False
            out.append(MembersChanged(self.members()))
        return out

    # ------------------------------------------------------- local requests

    def _arm_timers(self, now: float) -> list[Action]:
        return [
            SetTimer(SHUFFLE_TIMER, now + self._shuffle_interval * (0.5 + self._random())),
            SetTimer(PROMOTE_TIMER, now + self._promote_interval * (0.5 + self._random())),
        ]

    def _on_join(self, contact: NodeSpec, out: list[Action]) -> None:
        if contact.name == self._me:
            raise ValueError(f"cannot join through ourselves ({contact})")
        if self._left:
            self._left = False
            out.extend(self._arm_timers(self._now))
        self._contact = contact
        out.append(Send(contact, JoinRequest()))

    def _on_leave_event(self, node: NodeSpec | None, out: list[Action]) -> None:
        if node is None or node.name == self._me:
            for peer in self._active.values():
                out.append(Send(peer, LeaveNotice()))
                out.append(Disconnect(peer, DisconnectReason.LEFT))
            self._changed = bool(self._active)
            self._active_cache = self._members_cache = None
            self._active.clear()
            self._passive.clear()
            self._lost.clear()
            self._reserved = dict.fromkeys(self._reserved)
            self._pending = self._contact = None
            self._probe = None
            self._left = True
            out.append(CancelTimer(SHUFFLE_TIMER))
            out.append(CancelTimer(PROMOTE_TIMER))
            return
        # Removing another node is local in HyParView (there is no global view):
        # forget it, and tell it to drop its side of our link.
        self._passive.pop(node.name, None)
        self._lost.pop(node.name, None)
        known = self._remove_active(node.name)
        if known is not None:
            out.append(Send(known, DisconnectNotice(known.incarnation)))
            out.append(Disconnect(known, DisconnectReason.LEFT))
            self._trigger_repair()

    # ------------------------------------------------------------- messages

    def _on_received(self, sender: NodeSpec, msg: Any, out: list[Action]) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None or type(sender) is not NodeSpec or not check(msg):
            self._rejected += 1
            logger.warning("%s: dropped malformed message from %s: %.200r", self._me, sender, msg)
            return
        if self._left:
            return
        known = self._active.get(sender.name)
        if known is None or known.incarnation != sender.incarnation:  # else: the fast path
            if sender.name == self._me or not self._admit(sender, out):
                return
        handler(sender, msg, out)

    def _admit(self, spec: NodeSpec, out: list[Action]) -> bool:
        """Reconcile `spec`'s incarnation with our views; False if it is stale."""
        name = spec.name
        known = self._active.get(name)
        if known is None:
            known = self._passive.get(name)
            if known is not None and known.incarnation != spec.incarnation:
                if known.incarnation > spec.incarnation:
                    self._stale += 1
                    return False
                self._passive[name] = spec
            return True
        if known.incarnation == spec.incarnation:
            return True
        if known.incarnation > spec.incarnation:
            self._stale += 1
            return False
        # A newer incarnation: the life we were linked to has ended.
        self._remove_active(name)
        out.append(Disconnect(known, DisconnectReason.FAILED))
        self._trigger_repair()
        return True

    def _on_join_request(self, sender: NodeSpec, msg: JoinRequest, out: list[Action]) -> None:
        self._joins += 1
        if sender.name in self._active:
            out.append(Send(sender, _NOTICE))  # a repeated join: confirm, walk no more
            return
        if not self._add_active(sender, out, force=True):
            self._refuse(sender, out)
            return
        # Seed the newcomer's passive view: if we fail before its walks end,
        # it must still know someone.
        others = [p for p in self._active.values() if p.name != sender.name]
        seed = self._sample(others, self._ka) + self._sample(list(self._passive.values()), self._kp)
        out.append(Send(sender, NeighborNotice(tuple(seed))))
        walk = ForwardJoin(sender, self._arwl)
        for peer in self._active.values():
            if peer.name != sender.name:
                out.append(Send(peer, walk))

    def _on_forward_join(self, sender: NodeSpec, msg: ForwardJoin, out: list[Action]) -> None:
        self._probe_link(sender, out)
        node = msg.node
        name = node.name
        if name == self._me or name in self._active or not self._admit(node, out):
            return
        if msg.ttl > 0 and len(self._active) > 1:
            if msg.ttl == self._prwl:
                self._add_passive(node, ())
            hop = self._hop(sender.name, name)
            if hop is not None:
                out.append(Send(hop, ForwardJoin(node, msg.ttl - 1)))
                return
        if self._add_active(node, out, force=True):
            out.append(Send(node, _NOTICE))
        else:
            self._add_passive(node, ())

    def _on_neighbor_notice(self, sender: NodeSpec, msg: NeighborNotice, out: list[Action]) -> None:
        self._settle(sender)
        if sender.name not in self._active and not self._add_active(sender, out, force=True):
            self._refuse(sender, out)
        if msg.nodes:
            self._merge(msg.nodes, [])

    def _on_neighbor_request(
        self, sender: NodeSpec, msg: NeighborRequest, out: list[Action]
    ) -> None:
        high = msg.priority is Priority.HIGH
        if sender.name in self._active or self._add_active(sender, out, force=high):
            out.append(Send(sender, _ACCEPT))
        else:
            out.append(Send(sender, _REFUSE))
            self._add_passive(sender, ())

    def _on_neighbor_reply(self, sender: NodeSpec, msg: NeighborReply, out: list[Action]) -> None:
        probed = self._probe == sender.name
        was_pending = self._settle(sender)
        if not msg.accepted:
            self._lost.pop(sender.name, None)  # alive after all, merely full
            self._add_passive(sender, ())
        elif sender.name not in self._active and not self._add_active(sender, out, force=probed):
            # We filled up while the request was in flight: undo the peer's side.
            self._refuse(sender, out)
        if was_pending:
            self._wants_repair = True

    def _on_disconnect(self, sender: NodeSpec, msg: DisconnectNotice, out: list[Action]) -> None:
        if msg.incarnation != self.self_spec.incarnation:
            self._stale += 1  # meant for a previous life of this node
            return
        if self._remove_active(sender.name) is None:
            return
        self._add_passive(sender, ())
        out.append(Disconnect(sender, _VIEW_CHANGE))
        # One request, not a round: a disconnect is a peer's decision, usually a
        # join evicting us, and most peers are full then; periodic promotion
        # keeps trying (a round here cost ~10 refused requests per eviction).
        self._trigger_repair(1 if self._active else 1 << 30)
        self._tried.add(sender.name)  # it just chose to drop us: ask someone else

    def _on_leave(self, sender: NodeSpec, msg: LeaveNotice, out: list[Action]) -> None:
        name = sender.name
        self._passive.pop(name, None)
        self._lost.pop(name, None)
        if self._settle(sender):
            self._wants_repair = True
        if self._remove_active(name) is not None:
            out.append(Disconnect(sender, DisconnectReason.LEFT))
            self._trigger_repair()

    def _on_shuffle(self, sender: NodeSpec, msg: Shuffle, out: list[Action]) -> None:
        self._probe_link(sender, out)
        origin = msg.origin
        if origin.name == self._me:
            return
        if msg.ttl > 0 and len(self._active) > 1:
            hop = self._hop(sender.name, origin.name)
            if hop is not None:
                out.append(Send(hop, Shuffle(origin, msg.nodes, msg.ttl - 1)))
                return
        reply = self._sample(list(self._passive.values()), len(msg.nodes))
        out.append(Send(origin, ShuffleReply(tuple(reply))))
        self._merge(msg.nodes, [p.name for p in reply])

    def _on_shuffle_reply(self, sender: NodeSpec, msg: ShuffleReply, out: list[Action]) -> None:
        self._merge(msg.nodes, list(self._sent_in_shuffle))

    def _merge(self, nodes: tuple[NodeSpec, ...], evict_first: list[str]) -> None:
        """Add a peer's sample to the passive view, evicting `evict_first` first."""
        add = self._add_passive
        for node in nodes:
            if type(node) is NodeSpec:
                add(node, evict_first)
            else:
                self._rejected += 1

    # ----------------------------------------------------- failures, timers

    def _on_peer_down(self, peer: NodeSpec, reason: str, out: list[Action]) -> None:
        name = peer.name
        if self._settle(peer):
            self._wants_repair = True
        if self._probe == name:
            self._probe = None
        if reason == "restarted" or reason == "left":
            self._lost.pop(name, None)  # a newer life exists, or it said goodbye
        gone = reason == "left" or reason == "restarted"
        known = self._active.get(name)
        if known is not None and known.incarnation <= peer.incarnation:
            self._remove_active(name)
            if not gone:
                self._remember_lost(known, was_active=True)
            self._trigger_repair()
            return
        known = self._passive.get(name)
        if known is not None and known.incarnation <= peer.incarnation:
            del self._passive[name]
            if not gone:
                self._remember_lost(known, was_active=False)

    def _on_timer(self, name: str, out: list[Action]) -> None:
        if self._left:
            return
        now = self._now
        if name == SHUFFLE_TIMER:
            out.append(SetTimer(SHUFFLE_TIMER, now + self._shuffle_interval))
            self._start_shuffle(out)
        elif name == PROMOTE_TIMER:
            out.append(SetTimer(PROMOTE_TIMER, now + self._promote_interval))
            self._periodic_promotion(out)

    def _start_shuffle(self, out: list[Action]) -> None:
        if not self._active:
            return
        self._shuffles += 1
        active = list(self._active.values())
        target = self._pick(active)
        chosen = self._sample(active, self._ka) + self._sample(
            list(self._passive.values()), self._kp
        )
        self._sent_in_shuffle = tuple(p.name for p in chosen)
        msg = Shuffle(self.self_spec, (self.self_spec, *chosen), self._shuffle_ttl)
        out.append(Send(target, msg))

    def _periodic_promotion(self, out: list[Action]) -> None:
        now = self._now
        if self._pending is not None and now - self._pending_since >= self._promote_interval:
            # Unanswered for a whole interval: treat it as unreachable.
            if self._passive.pop(self._pending.name, None) is not None:
                self._remember_lost(self._pending, was_active=False)
            self._pending = None
        if self._lost:
            self._probe_lost(out)
        size = len(self._active)
        self._hungry = self._hungry + 1 if size < self._active_size else 0
        if size < self._active_min:
            self._trigger_repair(urgent=True)
        elif size < self._active_size:
            # Not full: one LOW request per interval. A node that stays short
            # for ESCALATE_AFTER_INTERVALS forces one link (HIGH): otherwise a
            # saturated group never lets a short one in, and the two stay
            # islands (found by the property tests).
            if self._hungry > ESCALATE_AFTER_INTERVALS:
                self._hungry = 0
                self._escalate = True
            self._trigger_repair(1)
        if not self._active and not self._passive and self._contact is not None:
            out.append(Send(self._contact, JoinRequest()))  # isolated: retry the join

    def _probe_lost(self, out: list[Action]) -> None:
        """Ask one unreachable peer (if not expired) to link with us again.

        A lost *active* peer gets HIGH priority: the link was cut by a failure,
        not by a decision, and restoring it is what merges healed partitions.
        A lost passive peer gets the usual priority (HIGH only when we have no
        neighbor at all: an isolated node must be taken in).
        """
        lost = self._lost
        horizon = self._now - self._lost_timeout
        for name in [n for n, entry in lost.items() if entry[1] <= horizon]:
            del lost[name]
        if not lost:
            return
        spec, _, was_active = lost[self._pick_key(list(lost))]
        self._requests += 1
        if was_active or not self._active:
            self._probe = spec.name
            out.append(Send(spec, _HIGH))
        else:
            out.append(Send(spec, _LOW))

    # ------------------------------------------------------------- helpers

    def _pick_key(self, keys: list[str]) -> str:
        return keys[int(self._random() * len(keys))]

    def _pick(self, items: list[NodeSpec]) -> NodeSpec:
        return items[int(self._random() * len(items))]

    def _sample(self, items: list[NodeSpec], k: int) -> list[NodeSpec]:
        """`k` random entries of `items` (which we own and reorder); all if fewer.

        A partial Fisher-Yates on `self._random`: `random.sample` costs ~8 us a
        call, which the simulator pays millions of times.
        """
        n = len(items)
        if k >= n:
            return items
        rnd = self._random
        for i in range(k):
            j = i + int(rnd() * (n - i))
            items[i], items[j] = items[j], items[i]
        return items[:k]

    def _hop(self, avoid1: str, avoid2: str) -> NodeSpec | None:
        """A random active peer named neither `avoid1` nor `avoid2`, if any."""
        active = self._active_cache
        if active is None:
            active = self.active()
        n = len(active)
        for _ in range(3):  # rejection sampling: at most 2 of n >= 2 peers are excluded
            peer = active[int(self._random() * n)]
            if peer.name != avoid1 and peer.name != avoid2:
                return peer
        hops = [p for p in active if p.name != avoid1 and p.name != avoid2]
        return self._pick(hops) if hops else None

    def _trigger_repair(self, attempts: int = 1 << 30, *, urgent: bool = False) -> None:
        """Start a repair round of at most `attempts` requests (default: until one succeeds).

        An `urgent` round (periodic promotion below ``active_min_size``) asks
        with HIGH priority until the minimum is reached, as Partisan does.
        """
        self._tried.clear()
        if attempts > self._attempts:
            self._attempts = attempts
        self._urgent = urgent
        self._wants_repair = True

    def _promote(self, out: list[Action]) -> None:
        """Ask one untried passive peer to join the active view, if it has room."""
        if self._pending is not None:
            return
        if len(self._active) >= self._active_size or self._attempts <= 0:
            self._attempts = 0
            return
        tried = self._tried
        candidates = [p for p in self._passive.values() if p.name not in tried]
        if not candidates:
            self._attempts = 0
            return
        self._attempts -= 1
        target = self._pick(candidates)
        tried.add(target.name)
        self._pending = target
        self._pending_since = self._now
        self._requests += 1
        size = len(self._active)
        high = not size or self._escalate or (self._urgent and size < self._active_min)
        self._escalate = False
        out.append(Send(target, _HIGH if high else _LOW))

    def _settle(self, peer: NodeSpec) -> bool:
        """Clear the pending request if it was to `peer`; True if it was."""
        if self._pending is not None and self._pending.name == peer.name:
            self._pending = None
            return True
        return False

    def _probe_link(self, sender: NodeSpec, out: list[Action]) -> None:
        if sender.name not in self._active:
            self._probes += 1
            out.append(Send(sender, DisconnectNotice(sender.incarnation)))

    def _refuse(self, peer: NodeSpec, out: list[Action]) -> None:
        out.append(Send(peer, DisconnectNotice(peer.incarnation)))
        self._add_passive(peer, ())

    def _add_active(self, spec: NodeSpec, out: list[Action], *, force: bool) -> bool:
        """Put `spec` in the active view; if full, evict only when forced or reserved."""
        name = spec.name
        reserved = self._reserved
        role = spec.role if reserved and reserved.get(spec.role or "", 1) is None else None
        if len(self._active) >= self._active_size and (
            not (force or role is not None) or not self._evict(out)
        ):
            return False
        self._passive.pop(name, None)
        self._lost.pop(name, None)
        self._active[name] = spec
        if role is not None:
            reserved[role] = name
        self._changed = True
        self._active_cache = self._members_cache = None
        out.append(Connect(spec))
        return True

    def _evict(self, out: list[Action]) -> bool:
        """Move a random unreserved active peer to the passive view."""
        holders = self._reserved.values()
        victims = [p for p in self._active.values() if p.name not in holders]
        if not victims:
            return False
        victim = self._pick(victims)
        self._evictions += 1
        self._remove_active(victim.name)
        self._add_passive(victim, ())
        out.append(Send(victim, DisconnectNotice(victim.incarnation)))
        out.append(Disconnect(victim, _VIEW_CHANGE))
        return True

    def _remove_active(self, name: str) -> NodeSpec | None:
        spec = self._active.pop(name, None)
        if spec is not None:
            self._changed = True
            self._active_cache = self._members_cache = None
            if spec.role in self._reserved and self._reserved[spec.role] == name:
                self._reserved[spec.role] = None
        return spec

    def _add_passive(self, spec: NodeSpec, evict_first: list[str] | tuple[()]) -> None:
        name = spec.name
        if name == self._me or name in self._active:
            return
        passive = self._passive
        known = passive.get(name)
        if known is not None:
            if spec.incarnation > known.incarnation:
                passive[name] = spec
            return
        if len(passive) >= self._passive_size:
            victim = None
            while evict_first:  # consumed as used: each is evicted at most once
                candidate = evict_first.pop()
                if candidate in passive:
                    victim = candidate
                    break
            if victim is None:
                keys = list(passive)
                victim = keys[int(self._random() * len(keys))]
            del passive[victim]
        passive[name] = spec

    def _remember_lost(self, spec: NodeSpec, *, was_active: bool) -> None:
        lost = self._lost
        previous = lost.pop(spec.name, None)
        if previous is not None and previous[2]:
            was_active = True  # once a neighbor, its link is still worth restoring
        if len(lost) >= self._passive_size:
            del lost[next(iter(lost))]  # oldest first
        lost[spec.name] = (spec, self._now, was_active)


def _name(spec: NodeSpec) -> str:
    return spec.name

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
answers `NeighborNotice` carrying a sample of its views (the newcomer's first
passive view) and sends `ForwardJoin(newcomer, ARWL)` to all its other active
peers. Each walk takes a random active hop, decrementing the TTL; the node that
holds it at TTL 0 (or whose active view has at most one peer) adds the newcomer
and sends it `NeighborNotice`; the node seeing TTL == PRWL also keeps it in its
passive view. A `NeighborNotice` must be accepted (the sender already
committed), so views stay symmetric.

Repair (`hyparview_repair`): when an active peer fails (`PeerDown`) we ask
random passive peers, one at a time, with `NeighborRequest` until one accepts:
HIGH priority if our active view is empty (the receiver must accept, evicting
if needed), LOW otherwise (accepted only into a free slot). A refusal, an
unreachable peer or a request unanswered for one promotion interval moves on to
the next. After a `DisconnectNotice`, and every ``random_promotion_interval``
while the view is not full, we ask once; below ``active_min_size`` the periodic
round asks with HIGH priority. Unreachable peers are kept as *lost* and retried.

Shuffle (`hyparview_shuffle`): every ``shuffle_interval`` (each period jittered
by +-25%, so nodes never stay in lockstep) a node sends itself,
``shuffle_ka`` active and ``shuffle_kp`` passive peers on a random walk (TTL
``shuffle_ttl``) over active links. The last node replies straight to the
origin with as many passive ids as it received; both sides merge the other's
ids into their passive views, evicting first the ids they sent. The same tick
sends `PassiveProbe` to one random passive entry: a dead entry fails the send
and is dropped; a live one below ``active_min_size`` answers with a HIGH
`NeighborRequest`, which the prober accepts (evicting if full).

Epochs: the epoch is the `NodeSpec` incarnation. A message from an older
incarnation than the one in our views is stale and ignored (so a disconnect sent
by a node's previous life cannot cut its new one); a newer incarnation of an
active peer means the old one died. `DisconnectNotice` also carries the
incarnation of the node it is meant for.

Reservations: ``reservations`` lists roles (`NodeSpec.role`). The first peer of
each reserved role holds that role's slot: it is always accepted (evicting a
random unreserved peer if full) and never evicted at random.

Leave: `Leave()` sends `LeaveNotice` to every active peer, which forget us and
repair at once; `Leave(node)` drops `node` from our own views only (there is no
global view to remove it from) and tells it to drop its side of the link.

Invariants (`hyparview_views`): no view contains self; active and passive are
disjoint; ``len(active) <= active_size``, ``len(passive) <= passive_size``.
Iteration is over dicts (insertion order, identical in every process) and
randomness comes only from the injected `random.Random`, so a seed replays a
run exactly. A healthy peer leaving the active view yields
``Disconnect(peer, VIEW_CHANGE)``, never a failure; the driver must deliver the
`Send`s listed before a `Disconnect` of the same peer before closing the link.

Deviations from the paper (and from Partisan), each with its reason
------------------------------------------------------------------
* The paper has no leave; Partisan returns ``not_implemented``. We send
  `LeaveNotice` so peers repair at once instead of waiting for failure detection.
* The paper's contact relies on the TCP connection to make the link symmetric;
  we answer with an explicit `NeighborNotice` (as Partisan does), because our
  drivers report links, not who opened them. It carries a view sample (Partisan
  piggybacks exchange lists on neighbor messages): otherwise a newcomer whose
  contact fails before any shuffle knows nobody (found by the property tests).
* The paper repairs only after a failure; we also ask once after a
  `DisconnectNotice` and once per promotion interval while the active view is
  not full, with LOW priority so it cannot cascade evictions: otherwise every
  eviction during joins leaves a node one peer short for good (the paper's
  Fig. 5 has almost all in-degrees at 5; we measure 99.6% at n=1,000).
* Partisan always asks with HIGH priority; we follow the paper (HIGH only when
  the active view is empty), because forced acceptances evict healthy links,
  except in Partisan's periodic promotion below ``active_min_size``, and once
  after ``ESCALATE_AFTER_INTERVALS`` intervals short of full: a saturated group
  refuses every LOW request, so a short node or a small group stays an island
  for ever (Partisan issue #75; found by the property tests).
* Partisan evicts a random passive entry on overflow; we follow the paper and
  evict the entries we just sent in the shuffle first.
* Symmetry probe (ours): `ForwardJoin` and `Shuffle` travel only over active
  links, so receiving one from a peer that is not in our active view means the
  link is one-sided (a lost or reordered message); we answer `DisconnectNotice`
  so the sender drops it. Symmetry thus heals itself even under message loss.
* Lost peers (ours, after Serf's reconnect of failed members): the paper drops
  an unreachable peer. We keep it for ``LOST_TIMEOUT_INTERVALS`` promotion
  intervals and retry one per interval, with HIGH priority if it was an active
  neighbor. Otherwise the two halves of a healed partition each repair into
  full, disjoint active views, and never merge.
* Passive probes (ours): the paper and Partisan never contact a passive entry
  until they need it. We probe one per shuffle tick, and a probed node below
  ``active_min_size`` asks the prober with HIGH priority. Otherwise a survivor
  of massive failures whose active and passive peers all died knows nobody to
  ask, while every survivor that lists it is full and asks nobody: it stays cut
  off for good (T9 at 90% never healed; with probes it heals). The cost is one
  message per node per round (no reply from a healthy node), and passive views
  lose their dead entries as a side effect.
* Partisan's epoch is a restart counter on disk plus a per-peer disconnect
  counter; we use the incarnation, which already grows on every restart, and
  rely on per-pair FIFO delivery of the membership channel for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.hyparview_messages import (
    MAX_EXCHANGE,
    DisconnectNotice,
    ForwardJoin,
    JoinRequest,
    LeaveNotice,
    NeighborNotice,
    NeighborReply,
    NeighborRequest,
    PassiveProbe,
    Priority,
    Shuffle,
    ShuffleReply,
    check,
)
from partisan.membership.hyparview_repair import ESCALATE_AFTER_INTERVALS
from partisan.membership.hyparview_shuffle import Shuffling
from partisan.membership.hyparview_views import LOST_TIMEOUT_INTERVALS, HyParViewStatistics
from partisan.membership.types import (
    Action,
    CancelTimer,
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

_VIEW_CHANGE = DisconnectReason.VIEW_CHANGE
_NOTICE = NeighborNotice()
_ACCEPT = NeighborReply(True)
_REFUSE = NeighborReply(False)


class HyParView(Shuffling):
    """The HyParView membership manager; see the module docstring."""

    __slots__ = (
        "_arwl",
        "_left",
        "_prwl",
    )

    name = "hyparview"

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        super().__init__(self_spec, config, rng)
        hv = config.hyparview
        self._arwl = hv.arwl
        self._prwl = hv.prwl
        self._left = False

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
            return self.receive(event.sender, event.msg, now)  # type: ignore[union-attr]
        if kind is PeerDown:
            self._on_peer_down(event.peer, event.reason, out)  # type: ignore[union-attr]
        elif kind is TimerFired:
            self._on_timer(event.name, out)  # type: ignore[union-attr]
        elif kind is Join:
            self._on_join(event.contact, out)  # type: ignore[union-attr]
        elif kind is Leave:
            self._on_leave_event(event.node, out)  # type: ignore[union-attr]
        elif kind is not PeerUp:  # a link coming up changes no view: views drive links
            raise TypeError(f"not a membership event: {event!r}")
        return self._finish(out, now)

    def receive(self, sender: NodeSpec, msg: Any, now: float) -> list[Action]:
        """``handle(Received(sender, msg), now)`` without building the event.

        The simulator's hot path (one call per delivered message); real
        drivers may use either.
        """
        self._now = now
        out: list[Action] = []
        kind = type(msg)
        handler = _HANDLERS.get(kind)
        if (
            handler is None
            or type(sender) is not NodeSpec
            or not (
                # `check` inlined for the walk's hops (most messages)
                type(msg.origin) is NodeSpec
                and type(msg.ttl) is int
                and type(msg.nodes) is tuple
                and len(msg.nodes) <= MAX_EXCHANGE
                if kind is Shuffle
                else check(msg)
            )
        ):
            self._rejected += 1
            logger.warning("%s: dropped malformed message from %s: %.200r", self._me, sender, msg)
            return out
        known = self._active.get(sender.name)
        if known is sender or (known is not None and known.incarnation == sender.incarnation):
            # (never after a Leave: a node that left has no active peer)
            if handler(self, sender, msg, out):
                # A neighbour's walk passed on (most messages): it changed no view,
                # timer or repair state, and the event before it left those finished.
                return out
        elif self._left:
            return out
        elif sender.name != self._me and self._admit(sender, out):
            handler(self, sender, msg, out)
        # `_finish` inlined: this runs once per message (keep the two in step)
        if self._wants_repair:
            self._wants_repair = False
            self._promote(out)
        if not self._promote_armed and not self._left:
            if len(self._active) < self._active_size or self._pending is not None or self._lost:
                self._promote_armed = True
                out.append(SetTimer(PROMOTE_TIMER, now + self._promote_interval))
            else:
                self._hungry = 0
                if self._ghosts:  # nothing else to do: wake only when a ghost is due
                    self._promote_armed = True
                    due = max(self._ghost_due, now + self._promote_interval)
                    out.append(SetTimer(PROMOTE_TIMER, due))
        if self._changed:
            self._changed = False
            out.append(MembersChanged(self.members()))
        return out

    def _finish(self, out: list[Action], now: float) -> list[Action]:
        """What every event ends with: a pending repair, the promotion timer, MembersChanged."""
        if self._wants_repair:
            self._wants_repair = False
            self._promote(out)
        if not self._promote_armed and not self._left:
            # Armed only while there is work (a view to fill, a request out, a
            # lost peer): a full, healthy node has no idle wake-ups (they were
            # a fifth of all simulator events at n = 10,000).
            if len(self._active) < self._active_size or self._pending is not None or self._lost:
                self._promote_armed = True
                out.append(SetTimer(PROMOTE_TIMER, now + self._promote_interval))
            else:
                self._hungry = 0
                if self._ghosts:  # nothing else to do: wake only when a ghost is due
                    self._promote_armed = True
                    due = max(self._ghost_due, now + self._promote_interval)
                    out.append(SetTimer(PROMOTE_TIMER, due))
        if self._changed:
            self._changed = False
            out.append(MembersChanged(self.members()))
        return out

    def _arm_timers(self, now: float) -> list[Action]:
        self._promote_armed = True
        return [
            SetTimer(SHUFFLE_TIMER, now + self._shuffle_interval * (0.5 + self._rng.random())),
            SetTimer(PROMOTE_TIMER, now + self._promote_interval * (0.5 + self._rng.random())),
        ]

    # ------------------------------------------------------- local requests

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
            self._promote_armed = False
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

    # ---------------------------------------------------------------- timers

    def _on_timer(self, name: str, out: list[Action]) -> None:
        if self._left:
            return
        now = self._now
        if name == SHUFFLE_TIMER:
            # Each period jittered by +-25%: nodes whose timers were released
            # together (a restart wave, the simulator's held timers) drift
            # apart instead of shuffling in lockstep for ever.
            period = self._shuffle_interval * (0.75 + 0.5 * self._rng.random())
            out.append(SetTimer(SHUFFLE_TIMER, now + period))
            self._start_shuffle(out)
            self._probe_passive(out)
        elif name == PROMOTE_TIMER:
            self._promote_armed = False  # `handle` re-arms it while there is work
            self._periodic_promotion(out)


# One table for every instance (a per-instance dict of bound methods cost ~1 KB
# per node and a cache miss per message at n = 10,000).
# A handler returns True only when it merely passed a walk on (see `receive`).
_HANDLERS: dict[type, Callable[[HyParView, NodeSpec, Any, list[Action]], bool | None]] = {
    Shuffle: HyParView._on_shuffle,
    ShuffleReply: HyParView._on_shuffle_reply,
    ForwardJoin: HyParView._on_forward_join,
    JoinRequest: HyParView._on_join_request,
    NeighborNotice: HyParView._on_neighbor_notice,
    NeighborRequest: HyParView._on_neighbor_request,
    NeighborReply: HyParView._on_neighbor_reply,
    DisconnectNotice: HyParView._on_disconnect,
    LeaveNotice: HyParView._on_leave,
    PassiveProbe: HyParView._on_passive_probe,
}

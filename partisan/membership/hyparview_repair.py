"""HyParView's repair: refilling the active view from the passive one.

The repair half of `partisan.membership.hyparview` (see its theory of
operation). A *round* asks untried passive peers one at a time, each with a
`NeighborRequest`, until one accepts or the round's attempts run out: after a
failure, until success (the paper); after a disconnect or on a periodic tick
while the view is not full, once. Priority is HIGH when the active view is empty
(the paper), during a periodic round below ``active_min_size`` (Partisan's
random promotion), or once after ``ESCALATE_AFTER_INTERVALS`` intervals short of
full; LOW otherwise. Peers found unreachable are kept as *lost* and retried one
per interval: HIGH when they were active neighbors (a failure cut the link, not
a decision; restoring it is what merges healed partitions).

Ghosts (ours): a lost *neighbour* still unreachable after the lost timeout
(``LOST_TIMEOUT_INTERVALS``) is not forgotten but kept as a ghost (at most
``active_size``, oldest dropped first) and asked again, HIGH, one ghost every
``GHOST_INTERVALS`` promotion intervals. Within the timeout, healed partitions
merge through the lost peers; past it the passive views may no longer name
the other side at all (probes of refused entries drop them), and the ghosts
are what still does: after any partition, one component again within about
``GHOST_INTERVALS x ghosts`` promotion intervals of the heal (60 s per ghost
by default). A ghost that left or restarted is forgotten; a dead one costs one
refused dial per probe.

Passive probes (ours; see the deviations in hyparview.py): on every shuffle
tick a node sends `PassiveProbe` to one random passive entry. A dead entry
fails the send and is dropped (`PeerDown`); a live entry below
``active_min_size`` answers with a HIGH `NeighborRequest`, which we must
accept. That is how a survivor whose every known peer died is found again:
it cannot ask anyone, but someone still lists it.
"""

from __future__ import annotations

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.hyparview_messages import (
    JoinRequest,
    NeighborRequest,
    PassiveProbe,
    Priority,
)
from partisan.membership.hyparview_views import GHOST_INTERVALS, Views
from partisan.membership.types import Action, Disconnect, DisconnectReason, Random, Send

__all__ = ["ESCALATE_AFTER_INTERVALS", "Repair"]

#: Promotion intervals a node may stay short of a full active view before it
#: asks one passive peer with HIGH priority.
ESCALATE_AFTER_INTERVALS = 4

_HIGH = NeighborRequest(Priority.HIGH)
_LOW = NeighborRequest(Priority.LOW)
_PROBE = PassiveProbe()


class Repair(Views):
    """Views plus the promotion rounds that keep the active view full."""

    __slots__ = (
        "_active_min",
        "_attempts",
        "_contact",
        "_escalate",
        "_hungry",
        "_pending",
        "_pending_since",
        "_probe",
        "_promote_armed",
        "_promote_interval",
        "_tried",
        "_urgent",
        "_wants_repair",
    )

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        super().__init__(self_spec, config, rng)
        hv = config.hyparview
        self._active_min = hv.active_min_size
        self._promote_interval = hv.random_promotion_interval
        self._pending: NodeSpec | None = None  # outstanding repair NeighborRequest
        self._pending_since = 0.0
        self._probe: str | None = None  # lost peer asked to restore the link
        self._tried: set[str] = set()  # membership tests only, never iterated
        self._attempts = 0  # neighbor requests left in the current repair round
        self._urgent = False  # this round asks with HIGH priority up to the minimum
        self._hungry = 0  # consecutive promotion intervals with a view not full
        self._escalate = False  # the next request is HIGH: we stayed short too long
        self._wants_repair = False  # run `_promote` once the current event is handled
        self._contact: NodeSpec | None = None  # whom we joined through, to retry
        self._promote_armed = False  # the promotion timer is pending

    def _needs_promotion(self) -> bool:
        """Whether the promotion timer has work: a view to fill, a request, a lost peer."""
        return (
            len(self._active) < self._active_size
            or self._pending is not None
            or bool(self._lost)
            or bool(self._ghosts)
        )

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

    def _probe_passive(self, out: list[Action]) -> None:
        """Probe one random passive entry (the shuffle tick calls this)."""
        passive = self._passive
        if passive:
            keys = list(passive)
            self._passive_probes += 1
            out.append(Send(passive[keys[int(self._rng.random() * len(keys))]], _PROBE))

    def _on_passive_probe(self, sender: NodeSpec, msg: PassiveProbe, out: list[Action]) -> None:
        """A node lists us as a backup; below the minimum, ask it to take us (HIGH)."""
        if len(self._active) >= self._active_min or sender.name in self._active:
            return  # the usual case: no reply, the probe's delivery was the answer
        self._add_passive(sender, ())
        if self._pending is None:
            self._tried.add(sender.name)
            self._pending = sender
            self._pending_since = self._now
            self._requests += 1
            out.append(Send(sender, _HIGH))

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

    def _settle(self, peer: NodeSpec) -> bool:
        """Clear the pending request if it was to `peer`; True if it was."""
        if self._pending is not None and self._pending.name == peer.name:
            self._pending = None
            return True
        return False

    def _on_peer_down(self, peer: NodeSpec, reason: str, out: list[Action]) -> None:
        """Drop a failed peer (unless `peer` is an older incarnation) and repair.

        No `Disconnect` is emitted: the link is already down. A peer that left
        or restarted is forgotten; any other failure is remembered as lost.

        ``"disconnected"`` is not a failure: the two ends agreed to close a
        healthy link (a temporary one, or one a view change let go). The peer
        stays a backup; were it still active here, it moves to the passive view
        as after a `DisconnectNotice`. Treating it as lost once cost a
        self-feeding cycle on real nodes: each closed temporary link made its
        peer "lost", the lost peer was asked again every promotion interval
        over a new temporary link, whose close made it lost again.
        """
        name = peer.name
        if self._settle(peer):
            self._wants_repair = True
        if self._probe == name:
            self._probe = None
        if reason == "disconnected":
            known = self._active.get(name)
            if known is not None and known.incarnation <= peer.incarnation:
                self._remove_active(name)
                self._add_passive(peer, ())
                self._trigger_repair(1 if self._active else 1 << 30)
                self._tried.add(name)  # it just let the link go: ask someone else
            return
        gone = reason == "left" or reason == "restarted"
        if gone:
            self._lost.pop(name, None)  # a newer life exists, or it said goodbye
            self._ghosts.pop(name, None)
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

    def _periodic_promotion(self, out: list[Action]) -> None:
        """The promotion timer: time out a silent request, retry a lost peer, refill."""
        now = self._now
        if self._pending is not None and now - self._pending_since >= self._promote_interval:
            # Unanswered for a whole interval: treat it as unreachable.
            if self._passive.pop(self._pending.name, None) is not None:
                self._remember_lost(self._pending, was_active=False)
            self._pending = None
        if self._lost:
            self._probe_lost(out)
        if self._ghosts and now >= self._ghost_due:
            self._probe_ghost(out)
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

    def _haunt(self, spec: NodeSpec) -> None:
        """Keep a lost neighbour past the timeout as a ghost (bounded, oldest out)."""
        ghosts = self._ghosts
        ghosts.pop(spec.name, None)
        if len(ghosts) >= self._active_size:
            del ghosts[next(iter(ghosts))]
        if not ghosts:
            self._ghost_due = self._now + GHOST_INTERVALS * self._promote_interval
        ghosts[spec.name] = spec

    def _probe_ghost(self, out: list[Action]) -> None:
        """Ask the ghost probed longest ago (round robin) to link with us again, HIGH."""
        ghosts = self._ghosts
        name = next(iter(ghosts))
        spec = ghosts[name] = ghosts.pop(name)  # to the back of the line
        self._ghost_due = self._now + GHOST_INTERVALS * self._promote_interval
        if self._pending is None and name not in self._active:
            self._requests += 1
            self._probe = name
            out.append(Send(spec, _HIGH))

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
            spec, _, was_active = lost.pop(name)
            if was_active:
                self._haunt(spec)
        if not lost:
            return
        spec, _, was_active = lost[self._pick_key(list(lost))]
        self._requests += 1
        if was_active or not self._active:
            self._probe = spec.name
            out.append(Send(spec, _HIGH))
        else:
            out.append(Send(spec, _LOW))

"""HyParView's views: the active and passive views, reservations and lost peers.

The bookkeeping half of `partisan.membership.hyparview` (the protocol half is
there, with the theory of operation). Views are dicts keyed by node name:
insertion order is the same in every process, so sampling them with the
injected `random.Random` replays exactly; nothing here iterates a set.

Invariants kept by every method: self is in no view; active and passive are
disjoint; ``len(active) <= active_size``; ``len(passive) <= passive_size``; a
reserved role's slot is held by at most one active peer, which is never evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from partisan.config import Config
from partisan.errors import ConfigError
from partisan.identity import NodeSpec
from partisan.membership.hyparview_messages import DisconnectNotice
from partisan.membership.types import Action, Connect, Disconnect, DisconnectReason, Random, Send

__all__ = ["GHOST_INTERVALS", "LOST_TIMEOUT_INTERVALS", "HyParViewStatistics", "Views"]

#: How many promotion intervals an unreachable peer stays a reconnect candidate.
LOST_TIMEOUT_INTERVALS = 60
#: Promotion intervals between two probes of a ghost (a lost neighbour past the
#: timeout): the bound on re-merging after a partition longer than the timeout.
GHOST_INTERVALS = 12

_VIEW_CHANGE = DisconnectReason.VIEW_CHANGE


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
    passive_probes: int


class Views:
    """The views of one HyParView node and the operations that keep their invariants."""

    # Slots, in every class of the hierarchy: a HyParView has ~45 attributes, past
    # what an instance keeps inline, so without them each node carried a 1.6 KB
    # dict whose entries every event touches (n = 100,000 is memory-bound).
    __slots__ = (  # noqa: RUF023 (ordered by use, not by name: see below)
        # what every message reads first, side by side: slots are laid out in
        # this order, and one cache line instead of four is one miss per event
        "_active",
        "_active_cache",
        "_now",
        "_me",
        "_rng",
        "_passive",
        "_passive_size",
        "_active_size",
        "_changed",
        "_lost",
        "_ghosts",
        # the rest: counters and what changes rarely
        "_evictions",
        "_ghost_due",
        "_joins",
        "_lost_timeout",
        "_members_cache",
        "_passive_probes",
        "_probes",
        "_rejected",
        "_requests",
        "_reserved",
        "_shuffles",
        "_stale",
        "self_spec",
    )

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        hv = config.hyparview
        if len(hv.reservations) > hv.active_size:
            raise ConfigError(
                f"hyparview.reservations: {len(hv.reservations)} reserved roles do not fit "
                f"in active_size ({hv.active_size})"
            )
        self.self_spec = self_spec
        self._me = self_spec.name
        self._rng = rng
        self._now = 0.0
        self._active_size = hv.active_size
        self._passive_size = hv.passive_size
        self._lost_timeout = LOST_TIMEOUT_INTERVALS * hv.random_promotion_interval
        self._active: dict[str, NodeSpec] = {}
        self._passive: dict[str, NodeSpec] = {}
        self._reserved: dict[str, str | None] = {role: None for role in hv.reservations}
        # name -> (spec, when lost, was an active peer): unreachable peers to retry
        self._lost: dict[str, tuple[NodeSpec, float, bool]] = {}
        # name -> spec: lost *neighbours* past the timeout, probed one per
        # GHOST_INTERVALS promotion intervals (at most active_size; see hyparview_repair)
        self._ghosts: dict[str, NodeSpec] = {}
        self._ghost_due = 0.0
        self._changed = False  # the active view changed in this event: MembersChanged
        self._active_cache: tuple[NodeSpec, ...] | None = ()
        self._members_cache: tuple[NodeSpec, ...] | None = None
        self._joins = self._shuffles = self._requests = self._evictions = 0
        self._stale = self._probes = self._rejected = self._passive_probes = 0

    # ---------------------------------------------------------------- queries

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
            passive_probes=self._passive_probes,
        )

    def __repr__(self) -> str:
        return (
            f"<HyParView {self._me} active={sorted(self._active)} "
            f"passive={len(self._passive)} lost={len(self._lost)}>"
        )

    # ---------------------------------------------------------------- changes

    def _pick(self, items: list[NodeSpec]) -> NodeSpec:
        return items[int(self._rng.random() * len(items))]

    def _pick_key(self, keys: list[str]) -> str:
        return keys[int(self._rng.random() * len(keys))]

    def _sample(self, items: list[NodeSpec], k: int) -> list[NodeSpec]:
        """`k` random entries of `items` (which we own and reorder); all if fewer.

        A partial Fisher-Yates on the injected rng: `random.sample` costs several
        times more per call, and the simulator makes millions of these calls.
        """
        n = len(items)
        if k >= n:
            return items
        rnd = self._rng.random
        for i in range(k):
            j = i + int(rnd() * (n - i))
            items[i], items[j] = items[j], items[i]
        return items[:k]

    def _hop(self, avoid1: str, avoid2: str, *, tries: int = 3) -> NodeSpec | None:
        """A random active peer named neither `avoid1` nor `avoid2`, if any."""
        active = self._active_cache
        if active is None:
            active = self.active()
        n = len(active)
        for _ in range(tries):  # rejection sampling: at most 2 of n >= 2 peers are excluded
            peer = active[int(self._rng.random() * n)]
            if peer.name != avoid1 and peer.name != avoid2:
                return peer
        hops = [p for p in active if p.name != avoid1 and p.name != avoid2]
        return self._pick(hops) if hops else None

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
        self._ghosts.pop(name, None)
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
                victim = keys[int(self._rng.random() * len(keys))]
            del passive[victim]
        passive[name] = spec

    def _merge(self, nodes: tuple[NodeSpec, ...], evict_first: list[str]) -> None:
        """Add a peer's sample to the passive view, evicting `evict_first` first.

        `_add_passive` inlined: this runs for every entry of every shuffle.
        """
        me, active, passive, size = self._me, self._active, self._passive, self._passive_size
        for node in nodes:
            if type(node) is not NodeSpec:
                self._rejected += 1
                continue
            name = node.name
            if name == me or name in active:
                continue
            known = passive.get(name)
            if known is None:
                if len(passive) >= size:
                    victim = None
                    while evict_first:  # consumed as used: each is evicted at most once
                        candidate = evict_first.pop()
                        if candidate in passive:
                            victim = candidate
                            break
                    if victim is None:  # the i-th key, as list(passive)[i], without the list
                        victim = next(islice(passive, int(self._rng.random() * len(passive)), None))
                    del passive[victim]
                passive[name] = node
            elif node.incarnation > known.incarnation:
                passive[name] = node

    def _refuse(self, peer: NodeSpec, out: list[Action]) -> None:
        out.append(Send(peer, DisconnectNotice(peer.incarnation)))
        self._add_passive(peer, ())

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

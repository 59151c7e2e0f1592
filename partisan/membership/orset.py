"""A state-based, add-wins OR-Set of `NodeSpec`s: the full-mesh membership CRDT.

Theory of operation
-------------------
The set is a pair ``(dots, removed)``:

* ``dots`` maps a unique *tag* to the spec it added. A tag is
  ``(name, incarnation, counter)``: only the node itself mints tags for its own
  spec (when it starts or re-joins), so the tag names the incarnation it adds
  and tags are unique without coordination.
* ``removed`` is the set of tombstoned tags. Removing an element tombstones the
  tags of it that the remover has *observed*; a concurrent add (a tag the
  remover had not seen) survives, which is what "add-wins" means.

Merge is the union of both components (then normalisation, below); it is
commutative, associative and idempotent, so replicas that have seen the same
states hold equal sets whatever the order. A dot whose tag is tombstoned is
dropped from ``dots`` but its tombstone is kept forever, so a stale state that
still carries the dot cannot bring it back (Partisan #191: stale gossip re-added
a node that had left).

Incarnations. The value shows at most one spec per name, the highest
incarnation. Normalisation tombstones every live dot of a name whose
incarnation is lower than the highest incarnation of that name seen in any dot
*or tombstone*. Tombstones count too: once a restarted node's newer
incarnation was seen and then removed, the older incarnation can never come
back either. Ties between specs of one name and incarnation (only a buggy or
hostile peer makes them) are broken by the highest ``(host, port, tag)``, so
every replica picks the same one. Normalisation only tombstones dots that the
value already hides, so it never changes what a replica shows.

Costs and limits: one tag per join of an incarnation and one tombstone per
leave or restart. Tombstones are never collected (Partisan's ``state_orset``
keeps them too); a cluster that sees millions of restarts should restart with
fresh state. The value is recomputed lazily and cached.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from partisan.identity import NodeSpec

__all__ = ["ORSet", "Tag"]

#: (name, incarnation, counter): minted only by the node `name` for itself.
Tag = tuple[str, int, int]


class ORSet:
    """An immutable OR-Set value: every operation returns a new set.

    Equality compares the replicated state (live dots and tombstones), not just
    the visible value, so ``merged == mine`` tells a gossip receiver whether it
    learnt anything.
    """

    __slots__ = ("_dots", "_removed", "_value")

    def __init__(
        self, dots: Mapping[Tag, NodeSpec] | None = None, removed: Iterable[Tag] = ()
    ) -> None:
        self._removed: frozenset[Tag] = frozenset(removed)
        self._dots: dict[Tag, NodeSpec] = {}
        self._value: tuple[NodeSpec, ...] | None = None
        if dots:
            self._dots = {t: s for t, s in dots.items() if t not in self._removed}
            self._normalise()

    # -------------------------------------------------------------- queries

    @property
    def dots(self) -> Mapping[Tag, NodeSpec]:
        """Live tags and the spec each one added (read-only view)."""
        return dict(self._dots)

    @property
    def removed(self) -> frozenset[Tag]:
        """Tombstoned tags."""
        return self._removed

    def value(self) -> tuple[NodeSpec, ...]:
        """The members: one spec per name (the newest incarnation), sorted by name."""
        if self._value is None:
            best: dict[str, tuple[tuple[int, str, int, Tag], NodeSpec]] = {}
            for tag, spec in self._dots.items():
                key = (spec.incarnation, spec.host, spec.port, tag)
                old = best.get(spec.name)
                if old is None or key > old[0]:
                    best[spec.name] = (key, spec)
            self._value = tuple(best[name][1] for name in sorted(best))
        return self._value

    def lookup(self, name: str) -> NodeSpec | None:
        """The member named `name`, or None."""
        for spec in self.value():
            if spec.name == name:
                return spec
        return None

    def tags_of(self, name: str) -> tuple[Tag, ...]:
        """Live tags of any spec named `name`, sorted."""
        return tuple(sorted(t for t, s in self._dots.items() if s.name == name))

    def max_counter(self, name: str, incarnation: int) -> int:
        """The highest counter seen (live or tombstoned) for one incarnation's tags."""
        counters = [
            t[2] for t in (*self._dots, *self._removed) if t[0] == name and t[1] == incarnation
        ]
        return max(counters, default=0)

    def superseded(self, spec: NodeSpec) -> bool:
        """True if a newer incarnation of `spec.name` was seen (live or removed)."""
        return any(
            t[0] == spec.name and t[1] > spec.incarnation for t in (*self._dots, *self._removed)
        )

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, NodeSpec) and spec in self.value()

    def __len__(self) -> int:
        return len(self.value())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORSet):
            return NotImplemented
        return self._removed == other._removed and self._dots == other._dots

    def __hash__(self) -> int:
        return hash((frozenset(self._dots), self._removed))

    def __repr__(self) -> str:
        members = ", ".join(str(s) for s in self.value())
        return f"ORSet([{members}], dots={len(self._dots)}, removed={len(self._removed)})"

    # ------------------------------------------------------------ mutations

    def add(self, spec: NodeSpec, counter: int) -> ORSet:
        """Add `spec` under the fresh tag ``(spec.name, spec.incarnation, counter)``.

        Only the node `spec` itself should call this (tags are unique because
        each incarnation mints its own counters). Re-using a tag is our own
        misuse and raises ValueError.
        """
        tag: Tag = (spec.name, spec.incarnation, counter)
        if tag in self._dots or tag in self._removed:
            raise ValueError(f"tag {tag!r} was already used; counters must grow")
        dots = dict(self._dots)
        dots[tag] = spec
        return ORSet(dots, self._removed)

    def remove_name(self, name: str) -> ORSet:
        """Remove every observed spec named `name` (all incarnations)."""
        doomed = [t for t, s in self._dots.items() if s.name == name]
        if not doomed:
            return self
        return ORSet(self._dots, self._removed.union(doomed))

    def merge(self, other: ORSet) -> ORSet:
        """Join two replicas' states (commutative, associative, idempotent)."""
        if other is self or other == self:
            return self
        dots = dict(self._dots)
        dots.update(other._dots)
        return ORSet(dots, self._removed | other._removed)

    def tombstones_only(self) -> ORSet:
        """The same tombstones and no live dots: a state that can only remove."""
        return ORSet({}, self._removed)

    # ------------------------------------------------------------- checking

    @classmethod
    def check(cls, obj: Any) -> ORSet:
        """Validate an OR-Set that came from a peer; raise ValueError if malformed.

        A peer authenticated by the transport can still run buggy code; the
        receiver must not crash on, or store, a state that breaks the invariants
        (tags name the spec they add).
        """
        if not isinstance(obj, ORSet):
            raise ValueError(f"expected an ORSet, got {type(obj).__name__}")
        dots = getattr(obj, "_dots", None)
        removed = getattr(obj, "_removed", None)
        if not isinstance(dots, dict) or not isinstance(removed, frozenset):
            raise ValueError("malformed ORSet: bad internal fields")
        for tag in removed:
            _check_tag(tag)
        for tag, spec in dots.items():
            _check_tag(tag)
            if not isinstance(spec, NodeSpec):
                raise ValueError(f"malformed ORSet: dot {tag!r} holds {type(spec).__name__}")
            if not isinstance(spec.host, str) or type(spec.port) is not int:
                raise ValueError(f"malformed ORSet: dot {tag!r} has a bad address")
            if (spec.name, spec.incarnation) != tag[:2]:
                raise ValueError(f"malformed ORSet: tag {tag!r} does not name spec {spec}")
        # Rebuild, so a peer's object never aliases our state and is normalised.
        return ORSet(dots, removed)

    # ------------------------------------------------------------ internals

    def _normalise(self) -> None:
        """Tombstone live dots hidden by a newer incarnation or a same-incarnation tie."""
        newest: dict[str, int] = {}
        for tag in (*self._dots, *self._removed):
            if tag[1] > newest.get(tag[0], -1):
                newest[tag[0]] = tag[1]
        winner: dict[str, tuple[str, int, Tag]] = {}
        for tag, spec in self._dots.items():
            if spec.incarnation == newest[spec.name]:
                key = (spec.host, spec.port, tag)
                if spec.name not in winner or key > winner[spec.name]:
                    winner[spec.name] = key
        doomed: list[Tag] = []
        for tag, spec in self._dots.items():
            if spec.incarnation < newest[spec.name]:
                doomed.append(tag)
                continue
            win = winner[spec.name]
            if (spec.host, spec.port) != win[:2]:
                doomed.append(tag)
        if doomed:
            self._removed = self._removed.union(doomed)
            for tag in doomed:
                del self._dots[tag]


def _check_tag(tag: object) -> None:
    if not (
        isinstance(tag, tuple)
        and len(tag) == 3
        and isinstance(tag[0], str)
        and type(tag[1]) is int
        and type(tag[2]) is int
    ):
        raise ValueError(f"malformed ORSet tag {tag!r}: expected (name, incarnation, counter)")

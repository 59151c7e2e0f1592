"""Cyclon-like single-view membership: the HyParView paper's baseline (T10).

Theory of operation (Voulgaris, Gavidia, van Steen, JNSM 2005, as configured
in HyParView TR §5.1: view 35, shuffle length 14, join walks of TTL 5):

* One partial view of up to `view_size` entries, each with an age. Nothing is
  connected: messages are datagrams, and by default a peer reported down is
  *not* removed (plain Cyclon has no failure detector; ``acked=True`` removes
  it, which is the paper's CyclonAcked).
* Every round a node ages its entries, removes the oldest entry Q, and sends Q
  a `CyclonShuffle` of `shuffle_length` - 1 random entries plus itself (age 0).
  Q answers with as many random entries of its own and merges what it got,
  preferring empty slots and then the slots of the entries it sent. A dead Q
  never answers, so dead entries leave views at the rate of one per round.
* Join: the newcomer asks its contact, which starts `view_size` random walks of
  TTL `walk_ttl`; where a walk ends, that node swaps one of its entries for the
  newcomer and sends the evicted entry to the newcomer.

It exists to show the simulator reproduces the paper's gap between Cyclon and
HyParView (reliability of a fanout-4 gossip after massive failures), so it is
deliberately plain: no leave, no incarnation handling beyond replacing a spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.types import (
    Action,
    Event,
    Join,
    MembersChanged,
    PeerDown,
    Random,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

__all__ = ["Cyclon", "CyclonJoin", "CyclonJoinEntry", "CyclonShuffle", "CyclonWalk"]

_TIMER = "cyclon:shuffle"


def _by_name(spec: NodeSpec) -> str:
    return spec.name


@dataclass(frozen=True, slots=True)
class CyclonJoin:
    """A newcomer asks its contact to start the join walks."""


@dataclass(frozen=True, slots=True)
class CyclonWalk:
    """A join random walk for `node`; `ttl` counts down."""

    node: NodeSpec
    ttl: int


@dataclass(frozen=True, slots=True)
class CyclonJoinEntry:
    """The entry a walk's end node evicted for the newcomer."""

    entry: NodeSpec


@dataclass(frozen=True, slots=True)
class CyclonShuffle:
    """A view exchange of ``(spec, age)`` entries; `reply` marks the answer."""

    entries: tuple[tuple[NodeSpec, int], ...]
    reply: bool = False


class Cyclon:
    """Cyclon membership state machine for one node."""

    name = "cyclon"

    def __init__(
        self,
        self_spec: NodeSpec,
        config: Config,
        rng: Random,
        *,
        view_size: int = 35,
        shuffle_length: int = 14,
        walk_ttl: int = 5,
        acked: bool = False,
    ) -> None:
        self.spec = self_spec
        self.rng = rng
        self.interval = config.hyparview.shuffle_interval
        self.view_size, self.shuffle_length, self.walk_ttl = view_size, shuffle_length, walk_ttl
        self.acked = acked
        self.view: dict[str, tuple[NodeSpec, int]] = {}  # name -> (spec, age)
        self._sent: dict[str, tuple[str, ...]] = {}  # shuffle target -> names we sent
        self._mutations = 0  # bumped when an entry is replaced (the size may not change)

    def start(self, now: float) -> list[Action]:
        return [SetTimer(_TIMER, now + self.rng.uniform(0, self.interval))]

    def members(self) -> Sequence[NodeSpec]:
        return sorted([self.spec, *self.active()], key=_by_name)  # names are unique

    def active(self) -> Sequence[NodeSpec]:
        return [self.view[n][0] for n in sorted(self.view)]

    def passive(self) -> Sequence[NodeSpec]:
        return []

    def handle(self, event: Event, now: float) -> list[Action]:
        before = (len(self.view), self._mutations)
        out = self._handle(event, now)
        if (len(self.view), self._mutations) != before:
            out.append(MembersChanged(tuple(self.members())))
        return out

    def _handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, TimerFired) and event.name == _TIMER:
            return [*self._shuffle(), SetTimer(_TIMER, now + self.interval)]
        if isinstance(event, Join):
            self._add(event.contact)
            return [Send(event.contact, CyclonJoin())]
        if isinstance(event, PeerDown):
            if self.acked:
                self.view.pop(event.peer.name, None)
            return []
        if not isinstance(event, Received):
            return []
        msg, sender = event.msg, event.sender
        if isinstance(msg, CyclonJoin):
            targets = self._names()
            out: list[Action] = [
                Send(self.view[self.rng.choice(targets)][0], CyclonWalk(sender, self.walk_ttl))
                for _ in range(self.view_size if targets else 0)
            ]
            self._add(sender)
            return out
        if isinstance(msg, CyclonWalk):
            candidates = [n for n in self._names() if n != msg.node.name]
            if msg.ttl > 0 and candidates:
                nxt = self.view[self.rng.choice(candidates)][0]
                return [Send(nxt, CyclonWalk(msg.node, msg.ttl - 1))]
            if msg.node.name == self.spec.name or msg.node.name in self.view:
                return []
            evicted = self.view.pop(self.rng.choice(candidates))[0] if candidates else self.spec
            self._add(msg.node)
            self._mutations += 1
            return [Send(msg.node, CyclonJoinEntry(evicted))]
        if isinstance(msg, CyclonJoinEntry):
            self._add(msg.entry)
            return []
        if isinstance(msg, CyclonShuffle):
            out = []
            if not msg.reply:
                reply = self._sample(self.shuffle_length, exclude=sender.name)
                out.append(Send(sender, CyclonShuffle(reply, reply=True)))
                self._merge(msg.entries, tuple(s.name for s, _ in reply))
            else:
                self._merge(msg.entries, self._sent.pop(sender.name, ()))
            return out
        return []

    def _names(self) -> list[str]:
        return sorted(self.view)

    def _add(self, spec: NodeSpec) -> None:
        if spec.name == self.spec.name:
            return
        if spec.name in self.view or len(self.view) < self.view_size:
            self.view[spec.name] = (spec, 0)

    def _sample(self, k: int, exclude: str) -> tuple[tuple[NodeSpec, int], ...]:
        names = [n for n in self._names() if n != exclude]
        picked = self.rng.sample(names, min(k, len(names)))
        return tuple(self.view[n] for n in picked)  # random order: merge replaces in this order

    def _shuffle(self) -> list[Action]:
        if not self.view:
            return []
        for name, (spec, age) in self.view.items():
            self.view[name] = (spec, age + 1)
        names = self._names()
        top = max(self.view[n][1] for n in names)
        # ties broken at random: a name-ordered tie-break biases in-degrees by name
        oldest = self.rng.choice([n for n in names if self.view[n][1] == top])
        target = self.view.pop(oldest)[0]
        self._mutations += 1
        entries = self._sample(self.shuffle_length - 1, exclude=oldest)
        self._sent[oldest] = tuple(s.name for s, _ in entries)
        return [Send(target, CyclonShuffle(((self.spec, 0), *entries)))]

    def _merge(self, entries: tuple[tuple[NodeSpec, int], ...], sent: tuple[str, ...]) -> None:
        """Cyclon's merge: entries keep their age; fill free slots, then sent slots."""
        replaceable = [n for n in sent if n in self.view]
        for spec, age in entries:
            if spec.name == self.spec.name or spec.name in self.view:
                continue
            if len(self.view) < self.view_size:
                self.view[spec.name] = (spec, age)
            elif replaceable:
                del self.view[replaceable.pop(0)]
                self.view[spec.name] = (spec, age)
                self._mutations += 1

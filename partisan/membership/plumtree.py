"""Plumtree: epidemic broadcast trees (Leitão, Pereira, Rodrigues; SRDS 2007).

Theory of operation
-------------------
Every overlay neighbour is either *eager* (gets the payload at once) or *lazy*
(gets only an ``IHave`` announcement, batched every `lazy_tick`). A new
neighbour starts eager, so the first broadcast floods. Whenever a node receives
a payload it already has, it moves the sender to lazy and tells it ``Prune``,
so the sender does the same: after one broadcast the eager links form a
spanning tree and later broadcasts, from any source, cost one payload per node
(RMR 0). Lazy links keep the tree healthy: a node that hears ``IHave(id)`` for a
message it lacks starts a timer; if the payload has not arrived when it fires,
it sends ``Graft(id)`` to the announcer, which makes that link eager again and
replies with the payload. Further announcers are tried every
`graft_timeout_retry`. When the overlay reports a neighbour down, it leaves
both sets and its announcements are forgotten, so repair grafts around it.
Optimisation (the paper's §4.4): if a payload arrives ``threshold`` or more
hops later than an announcement of it, the announcer's link is grafted and the
payload's sender pruned, which keeps the tree shallow.

Hop counts: the source delivers at hop 0 and sends ``Gossip(round=1)``; a node
delivering at hop h forwards with round h+1; an ``IHave`` carries the round its
receiver would have. ``Deliver`` happens exactly once per message id.

Deviations from the published Algorithm 1 (each found or confirmed by the
property tests in tests/sim/test_plumtree.py):

* The graft timer stops when no announcement is left instead of calling
  ``removeFirstAnnouncement`` on an empty set; a later ``IHave`` restarts it.
* On delivery every announcement of that id is dropped (the paper only cancels
  the timer, leaving stale entries that would later graft needlessly).
* ``Graft``, ``Prune`` and the eager/lazy bookkeeping on ``Gossip`` apply only
  to current neighbours: the paper adds any sender to a set, so a late message
  from a node the overlay already dropped would resurrect it as a neighbour.
  A ``Graft`` from a non-neighbour is still answered with the payload.
* The payload sent in answer to a ``Graft`` carries our own hop + 1 (the
  paper echoes the announced round), so hop counts stay exact.
* Received payloads are kept `message_ttl` seconds to answer grafts and to
  deduplicate, and forgotten lazily on later inserts (no timer).
* With `announce_window` > 0, a new neighbour is sent an ``IHave`` of the ids
  delivered here in the last `announce_window` seconds (at most
  `MAX_RECENT`). The paper's tree cannot repair a broadcast sent while the
  overlay was cut in two: nobody announces it across the edge that heals the
  cut. Partisan closes that gap with periodic anti-entropy exchanges; one
  announcement per new edge does it without a timer. Off (0) by default, as
  in the paper and the simulator's measurements.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL, Deliver, LayerAction
from partisan.membership.types import CancelTimer, Random, Received, Send, SetTimer, TimerFired

__all__ = ["Gossip", "Graft", "IHave", "Plumtree", "PlumtreeStatistics", "Prune"]

log = logging.getLogger(__name__)

_LAZY_TIMER = "plumtree:lazy"
MAX_ANNOUNCEMENTS = 10_000  # a longer IHave is a peer's bad input
_GRAFT_PREFIX = "plumtree:graft:"
MAX_RECENT = 1_000  # ids announced to a new neighbour, newest first


@dataclass(frozen=True, slots=True)
class Gossip:
    """The payload of broadcast `msg_id`; the receiver delivers at hop `round`."""

    carries_payload: ClassVar[bool] = True

    msg_id: Hashable
    payload: Any
    round: int


@dataclass(frozen=True, slots=True)
class IHave:
    """Announcements ``(msg_id, round)`` of payloads the sender holds."""

    announcements: tuple[tuple[Hashable, int], ...]


@dataclass(frozen=True, slots=True)
class Graft:
    """Make the link eager again; with a `msg_id`, also send that payload."""

    msg_id: Hashable | None
    round: int


@dataclass(frozen=True, slots=True)
class Prune:
    """Make the link lazy: the receiver stops pushing payloads to the sender."""


@dataclass(frozen=True, slots=True)
class PlumtreeStatistics:
    """Counters of one node's Plumtree (immutable snapshot)."""

    eager: int
    lazy: int
    delivered: int
    grafts_sent: int
    prunes_sent: int
    dropped: int


class Plumtree:
    """Plumtree broadcast state machine for one node (see the module docstring)."""

    name = "plumtree"

    def __init__(
        self,
        self_spec: NodeSpec,
        config: Config,
        rng: Random,
        *,
        threshold: int = 3,
        announce_window: float = 0.0,
    ) -> None:
        self.spec = self_spec
        self.cfg = config.plumtree
        self.threshold = threshold
        self.announce_window = announce_window
        self.eager: dict[str, NodeSpec] = {}
        self.lazy: dict[str, NodeSpec] = {}
        # msg_id -> (payload, hops, time received); insertion order = time order
        self._received: OrderedDict[Hashable, tuple[Any, int, float]] = OrderedDict()
        # msg_id -> announcers (spec, round) in arrival order
        self._missing: dict[Hashable, list[tuple[NodeSpec, int]]] = {}
        self._graft_timers: dict[str, Hashable] = {}  # timer name -> msg_id
        self._lazy_queue: dict[str, list[tuple[Hashable, int]]] = {}
        self._lazy_armed = False
        self._delivered = self._grafts = self._prunes = self._dropped = 0

    # ------------------------------------------------------------ queries

    def neighbors(self) -> Sequence[NodeSpec]:
        both = {**self.eager, **self.lazy}
        return [both[n] for n in sorted(both)]

    def eager_peers(self) -> list[str]:
        return sorted(self.eager)

    def lazy_peers(self) -> list[str]:
        return sorted(self.lazy)

    def has(self, msg_id: Hashable) -> bool:
        """True if `msg_id` was delivered here (and not yet forgotten)."""
        return msg_id in self._received

    def statistics(self) -> PlumtreeStatistics:
        return PlumtreeStatistics(
            len(self.eager), len(self.lazy), self._delivered, self._grafts, self._prunes,
            self._dropped,
        )  # fmt: skip

    # ------------------------------------------------------- overlay events

    def neighbor_up(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        """A new neighbour starts eager (Algorithm 2, NeighborUp); announce recent ids to it."""
        self.lazy.pop(peer.name, None)
        self.eager[peer.name] = peer
        if self.announce_window <= 0 or not self._received:
            return []
        horizon = now - self.announce_window
        recent: list[tuple[Hashable, int]] = []
        for msg_id in reversed(self._received):  # insertion order is time order
            _, hops, at = self._received[msg_id]
            if at < horizon or len(recent) >= MAX_RECENT:
                break
            recent.append((msg_id, hops + 1))
        if not recent:
            return []
        recent.reverse()
        return [Send(peer, IHave(tuple(recent)), BROADCAST_CHANNEL)]

    def neighbor_down(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        """Forget `peer` and its announcements (Algorithm 2, NeighborDown)."""
        name = peer.name
        self.eager.pop(name, None)
        self.lazy.pop(name, None)
        self._lazy_queue.pop(name, None)
        for announcers in self._missing.values():
            announcers[:] = [(s, r) for s, r in announcers if s.name != name]
        return []

    # ----------------------------------------------------------- broadcast

    def broadcast(self, msg_id: Hashable, payload: Any, now: float) -> list[LayerAction]:
        """Deliver locally, push to eager peers, announce to lazy peers."""
        if msg_id in self._received:
            raise ValueError(f"broadcast id {msg_id!r} was already used")
        out: list[LayerAction] = [self._deliver(msg_id, payload, 0, None, now)]
        self._push(out, msg_id, payload, 1, None, now)
        return out

    def handle(self, event: Received | TimerFired, now: float) -> list[LayerAction]:
        """Dispatch a Plumtree message or timer; anything else is counted and dropped."""
        if isinstance(event, TimerFired):
            if event.name == _LAZY_TIMER:
                return self._flush_lazy()
            msg_id = self._graft_timers.pop(event.name, None)
            if msg_id is None:
                return []
            return self._graft_timer(msg_id, event.name, now)
        msg, sender = event.msg, event.sender
        kind = type(msg)
        if kind is Gossip and _well_formed_id(msg.msg_id) and _hop(msg.round):
            return self._on_gossip(msg, sender, now)
        if kind is IHave and _well_formed_ihave(msg):
            return self._on_ihave(msg, sender, now)
        if (
            kind is Graft
            and (msg.msg_id is None or _well_formed_id(msg.msg_id))
            and _hop(msg.round)
        ):
            return self._on_graft(msg, sender)
        if kind is Prune:
            if sender.name in self.eager:
                del self.eager[sender.name]
                self.lazy[sender.name] = sender
            return []
        # a peer's bad input: count it, log it, drop it (never raise)
        self._dropped += 1
        log.debug("dropping malformed or foreign message %r from %s", kind.__name__, sender)
        return []

    # ------------------------------------------------------------ handlers

    def _on_gossip(self, msg: Gossip, sender: NodeSpec, now: float) -> list[LayerAction]:
        name = sender.name
        neighbour = name in self.eager or name in self.lazy
        if msg.msg_id in self._received:
            # A duplicate: this link is redundant for the tree.
            if neighbour:
                self.eager.pop(name, None)
                self.lazy[name] = sender
                self._prunes += 1
                return [Send(sender, Prune(), BROADCAST_CHANNEL)]
            return []
        out: list[LayerAction] = [self._deliver(msg.msg_id, msg.payload, msg.round, sender, now)]
        announcers = self._missing.pop(msg.msg_id, None)
        timer = _GRAFT_PREFIX + repr(msg.msg_id)
        if self._graft_timers.pop(timer, None) is not None:
            out.append(CancelTimer(timer))
        if neighbour:
            self.lazy.pop(name, None)
            self.eager[name] = sender
        self._push(out, msg.msg_id, msg.payload, msg.round + 1, name, now)
        if announcers and neighbour:  # optimisation: a much shorter path was announced
            best, best_round = min(announcers, key=lambda a: a[1])
            if msg.round - best_round >= self.threshold and best.name in self.lazy:
                del self.lazy[best.name]
                self.eager[best.name] = best
                self.eager.pop(name, None)
                self.lazy[name] = sender
                self._grafts += 1
                self._prunes += 1
                out.append(Send(best, Graft(None, best_round), BROADCAST_CHANNEL))
                out.append(Send(sender, Prune(), BROADCAST_CHANNEL))
        return out

    def _on_ihave(self, msg: IHave, sender: NodeSpec, now: float) -> list[LayerAction]:
        out: list[LayerAction] = []
        for msg_id, rnd in msg.announcements:
            if msg_id in self._received:
                continue
            announcers = self._missing.setdefault(msg_id, [])
            announcers.append((sender, rnd))
            timer = _GRAFT_PREFIX + repr(msg_id)
            if timer not in self._graft_timers:
                self._graft_timers[timer] = msg_id
                out.append(SetTimer(timer, now + self.cfg.graft_timeout))
        return out

    def _graft_timer(self, msg_id: Hashable, timer: str, now: float) -> list[LayerAction]:
        announcers = self._missing.get(msg_id)
        if msg_id in self._received or not announcers:
            self._missing.pop(msg_id, None)  # nobody left to ask; a new IHave restarts
            return []
        peer, rnd = announcers.pop(0)
        self._graft_timers[timer] = msg_id
        if peer.name in self.lazy:
            del self.lazy[peer.name]
            self.eager[peer.name] = peer
        self._grafts += 1
        return [
            SetTimer(timer, now + self.cfg.graft_timeout_retry),
            Send(peer, Graft(msg_id, rnd), BROADCAST_CHANNEL),
        ]

    def _on_graft(self, msg: Graft, sender: NodeSpec) -> list[LayerAction]:
        if sender.name in self.lazy:
            del self.lazy[sender.name]
            self.eager[sender.name] = sender
        if msg.msg_id is None:
            return []
        held = self._received.get(msg.msg_id)
        if held is None:
            return []
        payload, hops, _ = held
        return [Send(sender, Gossip(msg.msg_id, payload, hops + 1), BROADCAST_CHANNEL)]

    # ------------------------------------------------------------- helpers

    def _deliver(
        self, msg_id: Hashable, payload: Any, hops: int, sender: NodeSpec | None, now: float
    ) -> Deliver:
        received = self._received
        received[msg_id] = (payload, hops, now)
        horizon = now - self.cfg.message_ttl
        while received:
            first = next(iter(received))
            if received[first][2] >= horizon:
                break
            del received[first]
        self._delivered += 1
        return Deliver(msg_id, payload, hops, sender)

    def _push(
        self,
        out: list[LayerAction],
        msg_id: Hashable,
        payload: Any,
        rnd: int,
        skip: str | None,
        now: float,
    ) -> None:
        """Eager-push the payload and queue lazy announcements (skipping `skip`)."""
        gossip = Gossip(msg_id, payload, rnd)
        for name in sorted(self.eager):
            if name != skip:
                out.append(Send(self.eager[name], gossip, BROADCAST_CHANNEL))
        if self.lazy:
            queue = self._lazy_queue
            for name in self.lazy:
                if name != skip:
                    queue.setdefault(name, []).append((msg_id, rnd))
            if queue and not self._lazy_armed:
                self._lazy_armed = True
                # the tick is armed only while announcements wait, so an idle node has no timer
                out.append(SetTimer(_LAZY_TIMER, now + self.cfg.lazy_tick))

    def _flush_lazy(self) -> list[LayerAction]:
        self._lazy_armed = False
        queue, self._lazy_queue = self._lazy_queue, {}
        out: list[LayerAction] = []
        for name in sorted(queue):
            peer = self.lazy.get(name) or self.eager.get(name)
            if peer is not None and queue[name]:
                out.append(Send(peer, IHave(tuple(queue[name])), BROADCAST_CHANNEL))
        return out


def _well_formed_id(msg_id: object) -> bool:
    """A message id must be hashable (it keys every table here)."""
    try:
        hash(msg_id)
    except TypeError:
        return False
    return msg_id is not None


def _hop(value: object) -> bool:
    return type(value) is int and 0 <= value < 1 << 31


def _well_formed_ihave(msg: IHave) -> bool:
    items = msg.announcements
    return (
        type(items) is tuple
        and len(items) <= MAX_ANNOUNCEMENTS
        and all(
            type(item) is tuple and len(item) == 2 and _well_formed_id(item[0]) and _hop(item[1])
            for item in items
        )
    )

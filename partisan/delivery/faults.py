"""Fault injection: drop, delay, duplicate and partition a node's traffic, in user space.

Theory of operation
-------------------
Partisan's interposition functions (reference §5.3) are compiled in only for
test builds and see traffic only with the fast paths disabled. Ours are
always there and cost nothing while no fault is set, because they are not
*on* the path until then: `Links` binds its ``send`` (and ``send_wait``) as
instance attributes and reads its ``handler`` per message, so `Faults`
installs wrappers in those three places when the first rule is set and puts
the originals back when the last one goes. With no rule, a message takes
exactly the transport's own path (`PARTISAN_FAULTS=off`, read at import,
makes `Faults` refuse to install at all: the benchmark's "disabled" build).

Where it sits: above the transport's sessions (a dropped message is a gap the
transport never sees, so no link ends over it) and below the acked and causal
layers (`partisan.delivery.acked`), whose retransmissions recover from its
drops. Every send and receive of every channel passes through it, membership
and runtime control included, matched per rule by peer and channel.

Rules act in the order they were set; each draws from one `random.Random`
seeded by the caller, so a failing run replays with the same seed (given the
same message order). Hidden peers (the CLI, test observers) are never
touched. A partition is not a rule: `partition(groups)` cuts every link to a
peer in another group at once (`Links.cut`, BYE ``"partitioned"``, so both
ends report `NodeDown(node, "partitioned")`) and makes the transport refuse
those peers' HELLOs and our dials to them until `heal()`.

Every change is written to the node's event log as ``fault.set`` /
``fault.clear``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from partisan.errors import PartisanError

__all__ = ["DISABLED", "FaultRule", "FaultStatistics", "Faults"]

logger = logging.getLogger(__name__)

#: Set by ``PARTISAN_FAULTS=off`` at import: `Faults` never installs (benchmarks only).
DISABLED = os.environ.get("PARTISAN_FAULTS", "").lower() in ("off", "0", "no", "false")

KINDS = ("drop", "delay", "duplicate")
DIRECTIONS = ("send", "receive", "both")


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One fault: `kind` on messages to/from `peer` (None: any) on `channel` (None: any)."""

    id: int
    kind: str
    peer: str | None = None
    channel: str | None = None
    direction: str = "both"
    probability: float = 1.0
    delay: float = 0.0
    jitter: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON, the event log, the CLI)."""
        return dataclasses.asdict(self)

    def matches(self, peer: str, channel: str, direction: str) -> bool:
        return (
            (self.peer is None or self.peer == peer)
            and (self.channel is None or self.channel == channel)
            and (self.direction == "both" or self.direction == direction)
        )


@dataclass(frozen=True, slots=True)
class FaultStatistics:
    """What the injector did since the node started."""

    rules: tuple[FaultRule, ...]
    partition: tuple[tuple[str, ...], ...]
    dropped: int
    delayed: int
    duplicated: int
    cut: int
    refused: int


class Faults:
    """A node's fault injector (`node.faults`); every method is a plain function."""

    def __init__(
        self,
        name: str,
        *,
        seed: int | None = None,
        record: Callable[..., None] | None = None,
        is_hidden: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self._record = record
        self._is_hidden = is_hidden
        self._rules: list[FaultRule] = []
        self._groups: tuple[frozenset[str], ...] = ()
        self._next_id = 1
        self._links: Any = None
        self._loop: Any = None
        self._installed = False
        self._originals: tuple[Any, Any, Any] | None = None
        self.dropped = self.delayed = self.duplicated = self.cut = self.refused = 0

    # ------------------------------------------------------------ wiring

    def wire(self, *, record: Callable[..., None] | None, is_hidden: Callable[[str], bool]) -> None:
        """Write changes with `record` (the event log) and spare peers `is_hidden` names."""
        self._record, self._is_hidden = record, is_hidden

    def attach(self, links: Any, loop: Any) -> None:
        """Act on `links` (a started `Links`); called once by the node."""
        self._links, self._loop = links, loop

    def seed(self, seed: int | None) -> None:
        """Reseed the random choices (a replay starts here)."""
        self.rng.seed(seed)

    # --------------------------------------------------------------- API

    def drop(
        self,
        peer: str | None = None,
        *,
        channel: str | None = None,
        probability: float = 1.0,
        direction: str = "both",
    ) -> int:
        """Drop matching messages with `probability`; returns the rule's id."""
        return self._add("drop", peer, channel, direction, probability=probability)

    def delay(
        self,
        peer: str | None = None,
        *,
        channel: str | None = None,
        seconds: float = 0.0,
        jitter: float = 0.0,
        probability: float = 1.0,
        direction: str = "both",
    ) -> int:
        """Hold matching messages `seconds` plus up to `jitter` more (uniform); returns the id."""
        if seconds < 0 or jitter < 0:
            raise ValueError(f"delay: seconds and jitter must be >= 0, got {seconds}, {jitter}")
        return self._add(
            "delay", peer, channel, direction, probability=probability, delay=seconds, jitter=jitter
        )

    def duplicate(
        self,
        peer: str | None = None,
        *,
        channel: str | None = None,
        probability: float = 1.0,
        direction: str = "both",
    ) -> int:
        """Deliver matching messages twice with `probability`; returns the rule's id."""
        return self._add("duplicate", peer, channel, direction, probability=probability)

    def add(self, rule: dict[str, Any]) -> int:
        """Add a rule given as a dict (`FaultRule.to_dict` without ``id``; the CLI's form)."""
        fields = dict(rule)
        fields.pop("id", None)
        kind = fields.pop("kind", None)
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return self._add(
            kind, fields.pop("peer", None), fields.pop("channel", None),
            fields.pop("direction", "both"), **fields,
        )  # fmt: skip

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut this node off from every node in another group until `heal()`.

        Each group reaches only itself; a node in no group reaches everyone.
        Links to the other side close now (`NodeDown(..., "partitioned")` on
        both ends) and are refused until healed. Hidden peers are never cut.
        """
        sets = tuple(frozenset(str(n) for n in group) for group in groups)
        seen: set[str] = set()
        for group in sets:
            if not group or group & seen:
                raise ValueError("partition: groups must be non-empty and disjoint")
            seen |= group
        self._groups = sets
        self._log("fault.set", fault="partition", groups=[sorted(g) for g in sets])
        links = self._links
        if links is None or DISABLED:
            return
        links.admit = self._admit if sets else None
        for spec in list(links.peers()):
            if self._separated(spec.name) and not self._is_hidden(spec.name):
                self.cut += 1
                links.cut(spec.name, "partitioned")

    def heal(self) -> None:
        """End the partition (links come back as the membership manager re-dials)."""
        had = bool(self._groups)
        self._groups = ()
        if self._links is not None:
            self._links.admit = None
        if had:
            self._log("fault.clear", fault="partition")

    def clear(self, rule_id: int | None = None) -> None:
        """Remove one rule, or (None) every rule and the partition."""
        if rule_id is None:
            removed, self._rules = self._rules, []
            self.heal()
        else:
            removed = [r for r in self._rules if r.id == rule_id]
            self._rules = [r for r in self._rules if r.id != rule_id]
        for rule in removed:
            self._log("fault.clear", fault=rule.kind, rule=rule.id)
        self._sync()

    def rules(self) -> tuple[FaultRule, ...]:
        """The rules in force, in the order they act."""
        return tuple(self._rules)

    def groups(self) -> tuple[tuple[str, ...], ...]:
        """The partition in force (empty when healed)."""
        return tuple(tuple(sorted(g)) for g in self._groups)

    def statistics(self) -> FaultStatistics:
        """Rules, partition and counters, as an immutable record."""
        return FaultStatistics(
            self.rules(), self.groups(), self.dropped, self.delayed, self.duplicated,
            self.cut, self.refused,
        )  # fmt: skip

    @property
    def active(self) -> bool:
        """True while any rule is set (the wrappers are on the path)."""
        return self._installed

    # ---------------------------------------------------------- internals

    def _add(
        self, kind: str, peer: str | None, channel: str | None, direction: str, **kw: Any
    ) -> int:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        probability = kw.get("probability", 1.0)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {probability!r}")
        rule = FaultRule(self._next_id, kind, peer, channel, direction, **kw)
        self._next_id += 1
        self._rules.append(rule)
        self._log("fault.set", fault=kind, peer=peer, rule=rule.id, **_extras(rule))
        self._sync()
        return rule.id

    def _log(self, event: str, *, peer: str | None = None, **extra: Any) -> None:
        logger.info("%s: %s %s %s", self.name, event, peer or "", extra)
        if self._record is not None:
            try:
                self._record(event, peer=peer, **extra)
            except Exception:  # the log must never break the injector
                logger.exception("event log: recording %s failed", event)

    def _separated(self, peer: str) -> bool:
        mine = None
        theirs = None
        for group in self._groups:
            if self.name in group:
                mine = group
            if peer in group:
                theirs = group
        return mine is not None and theirs is not None and mine is not theirs

    def _admit(self, peer: str, hidden: bool) -> str | None:
        """The transport's hook: a refusal reason for `peer`'s HELLO or our dial, or None."""
        if not hidden and self._separated(peer):
            self.refused += 1
            return "partitioned"
        return None

    def _sync(self) -> None:
        """Put the wrappers on the path while rules exist; take them off after."""
        links = self._links
        if links is None or DISABLED:
            return
        want = bool(self._rules)
        if want and not self._installed:
            self._originals = (links.send, links.send_wait, links.handler)
            send, send_wait, handler = self._originals
            links.send = self._wrap_send(send)
            links.send_wait = self._wrap_send_wait(send_wait)
            links.handler = _FaultyHandler(self, handler)
            self._installed = True
        elif not want and self._installed:
            assert self._originals is not None
            send, send_wait, handler = self._originals
            links.send, links.send_wait = send, send_wait
            if isinstance(links.handler, _FaultyHandler):
                links.handler = links.handler.inner
            else:  # someone replaced the handler since: keep theirs
                links.handler = handler if links.handler is None else links.handler
            self._installed = False

    def fate(self, peer: str, channel: str, direction: str) -> tuple[int, float]:
        """How many copies of this message go on (0: dropped) and after how long."""
        copies, wait = 1, 0.0
        if self._is_hidden(peer):
            return copies, wait
        rng = self.rng
        for rule in self._rules:
            if not rule.matches(peer, channel, direction):
                continue
            if rule.probability < 1.0 and rng.random() >= rule.probability:
                continue
            if rule.kind == "drop":
                self.dropped += 1
                return 0, 0.0
            if rule.kind == "duplicate":
                self.duplicated += 1
                copies = 2
            else:
                self.delayed += 1
                wait += rule.delay + (rng.uniform(0.0, rule.jitter) if rule.jitter else 0.0)
        return copies, wait

    def _wrap_send(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def faulty_send(peer: str, channel: str, dest: str, payload: object, **kw: Any) -> Any:
            copies, wait = self.fate(peer, channel, "send")
            if copies == 0:
                return None
            if wait <= 0.0:
                result = send(peer, channel, dest, payload, **kw)
                if copies == 2:
                    _quietly(send, peer, channel, dest, payload, kw)
                return result
            for _ in range(copies):
                self._loop.call_later(wait, _quietly, send, peer, channel, dest, payload, kw)
            return None

        return faulty_send

    def _wrap_send_wait(self, send_wait: Callable[..., Any]) -> Callable[..., Any]:
        send = self._originals[0] if self._originals else None

        async def faulty_send_wait(
            peer: str, channel: str, dest: str, payload: object, **kw: Any
        ) -> None:
            copies, wait = self.fate(peer, channel, "send")
            if copies == 0:
                return
            if wait <= 0.0:
                await send_wait(peer, channel, dest, payload, **kw)
                if copies == 2 and send is not None:
                    kw.pop("timeout", None)
                    _quietly(send, peer, channel, dest, payload, kw)
                return
            kw.pop("timeout", None)
            for _ in range(copies):
                self._loop.call_later(wait, _quietly, send, peer, channel, dest, payload, kw)

        return faulty_send_wait


class _FaultyHandler:
    """The transport's handler while rules exist: the receive path's faults."""

    __slots__ = ("faults", "inner")

    def __init__(self, faults: Faults, inner: Any) -> None:
        self.faults, self.inner = faults, inner

    def on_message(self, sender: Any, channel: str, dest: str, payload: object) -> None:
        faults = self.faults
        copies, wait = faults.fate(sender.name, channel, "receive")
        for _ in range(copies):
            if wait <= 0.0:
                self.inner.on_message(sender, channel, dest, payload)
            else:
                faults._loop.call_later(wait, self._late, sender, channel, dest, payload)

    def _late(self, sender: Any, channel: str, dest: str, payload: object) -> None:
        try:
            self.inner.on_message(sender, channel, dest, payload)
        except Exception:  # as the transport does: a handler's bug must not stop the timers
            logger.exception("on_message failed for a delayed message from %s", sender)

    def on_peer_up(self, peer: Any, hidden: bool) -> None:
        self.inner.on_peer_up(peer, hidden)

    def on_peer_down(self, peer: Any, reason: str) -> None:
        self.inner.on_peer_down(peer, reason)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _quietly(send: Any, peer: str, channel: str, dest: str, payload: object, kw: Any) -> None:
    """A delayed or duplicate copy: its failure has no caller left to tell."""
    try:
        kw = dict(kw)
        kw.pop("timeout", None)
        send(peer, channel, dest, payload, **kw)
    except (PartisanError, ValueError) as exc:
        logger.debug("faults: a delayed/duplicate copy to %s was not sent: %s", peer, exc)


def _extras(rule: FaultRule) -> dict[str, Any]:
    out = rule.to_dict()
    for key in ("id", "kind", "peer"):
        out.pop(key)
    return out

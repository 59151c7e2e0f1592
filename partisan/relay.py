"""`send`/`cast(..., transitive=True)`: relay a user message over the overlay to a node with no link.

Theory of operation
-------------------
Partisan forwards a transitive message along the out-links of the broadcast
tree, with a TTL, until a node connected to the target hands it over. We do
the same, driven by the `PeerService`:

* **Route.** The origin wraps the message in a `Relayed` and sends it to
  ``"$relay"`` on each out-link of its broadcast tree
  (`BroadcastService.relay_peers`: Plumtree's eager peers; every neighbour
  under flood, i.e. the static manager; every neighbour while all links are
  lazy). A node that receives it delivers it if it is the target; else sends
  it straight to the target if it has a link to it (a client-server server
  always has one to its clients: clients' traffic goes through a server);
  else forwards it on its own out-links, except the one it came from. Each
  hop spends one unit of TTL (``config.relay_ttl`` hops in all); a message
  with none left and no link to the target is dropped and counted
  (``ttl_expired``).
* **Dedup.** Every node remembers the `(origin, incarnation, target, seq)`
  keys it forwarded (bounded, ``plumtree.message_ttl`` seconds), so a message
  crosses each node once even where the tree has cycles; the target's
  reorder buffer drops the copies several neighbours hand over.
* **Order.** The origin numbers the messages it relays to each target
  (``seq`` per target, per origin incarnation). The target delivers each
  origin's stream in ``seq`` order (`ReorderBuffer`): a message after a gap
  is held until the gap fills, at most `HOLD` seconds (or `HOLD_LIMIT`
  messages); then the gap is skipped and counted (``skipped``). So relayed
  messages from one sender arrive in send order, and none is delivered twice.
  Order between a relayed message and a direct one (the link came up
  meanwhile) is not kept.
* **Errors.** `forward` raises `NotConnected` only when no route exists: no
  overlay neighbour at all. `Overloaded` when every out-link's budget is full.
  Relayed messages are best effort beyond that, like Partisan's: a path cut by
  a failure loses them (the target counts the gap as a skip).
* **Delivery** at the target is exactly a direct frame's (`Inbound.on_message`):
  a user message resolves its Pid or name; a runtime envelope (``"$runtime"``:
  calls, replies, monitors, signals, which the runtime relays between two
  client-server clients) is handled as if it came from the origin over a
  link, so replies and Downs go back to the origin, not to the last hop; so
  is an acked channel's data (``"$acked"``, `partisan.delivery.streams`).
  Other ``$``-destinations are refused and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partisan.actors.remote_inbound import RUNTIME_DEST
from partisan.delivery.streams import ACKED_DEST
from partisan.errors import NotConnected, Overloaded, PartisanError
from partisan.identity import NodeSpec

if TYPE_CHECKING:
    from partisan.peer_service import PeerService

__all__ = [
    "HOLD",
    "HOLD_LIMIT",
    "RELAY_DEST",
    "Relay",
    "RelayStatistics",
    "Relayed",
    "ReorderBuffer",
]

logger = logging.getLogger(__name__)

#: The destination relay hops are addressed to.
RELAY_DEST = "$relay"
#: Seconds a relayed message waits for an earlier one of its stream before the gap is skipped.
HOLD = 1.0
#: Messages one stream may hold behind a gap before the gap is skipped.
HOLD_LIMIT = 10_000
_SEEN_LIMIT = 100_000  # forwarded keys remembered, besides the time bound


@dataclass(frozen=True, slots=True)
class Relayed:
    """A user message on its way to `target` (``dest`` resolved there, as a direct send's)."""

    origin: str
    incarnation: int
    seq: int
    target: str
    channel: str
    dest: str
    msg: Any
    ttl: int  # hops it may still take after this one


@dataclass(frozen=True, slots=True)
class RelayStatistics:
    """One node's relay counters (an immutable snapshot)."""

    originated: int
    forwarded: int
    delivered: int
    duplicates: int
    ttl_expired: int
    skipped: int
    held: int
    dropped: int


class ReorderBuffer:
    """One origin's stream at the target: release in `seq` order, hold gaps at most `hold` s.

    Sans-IO: `offer` and `expire` take `now` and return what to deliver;
    `deadline` says when `expire` is next due (None: no gap).
    """

    __slots__ = ("_gap_since", "held", "hold", "limit", "next")

    def __init__(self, hold: float = HOLD, limit: int = HOLD_LIMIT) -> None:
        self.next = 1
        self.held: dict[int, Any] = {}
        self.hold = hold
        self.limit = limit
        self._gap_since: float | None = None

    def offer(self, seq: int, item: Any, now: float) -> tuple[list[Any], int] | None:
        """Take message `seq`; return (items now deliverable, gaps skipped), None for a duplicate."""
        if seq < self.next or seq in self.held:
            return None
        self.held[seq] = item
        out = self._release()
        skipped = 0
        if len(self.held) > self.limit:
            more, skipped = self._skip()
            out += more
        self._track(now)
        return out, skipped

    def expire(self, now: float) -> tuple[list[Any], int]:
        """Skip the gap if it has waited `hold` seconds; return (items, gaps skipped)."""
        if self._gap_since is None or now < self._gap_since + self.hold:
            return [], 0
        out, skipped = self._skip()
        self._gap_since = None
        self._track(now)
        return out, skipped

    def deadline(self) -> float | None:
        return None if self._gap_since is None else self._gap_since + self.hold

    def _release(self) -> list[Any]:
        out = []
        held = self.held
        while self.next in held:
            out.append(held.pop(self.next))
            self.next += 1
        return out

    def _skip(self) -> tuple[list[Any], int]:
        first = min(self.held)
        skipped = first - self.next
        self.next = first
        return self._release(), skipped

    def _track(self, now: float) -> None:
        if not self.held:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = now


class Relay:
    """Relays `transitive=True` sends for one node (see the module docstring)."""

    def __init__(self, peer_service: PeerService) -> None:
        self.service = peer_service
        self.spec = peer_service.spec
        self.ttl = peer_service.config.relay_ttl
        self._remember = peer_service.config.plumtree.message_ttl
        self._seq: dict[str, int] = {}  # target -> last seq relayed to it
        self._seen: OrderedDict[tuple[str, int, str, int], float] = OrderedDict()
        self._streams: dict[tuple[str, int], ReorderBuffer] = {}
        self._origins: dict[tuple[str, int], NodeSpec] = {}  # who the runtime hears it from
        self._timers: dict[tuple[str, int], asyncio.TimerHandle] = {}
        self._closed = False
        self._originated = self._forwarded = self._delivered = self._duplicates = 0
        self._ttl_expired = self._skipped = self._dropped = 0

    # ------------------------------------------------------------- origin

    def forward(self, node: str, channel: str, dest: str, msg: Any, partition_key: Any) -> None:
        """Relay `msg` for `dest` on `node` (`Distribution.send`'s transitive hook).

        Raises `NotConnected` when there is no route (no overlay neighbour),
        `Overloaded` when every out-link's send budget is full.
        """
        if self._closed:
            raise NotConnected(f"no route to node {node!r}: {self.spec.name} is stopping")
        routes = self.service.broadcasts.relay_peers()
        if not routes:
            raise NotConnected(f"no route to node {node!r}: no link and no overlay neighbour")
        seq = self._seq.get(node, 0) + 1
        relayed = Relayed(
            self.spec.name, self.spec.incarnation, seq, node, channel, dest, msg, self.ttl - 1
        )
        overloaded: Overloaded | None = None
        sent = False
        for peer in routes:
            try:
                self.service.links.send(
                    peer.name, channel, RELAY_DEST, relayed, partition_key=partition_key
                )
                sent = True
            except Overloaded as exc:
                overloaded = exc
            except NotConnected:
                pass
        if not sent:
            if overloaded is not None:
                raise overloaded
            raise NotConnected(f"no route to node {node!r}: no overlay neighbour is reachable")
        self._seq[node] = seq  # a seq nobody carries would cost the target a HOLD
        self._originated += 1
        self._mark((relayed.origin, relayed.incarnation, node, seq))

    # --------------------------------------------------------------- hops

    def on_message(self, sender: NodeSpec, msg: Any) -> None:
        """A hop arrived (PeerService routes ``"$relay"`` frames here)."""
        if self._closed:
            return
        if not _well_formed(msg):
            self._dropped += 1  # a peer's bad input: counted, never raised
            return
        if msg.target == self.spec.name:
            self._arrive(msg)
            return
        key = (msg.origin, msg.incarnation, msg.target, msg.seq)
        if key in self._seen:
            self._duplicates += 1
            return
        self._mark(key)
        if msg.ttl <= 0:
            self._ttl_expired += 1
            return
        nxt = Relayed(
            msg.origin, msg.incarnation, msg.seq, msg.target, msg.channel, msg.dest, msg.msg,
            msg.ttl - 1,
        )  # fmt: skip
        dist = self.service.dist
        if msg.target in dist.up:
            routes = [dist.up[msg.target]]
        else:
            skip = (sender.name, msg.origin)
            routes = [p for p in self.service.broadcasts.relay_peers() if p.name not in skip]
        for peer in routes:
            try:
                self.service.links.send(peer.name, self._channel(msg.channel), RELAY_DEST, nxt)
                self._forwarded += 1
            except (PartisanError, ValueError) as exc:
                self._dropped += 1
                logger.debug("relay hop to %s failed: %s", peer.name, exc)

    def _arrive(self, msg: Relayed) -> None:
        loop = self.service._loop
        assert loop is not None
        stream = (msg.origin, msg.incarnation)
        buffer = self._streams.get(stream)
        if buffer is None:
            origin = self._origin_spec(msg)
            if origin is None:
                self._dropped += 1  # not a node name: a peer's bad input
                return
            for old in [k for k in self._streams if k[0] == msg.origin and k[1] < msg.incarnation]:
                del self._streams[old]  # the origin restarted: its old stream is over
                self._origins.pop(old, None)
            buffer = self._streams[stream] = ReorderBuffer()
            self._origins[stream] = origin
        result = buffer.offer(msg.seq, msg, loop.time())
        if result is None:
            self._duplicates += 1
            return
        ready, skipped = result
        self._skipped += skipped
        self._hand_over(stream, ready)
        self._arm(stream, buffer)

    def _origin_spec(self, msg: Relayed) -> NodeSpec | None:
        """The origin as the runtime must see it: replies and Downs go back to it, not the hop."""
        spec = self.service.find(msg.origin)
        if spec is not None and spec.incarnation == msg.incarnation:
            return spec
        try:
            return NodeSpec(msg.origin, "", 0, incarnation=msg.incarnation)
        except ValueError:
            return None

    def _hand_over(self, stream: tuple[str, int], ready: list[Relayed]) -> None:
        dist = self.service.dist
        origin = self._origins[stream]
        for msg in ready:
            if msg.dest.startswith("$") and msg.dest != RUNTIME_DEST and msg.dest != ACKED_DEST:
                self._dropped += 1  # actors and the runtime only: never membership frames
                continue
            self._delivered += 1
            dist.on_message(origin, msg.channel, msg.dest, msg.msg)

    def _arm(self, stream: tuple[str, int], buffer: ReorderBuffer) -> None:
        old = self._timers.pop(stream, None)
        if old is not None:
            old.cancel()
        deadline = buffer.deadline()
        if deadline is None:
            return
        loop = self.service._loop
        assert loop is not None
        self._timers[stream] = loop.call_at(deadline, self._expire, stream)

    def _expire(self, stream: tuple[str, int]) -> None:
        self._timers.pop(stream, None)
        buffer = self._streams.get(stream)
        loop = self.service._loop
        if buffer is None or loop is None or self._closed:
            return
        ready, skipped = buffer.expire(loop.time())
        self._skipped += skipped
        if ready:
            self._hand_over(stream, ready)
        self._arm(stream, buffer)

    # ------------------------------------------------------------ helpers

    def _channel(self, channel: str) -> str:
        return channel if channel in self.service.links.channels else "default"

    def _mark(self, key: tuple[str, int, str, int]) -> None:
        loop = self.service._loop
        now = loop.time() if loop is not None else 0.0
        seen = self._seen
        seen[key] = now
        horizon = now - self._remember
        while seen:
            first = next(iter(seen))
            if seen[first] >= horizon and len(seen) <= _SEEN_LIMIT:
                break
            del seen[first]

    def statistics(self) -> RelayStatistics:
        return RelayStatistics(
            originated=self._originated,
            forwarded=self._forwarded,
            delivered=self._delivered,
            duplicates=self._duplicates,
            ttl_expired=self._ttl_expired,
            skipped=self._skipped,
            held=sum(len(b.held) for b in self._streams.values()),
            dropped=self._dropped,
        )

    def close(self) -> None:
        """Cancel the hold timers (idempotent); held messages are dropped with the node."""
        self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


def _well_formed(msg: Any) -> bool:
    return (
        type(msg) is Relayed
        and type(msg.origin) is str
        and type(msg.target) is str
        and type(msg.dest) is str
        and type(msg.channel) is str
        and type(msg.incarnation) is int
        and type(msg.seq) is int
        and msg.seq > 0
        and type(msg.ttl) is int
    )

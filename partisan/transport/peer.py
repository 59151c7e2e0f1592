"""The state `Links` keeps for one peer: its two half-sessions, lanes, budgets, credits.

A link to a peer is two half-sessions (see `session`): *outbound* — our
DEALERs towards its ROUTER, named by `out_session` — and *inbound* — its
DEALERs towards our ROUTER, named by `in_session`. A hidden peer has no
inbound DEALERs of ours to dial: our outbound path to it is the ROUTER lane
(`router_lane`). The link is *up* (PeerUp reported) once our outbound half is
welcomed and, unless we are hidden, the peer's inbound half is accepted.
Everything here is discarded when the link goes down; a reconnect builds a new
`Peer` with new session ids, a new budget and sequence numbers from 1.

`PeerTable` is the one index of live peers, by name and by the session and
routing ids their frames arrive with; the parts of `Links` look peers up in
it, and only the handshake (which admits) and teardown (which removes) change it.
"""

from __future__ import annotations

import asyncio
import enum

from partisan.identity import NodeSpec
from partisan.transport.backpressure import ByteBudget
from partisan.transport.inflow import Inflow
from partisan.transport.lanes import OutLane
from partisan.transport.session import InboundLane, parse_routing_id
from partisan.transport.statistics import PeerCounters

__all__ = ["OutState", "Peer", "PeerTable"]


class OutState(enum.Enum):
    """Where our outbound half-session stands."""

    NONE = "none"
    HANDSHAKING = "handshaking"  # HELLO sent (or waiting for the connection), no WELCOME yet
    UP = "up"


class Peer:
    """Mutable per-peer link state; owned and mutated only by `Links` on its loop."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        budget: int,
        counters: PeerCounters,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.spec: NodeSpec | None = None
        self.hidden = False
        self.server_key: bytes | None = None
        # outbound half
        self.out_session: int | None = None
        self.out_state = OutState.NONE
        self.reply_to: int | None = None
        self.hello: list[bytes] = []
        self.lanes: dict[tuple[str, int], OutLane] = {}
        self.router_lane: OutLane | None = None
        self.next_slot = 0
        self.fallback: set[str] = set()  # channels currently riding the default lane
        self.deadline = 0.0
        # inbound half
        self.in_session: int | None = None
        self.in_lanes: dict[bytes, InboundLane] = {}
        # flow control: a budget per channel we send on, an account per channel we read
        self.budget_limit = budget
        self.budgets: dict[str, ByteBudget] = {}
        self.inflows: dict[str, Inflow] = {}
        self.room = asyncio.Event()
        self.credit_rid: bytes | None = None  # credit via our ROUTER to this routing id
        self.credit_lane: OutLane | None = None  # ... or via this DEALER of ours
        # lifecycle
        self.ready: asyncio.Future[NodeSpec] = loop.create_future()
        self.up_reported = False
        self.closing = False
        # Liveness bookkeeping is a flag per message, turned into a time once
        # per heartbeat interval by Links' housekeeping (cheaper than a clock
        # read per message; precise to one interval).
        self.last_heard = loop.time()
        self.heard_recently = False
        self.sent_recently = False
        self.counters = counters

    def budget(self, channel: str) -> ByteBudget:
        """The send budget of `channel` towards this peer (created on first use)."""
        budget = self.budgets.get(channel)
        if budget is None:
            budget = self.budgets[channel] = ByteBudget(self.budget_limit)
        return budget

    def inflow(self, channel: str) -> Inflow:
        """Our account of what this peer sent us on `channel` (created on first use)."""
        inflow = self.inflows.get(channel)
        if inflow is None:
            inflow = self.inflows[channel] = Inflow(self, channel)
        return inflow

    @property
    def outstanding(self) -> int:
        """Bytes accepted for this peer, on every channel, that it has not credited yet."""
        return sum(b.outstanding for b in self.budgets.values())

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.address}"

    def control_lane(self) -> OutLane | None:
        """The lane that carries HELLO, PING and BYE: membership lane 0 or the ROUTER lane."""
        return self.router_lane or self.lanes.get(("membership", 0))

    def carries_data(self) -> bool:
        """True when we opened a lane besides `membership` (or ride the peer's ROUTER).

        It decides which lane an agreed close travels on: `OnDemand._close_channel`.
        """
        return self.router_lane is not None or any(key[0] != "membership" for key in self.lanes)

    def queued(self) -> tuple[int, int]:
        """(messages, bytes) waiting in our lane queues."""
        lanes = list(self.lanes.values())
        if self.router_lane is not None:
            lanes.append(self.router_lane)
        return sum(len(lane.queue) for lane in lanes), sum(lane.queue.bytes for lane in lanes)

    def __repr__(self) -> str:
        return f"<Peer {self.name}@{self.address} out={self.out_state.value} in={self.in_session is not None} up={self.up_reported}>"


class PeerTable:
    """The live peers, indexed by name, inbound session id and routing id; counters by name.

    The receive path reads `rid_cache` directly on its hot path (a dict hit per
    message); everything that changes an index goes through the methods here,
    so the three indexes never disagree.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget  # every new peer's send budget per channel
        self.peers: dict[str, Peer] = {}
        self.sessions: dict[int, Peer] = {}  # inbound session id -> peer
        self.rid_cache: dict[bytes, tuple[Peer, InboundLane]] = {}
        #: Per peer *name*, across sessions (statistics survive reconnects).
        self.counters: dict[str, PeerCounters] = {}

    def get(self, name: str) -> Peer | None:
        """The live peer called `name`, if any."""
        return self.peers.get(name)

    def current(self, peer: Peer) -> bool:
        """True while `peer` is the live state of its name (not a torn-down one)."""
        return self.peers.get(peer.name) is peer

    def values(self) -> list[Peer]:
        """A snapshot of the live peers (safe to tear down while iterating)."""
        return list(self.peers.values())

    def add(self, name: str, host: str, port: int, loop: asyncio.AbstractEventLoop) -> Peer:
        """Start the state of a new link to `name` (replacing nothing: the caller tore it down)."""
        counters = self.counters.get(name)
        if counters is None:
            counters = self.counters[name] = PeerCounters()
        peer = Peer(name, host, port, budget=self.budget, counters=counters, loop=loop)
        self.peers[name] = peer
        return peer

    def accept_inbound(self, peer: Peer, session: int) -> None:
        """`peer`'s inbound half-session is `session` from now on."""
        peer.in_session = session
        self.sessions[session] = peer

    def forget_inbound(self, peer: Peer) -> None:
        """Drop `peer`'s inbound half-session (a dial-back of ours replaces it)."""
        self._unindex(peer)
        peer.in_lanes.clear()
        peer.in_session = None

    def lookup_rid(self, rid: bytes) -> tuple[Peer, InboundLane] | None:
        """The peer and inbound lane of a routing id seen for the first time (then cached)."""
        parsed = parse_routing_id(rid)
        if parsed is None:
            return None
        peer = self.sessions.get(parsed[0])
        if peer is None or peer.in_session != parsed[0]:
            return None
        inbound = peer.in_lanes[rid] = InboundLane()
        self.rid_cache[rid] = (peer, inbound)
        return peer, inbound

    def remove(self, peer: Peer) -> None:
        """Forget `peer` (it must be current): its frames are unknown sessions from now on."""
        del self.peers[peer.name]
        self._unindex(peer)

    def _unindex(self, peer: Peer) -> None:
        if peer.in_session is not None:
            self.sessions.pop(peer.in_session, None)
        for rid in peer.in_lanes:
            self.rid_cache.pop(rid, None)

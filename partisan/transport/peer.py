"""The state `Links` keeps for one peer: its two half-sessions, lanes, budgets, credits.

A link to a peer is two half-sessions (see `session`): *outbound* — our
DEALERs towards its ROUTER, named by `out_session` — and *inbound* — its
DEALERs towards our ROUTER, named by `in_session`. A hidden peer has no
inbound DEALERs of ours to dial: our outbound path to it is the ROUTER lane
(`router_lane`). The link is *up* (PeerUp reported) once our outbound half is
welcomed and, unless we are hidden, the peer's inbound half is accepted.
Everything here is discarded when the link goes down; a reconnect builds a new
`Peer` with new session ids, a new budget and sequence numbers from 1.
"""

from __future__ import annotations

import asyncio
import enum

from partisan.identity import NodeSpec
from partisan.transport.backpressure import ByteBudget
from partisan.transport.inflow import Inflow
from partisan.transport.lanes import OutLane
from partisan.transport.session import InboundLane
from partisan.transport.statistics import PeerCounters

__all__ = ["OutState", "Peer"]


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

    def queued(self) -> tuple[int, int]:
        """(messages, bytes) waiting in our lane queues."""
        lanes = list(self.lanes.values())
        if self.router_lane is not None:
            lanes.append(self.router_lane)
        return sum(len(lane.queue) for lane in lanes), sum(lane.queue.bytes for lane in lanes)

    def __repr__(self) -> str:
        return f"<Peer {self.name}@{self.address} out={self.out_state.value} in={self.in_session is not None} up={self.up_reported}>"

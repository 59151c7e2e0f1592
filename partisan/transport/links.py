"""Links: this node's ZeroMQ connections to its peers, with sessions, lanes and budgets.

Theory of operation
-------------------
One ROUTER per node (ROUTER_MANDATORY, CURVE server behind the ZAP handler)
receives everything peers send us. Towards each peer we keep our own DEALERs,
one per (channel, lane): ``membership`` lane 0 carries the handshake and is
always open, as are the ``default`` lanes; other lanes open on first use
(`open_all_lanes` opens them all). Data flows over the sender's DEALERs; when
we accept a non-hidden peer's HELLO we dial it back, so replies have a path of
their own. A hidden peer is not dialled back: our messages to it ride the
ROUTER, addressed by its routing id (`OutLane.routed`).

The class is assembled from one mixin per concept over `core.LinksCore`:
`handshake` (HELLO / WELCOME / REFUSE; the rules are in `session`),
`detection` (heartbeats, monitors, PINGs, backoff, teardown), `receive`
(readiness, dispatch, delivery, credits) and `outbound` (lanes and the
hand-off to ZeroMQ). Flow control (a per-peer byte budget refilled by the
receiver's CREDIT frames) is in `backpressure`. This module is the public
API: lifecycle, connect, send, statistics.

I/O: every socket is driven by ``loop.add_reader`` on its ZeroMQ FD and called
with NOBLOCK; nothing awaits per message. The FD is edge-triggered, so every
wake-up drains until EAGAIN, and after sending on a socket we re-check its
EVENTS (a send can consume the edge of a pending receive).

Partisan opens every lane at join and monitors TCP only through its own
pings; we open lanes lazily (each CURVE handshake costs ~3 ms and ~3 fds) and
rely on ZMTP heartbeats, which were measured to find a frozen peer in ~300 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any, Protocol

import zmq

from partisan.config import ChannelSpec, Config
from partisan.errors import CallTimeout, ConfigError, JoinRefused, NotConnected, Overloaded
from partisan.identity import NodeSpec
from partisan.transport.backpressure import Pending
from partisan.transport.codec import encode_payload
from partisan.transport.credits import CREDIT_CHUNK, CreditReturn
from partisan.transport.detection import Detection
from partisan.transport.flow import FlowControl
from partisan.transport.handshake import Handshake
from partisan.transport.inflow import InboundGauge, Inflow
from partisan.transport.keys import KeyStore
from partisan.transport.lanes import OutLane
from partisan.transport.outbound import Outbound
from partisan.transport.peer import OutState, Peer
from partisan.transport.receive import Receiver
from partisan.transport.session import InboundLane
from partisan.transport.sockets import make_router, raise_nofile_limit
from partisan.transport.statistics import (
    LinkStatistics,
    PeerCounters,
    freeze_rejected,
    snapshot_peer,
)

__all__ = ["LinkHandler", "Links"]

log = logging.getLogger(__name__)

#: magic, version, kind, flags, incarnation, seq: the header bytes before template[2].
_HEADER_PREFIX = 22
_UP = OutState.UP


class LinkHandler(Protocol):
    """What the node implements; called on the loop, must not block."""

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None: ...

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None: ...

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None: ...


class Links(Handshake, Detection, Receiver, CreditReturn, FlowControl, Outbound):
    """This node's links to its peers (see the module docstring)."""

    def __init__(self, config: Config, *, incarnation: int, handler: LinkHandler) -> None:
        self.config = config
        self.name = config.name
        self.incarnation = incarnation
        self.handler = handler
        self.hidden = config.hidden
        self.channels: dict[str, ChannelSpec] = {c.name: c for c in config.all_channels()}
        self.keystore: KeyStore | None = None
        self._peers: dict[str, Peer] = {}
        self._sessions: dict[int, Peer] = {}  # inbound session id -> peer
        self._rid_cache: dict[bytes, tuple[Peer, InboundLane]] = {}
        self._counters: dict[str, PeerCounters] = {}
        self._rejected: Counter[str] = Counter()
        self._refused = 0
        self._handshakes = 0
        self._decoded = 0
        self._credit_due: set[Inflow] = set()
        #: Bytes of peers' messages unread in our mailboxes (the runtime holds and releases).
        self.gauge = InboundGauge(config.inbound_buffer_bytes)
        self.gauge.on_release = self._release_credits
        self._credit_timer = False
        self._credit_urgent = False
        self._credit_chunk = min(config.send_buffer_bytes // 4, CREDIT_CHUNK)
        self._names: dict[bytes, tuple[str, str, str]] = {}
        self._backoff: dict[tuple[str, str, int], tuple[float, float, str]] = {}
        self._templates: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}
        self._context: zmq.Context[Any] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._auth: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._router_scheduled = False
        self._paused = False
        self._dirty: dict[OutLane, Peer] = {}
        self._synced: set[OutLane] = set()
        self._dirty_scheduled = False
        self._closed = False
        self._spec: NodeSpec | None = None
        self._flushed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lost: dict[Peer, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------ lifecycle

    @property
    def spec(self) -> NodeSpec:
        """Our advertised spec (valid after `start`)."""
        if self._spec is None:
            raise RuntimeError("Links.start() has not run")
        return self._spec

    async def start(self) -> NodeSpec:
        """Bind the ROUTER (port 0 picks a free port) and start serving; return our spec."""
        if self._spec is not None:
            raise RuntimeError("Links already started")
        self._loop = asyncio.get_running_loop()
        raise_nofile_limit()
        self._context = zmq.Context()
        try:
            if not self.config.insecure:
                if self.config.key_dir is None:
                    raise ConfigError(
                        "key_dir: not set; CURVE is on by default — create keys with "
                        "'partisan keys new DIR --node NAME' or pass insecure=True"
                    )
                from partisan.transport.auth import Authenticator

                self.keystore = KeyStore(self.config.key_dir, self.name)
                self._auth = Authenticator(self._context, self.keystore)
                self._auth.start(self._loop)
            else:
                log.warning(
                    "node %s runs INSECURE: no encryption, no authentication; any process "
                    "that reaches %s can run code in it",
                    self.name,
                    self.config.host,
                )
            self._router, port = make_router(self._context, self.config, self.keystore)
        except BaseException:
            self._shutdown_sockets()
            raise
        self._loop.add_reader(self._router.FD, self._on_router_readable)
        self._schedule_router()  # the FD only signals edges: read once to arm it
        self._spec = NodeSpec(
            self.name,
            self.config.advertised_host,
            port,
            public_key=self.keystore.public_key if self.keystore else None,
            role=self.config.role,
            incarnation=self.incarnation,
        )
        self._timer = self._loop.call_later(self.config.heartbeat_interval, self._housekeeping)
        log.info("links of %s listening on %s", self.name, self._spec)
        return self._spec

    def leave(self) -> None:
        """Start leaving (a graceful stop's first step): refuse new sessions, keep the live ones.

        Peers that dial us from now on get `JoinRefused("... is leaving")`, and
        `connect` refuses too; existing links stay up so that what the node
        sends on its way out (the exit signals and `Down`s of its stopping
        actors) still reaches them. `close` then flushes and says BYE.
        """
        self._leaving = True

    async def close(self, *, flush_timeout: float) -> None:
        """Flush what peers have not yet credited (up to `flush_timeout`), say BYE, close."""
        if self._closed or self._loop is None:
            self._closed = True
            return
        self._closed = True
        deadline = self._loop.time() + flush_timeout
        # Every reported-up peer counts, also one whose dial-back is still
        # handshaking: what we queued for it goes once its WELCOME arrives.
        while self._loop.time() < deadline and any(
            p.outstanding for p in self._peers.values() if p.up_reported
        ):
            self._flushed.clear()
            try:
                await asyncio.wait_for(self._flushed.wait(), deadline - self._loop.time())
            except TimeoutError:
                break
        for handle in self._lost.values():
            handle.cancel()
        self._lost.clear()
        for peer in list(self._peers.values()):
            self._send_bye(peer, "left")
        for peer in list(self._peers.values()):
            self._teardown(peer, "left", notify=False, linger=100)
        self._shutdown_sockets()

    def _shutdown_sockets(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._router is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._router.FD)
            self._router.close(linger=100)
            self._router = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    # ------------------------------------------------------------ connecting

    async def connect(self, target: NodeSpec | str, *, timeout: float | None = None) -> NodeSpec:
        """Dial `target` and exchange HELLO; return the peer's announced spec.

        Idempotent for a live link. Raises `JoinRefused(reason)` when the peer
        (or its key) refuses us and `CallTimeout` when nothing answered in time.
        """
        loop = self._running()
        spec = NodeSpec.parse(target) if isinstance(target, str) else target
        timeout = self.config.handshake_timeout if timeout is None else timeout
        if spec.name == self.name:
            raise JoinRefused(f"self-join: {self.name} cannot join itself")
        if self._leaving or self._closed:
            raise JoinRefused(f"{self.name} is leaving: no new connections")
        peer = self._peers.get(spec.name)
        if peer is not None and peer.up_reported and not peer.closing:
            assert peer.spec is not None
            return peer.spec
        backoff = self._backoff.get((spec.name, spec.host, spec.port))
        if backoff is not None and backoff[0] > loop.time() and peer is None:
            raise JoinRefused(f"{backoff[2]} (backing off for {backoff[0] - loop.time():.1f} s)")
        if peer is not None and peer.closing:
            self._teardown(peer, "disconnected", notify=False)
            peer = None
        elif peer is not None and not peer.up_reported and peer.address != spec.address:
            # A dial of ours to another address for this name is still pending
            # (e.g. an earlier connect timed out): this connect supersedes it.
            # Waiting on it would time out against the old address.
            error = JoinRefused(f"dial of {spec.name}@{peer.address} superseded by {spec.address}")
            self._teardown(peer, "unreachable", notify=False, error=error)
            peer = None
        if peer is None:
            peer = self._new_peer(spec.name, spec.host, spec.port)
        if peer.out_state is OutState.NONE:
            self._open_out(peer, reply_to=None)
        try:
            return await asyncio.wait_for(asyncio.shield(peer.ready), timeout)
        except TimeoutError:
            raise CallTimeout(
                f"no handshake with {spec.name}@{peer.address} within {timeout} s"
            ) from None

    async def open_all_lanes(self, peer: str, *, timeout: float | None = None) -> None:
        """Open every lane of every channel to `peer` and wait until all are connected."""
        loop = self._running()
        state = self._live(peer)
        if state.router_lane is not None:
            return  # a hidden peer has one ROUTER lane, always up
        for spec in self.channels.values():
            for index in range(spec.parallelism):
                if (spec.name, index) not in state.lanes:
                    self._open_lane(state, spec.name, index)
        deadline = loop.time() + (self.config.handshake_timeout if timeout is None else timeout)
        while not all(lane.up for lane in state.lanes.values()):
            if self._peers.get(peer) is not state:
                raise NotConnected(f"link to {peer} went down while opening lanes")
            if loop.time() > deadline:
                raise CallTimeout(f"lanes to {peer} did not all connect in time")
            state.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.room.wait(), max(0.0, deadline - loop.time()))

    def disconnect(self, peer: str, *, reason: str = "disconnected") -> None:
        """Close the link to `peer` on purpose: flush, say BYE, close; no PeerDown callback.

        `reason` is what the BYE tells the peer: ``"disconnected"`` (a view
        change; the default) or ``"left"`` (a leave: the peer reports NodeDown
        with reason ``"left"``).
        """
        state = self._peers.get(peer)
        if state is None or state.closing:
            return
        state.closing = True
        if state.outstanding == 0:
            self._send_bye(state, reason)
            self._teardown(state, "disconnected", notify=False, linger=100)
        else:
            task = self._running().create_task(self._drain_then_close(state, reason))
            self._tasks.add(task)  # a strong reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _drain_then_close(self, peer: Peer, reason: str = "disconnected") -> None:
        loop = self._running()
        deadline = loop.time() + self.config.shutdown_timeout
        while peer.outstanding and self._peers.get(peer.name) is peer:
            if loop.time() > deadline:
                break
            peer.room.clear()
            try:
                await asyncio.wait_for(peer.room.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        if self._peers.get(peer.name) is peer:
            self._send_bye(peer, reason)
            self._teardown(peer, "disconnected", notify=False, linger=100)

    def is_connected(self, peer: str) -> bool:
        """True when a session with `peer` is up (PeerUp was reported)."""
        state = self._peers.get(peer)
        return state is not None and state.up_reported and not state.closing

    def peers(self) -> list[NodeSpec]:
        """Peers with a live session (hidden ones too), sorted by name."""
        return sorted(
            p.spec
            for p in self._peers.values()
            if p.up_reported and not p.closing and p.spec is not None
        )

    # ------------------------------------------------------------ sending

    def send(
        self,
        peer: str,
        channel: str,
        dest: str,
        payload: object,
        *,
        partition_key: object = None,
        control: bool = False,
        waiting: bool = False,
    ) -> None:
        """Queue `payload` for `dest` on `peer` over `channel`; never blocks.

        Raises `NotConnected` without a session, `Overloaded` when the
        channel's byte budget towards the peer is used up or other senders
        are waiting for it (`send_wait`), `ValueError` for an unknown channel
        or a message over `max_frame_bytes`, `EncodeError` for an unpicklable
        payload.

        `control=True` is for the runtime's own envelopes (replies, Down and
        exit signals, monitor and link requests): they have no caller to
        refuse, so they are queued on their lane even over the budget — behind
        whatever that lane holds already, so one sender's messages of every
        kind keep their order. `waiting=True` is `send_wait`'s oldest waiter
        taking its turn.
        """
        state = self._peers.get(peer)
        if state is None or state.closing or self._closed:
            raise NotConnected(f"{self.name} has no link to {peer}")
        lane = self._pick_lane(state, channel, partition_key)
        flags, frames = encode_payload(payload)
        template = self._templates.get((channel, dest)) or self._template(channel, dest)
        limit = self.config.max_frame_bytes
        if len(frames) == 1 and type(frames[0]) is bytes and len(frames[0]) <= limit:
            size = _HEADER_PREFIX + len(template[2]) + len(frames[0])  # the common case
        else:
            size = _HEADER_PREFIX + len(template[2])
            for frame in frames:
                n = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
                if n > limit:
                    raise ValueError(
                        f"payload frame of {n} bytes exceeds max_frame_bytes ({limit})"
                    )
                size += n
        budget = state.budgets.get(channel) or state.budget(channel)
        queue = lane.queue
        outstanding = budget.queued + budget.sent - budget.acked
        if not control and (
            (outstanding + size > budget.limit and outstanding > 0)  # admits(), inlined
            or (budget.waiters and not waiting)
        ):
            freed = queue.replaces(dest) if queue.monotonic else 0
            if (budget.waiters and not waiting) or not budget.admits(size, freed):
                raise Overloaded(
                    f"send buffer to {peer} on {channel!r} is full ({outstanding} of "
                    f"{budget.limit} bytes outstanding, {len(budget.waiters)} senders "
                    "waiting); retry, or use send_wait"
                )
        if (
            queue.bytes == 0  # nothing queued ahead of it (every message has bytes)
            and state.out_state is _UP
            and (lane.up or lane.prefix)  # lane.routed, inlined
            and self._hand_off(state, lane, budget, channel, template, flags, frames, size)
        ):
            return
        budget.queued += size - queue.push(Pending(channel, dest, flags, frames, size))
        if lane.routed and len(queue) == 1:
            # A ROUTER lane has no FD edge of its own to wake us: retry soon.
            self._running().call_later(0.001, self._flush, state, lane)

    # ------------------------------------------------------------ sessions

    # ------------------------------------------------------------ housekeeping

    def pause_receiving(self) -> None:
        """Stop reading the ROUTER: peers' budgets fill and their sends hit `Overloaded`.

        For tests and for a node that must shed load; nothing is lost, the
        kernel and ZeroMQ hold what peers already sent (bounded by their budgets).
        """
        self._paused = True
        if self._router is not None and self._loop is not None:
            self._loop.remove_reader(self._router.FD)

    def resume_receiving(self) -> None:
        """Undo `pause_receiving`."""
        self._paused = False
        if self._router is not None and self._loop is not None:
            self._loop.add_reader(self._router.FD, self._on_router_readable)
            self._schedule_router()

    # ------------------------------------------------------------ statistics

    def statistics(self) -> LinkStatistics:
        """An immutable snapshot of every peer's counters."""
        records = tuple(
            snapshot_peer(name, counters, self._peers.get(name))
            for name, counters in sorted(self._counters.items())
        )
        return LinkStatistics(
            node=self.name,
            peers=records,
            rejected=freeze_rejected(self._rejected),
            refused=self._refused,
            handshakes=self._handshakes,
            decoded=self._decoded,
            unread_bytes=self.gauge.held,
            unread_peak=self.gauge.peak,
            inbound_buffer_bytes=self.gauge.limit,
        )

    def traffic(self, peer: str) -> int:
        """Messages sent to and received from `peer` so far, membership excluded.

        The membership driver's sweep compares it between sweeps to find links
        dialled for actor traffic that have gone idle.
        """
        counters = self._counters.get(peer)
        if counters is None:
            return 0
        return sum(
            slot[0] + slot[2] for name, slot in counters.channels.items() if name != "membership"
        )

    # ------------------------------------------------------------ helpers

    def _running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("Links.start() has not run")
        return self._loop

    def _live(self, peer: str) -> Peer:
        state = self._peers.get(peer)
        if state is None or state.closing:
            raise NotConnected(f"{self.name} has no link to {peer}")
        return state

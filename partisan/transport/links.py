"""Links: this node's ZeroMQ connections to its peers, with sessions, lanes and budgets.

Theory of operation
-------------------
One ROUTER per node (ROUTER_MANDATORY, CURVE server behind the ZAP handler)
receives everything peers send us. Towards each peer we keep our own DEALERs,
one per (channel, lane): ``membership`` lane 0 carries the handshake and is
always open; every other lane, ``default``'s included, opens on first use
(`open_all_lanes` opens them all). Data flows over the sender's DEALERs; when
we accept a non-hidden peer's HELLO we dial it back, so replies have a path of
their own. A hidden peer is not dialled back: our messages to it ride the
ROUTER, addressed by its routing id (`OutLane.routed`).

`Links` is a facade over parts that each own their state (docs/design.md,
"Inside `Links`", has the table): `endpoint.Endpoint` (who we are, loop,
sockets; written only here), `peer.PeerTable`, `handshake.Handshake`,
`detection.Detection` (and teardown), `outbound.Outbound` (`send` itself),
`flow.Flow`, `receive.Receiver`, `dispatch.Dispatch`, `credits.Credits`.
This module is the public API: lifecycle, connect, send, statistics. It
builds the parts in dependency order; the few calls that go back up that
order are wired once, by each part's `attach`.

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
import logging
from collections.abc import Callable
from typing import Protocol

import zmq

from partisan.config import ChannelSpec, Config
from partisan.errors import ConfigError, JoinRefused
from partisan.identity import NodeSpec
from partisan.transport.auth import Authenticator, AuthStatistics
from partisan.transport.credits import Credits
from partisan.transport.detection import Detection
from partisan.transport.dispatch import Dispatch
from partisan.transport.endpoint import Endpoint
from partisan.transport.flow import Flow
from partisan.transport.handshake import Handshake
from partisan.transport.inflow import InboundGauge
from partisan.transport.keys import KeyStore
from partisan.transport.outbound import Outbound
from partisan.transport.peer import Peer, PeerTable
from partisan.transport.receive import Receiver
from partisan.transport.revocation import KeyWatch
from partisan.transport.sockets import make_router, raise_nofile_limit
from partisan.transport.statistics import (
    LinkStatistics,
    Rejections,
    freeze_rejected,
    snapshot_peer,
)

__all__ = ["LinkHandler", "Links"]

log = logging.getLogger(__name__)


class LinkHandler(Protocol):
    """What the node implements; called on the loop, must not block."""

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None: ...

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None: ...

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None: ...


class Links:
    """This node's links to its peers (see the module docstring)."""

    def __init__(self, config: Config, *, incarnation: int, handler: LinkHandler) -> None:
        self.config = config
        self.name = config.name
        self.incarnation = incarnation
        self.hidden = config.hidden
        local = self._local = Endpoint(config, incarnation=incarnation, handler=handler)
        self.channels: dict[str, ChannelSpec] = local.channels
        table = self._table = PeerTable(config.send_buffer_bytes)
        reject = self._rejections = Rejections(self.name)
        receiver = self._receiver = Receiver(local, table)
        credits = Credits(local, table, receiver)
        outbound = self._outbound = Outbound(local, table, receiver)
        flow = self._flow = Flow(local, table, reject, outbound, credits)
        detection = self._detection = Detection(
            local, table, reject, receiver=receiver, outbound=outbound, credits=credits, flow=flow
        )
        handshake = self._handshake = Handshake(
            local, table, reject, receiver=receiver, outbound=outbound, detection=detection
        )
        dispatch = self._dispatch = Dispatch(local, table, reject, credits)
        receiver.attach(dispatch=dispatch, credits=credits, outbound=outbound)
        outbound.attach(detection=detection)
        detection.attach(handshake=handshake)
        dispatch.attach(handshake=handshake, detection=detection, flow=flow)
        #: Bytes of peers' messages unread in our mailboxes (the runtime holds and releases).
        self.gauge: InboundGauge = credits.gauge
        # The hot path: callers reach `Outbound.send` with no forwarding frame
        # in between (the method below documents it and does the same).
        self.send = outbound.send  # type: ignore[method-assign]  # an instance binding of the same signature
        self._auth: Authenticator | None = None
        self._keywatch: KeyWatch | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def handler(self) -> LinkHandler:
        """Who is told about messages and peers; the node may replace it after `start`."""
        return self._local.handler

    @handler.setter
    def handler(self, handler: LinkHandler) -> None:
        self._local.handler = handler

    @property
    def keystore(self) -> KeyStore | None:
        """This node's keys and the admitted peers' (None when insecure or before `start`)."""
        return self._local.keystore

    # ------------------------------------------------------------ lifecycle

    @property
    def spec(self) -> NodeSpec:
        """Our advertised spec (valid after `start`)."""
        return self._local.our_spec()

    async def start(self) -> NodeSpec:
        """Bind the ROUTER (port 0 picks a free port) and start serving; return our spec."""
        local = self._local
        if local.spec is not None:
            raise RuntimeError("Links already started")
        loop = local.loop = asyncio.get_running_loop()
        raise_nofile_limit()
        # Two I/O threads: lanes of `default` and `membership` use the first,
        # every other channel's lanes the second (`sockets.make_dealer`), so a
        # bulk message's CURVE encryption (~10 ms for 8 MB, done whole by
        # libzmq) does not hold a call's request behind it (issue 10).
        context = local.context = zmq.Context(io_threads=2)
        try:
            if not self.config.insecure:
                if self.config.key_dir is None:
                    raise ConfigError(
                        "key_dir: not set; CURVE is on by default — create keys with "
                        "'partisan keys new DIR --node NAME' or pass insecure=True"
                    )
                local.keystore = KeyStore(self.config.key_dir, self.name)
                interval = self.config.key_refresh_interval
                self._auth = Authenticator(context, local.keystore, refresh_interval=interval)
                self._auth.start(loop)
                self._keywatch = KeyWatch(
                    local.keystore,
                    self._table,
                    lambda peer, reason: self._detection.teardown(peer, reason),
                    interval=interval,
                )
                self._keywatch.start(loop)
            else:
                log.warning(
                    "node %s runs INSECURE: no encryption, no authentication; any process "
                    "that reaches %s can run code in it",
                    self.name,
                    self.config.host,
                )
            router, port = make_router(context, self.config, local.keystore)
            local.router = router
        except BaseException:
            self._shutdown_sockets()
            raise
        loop.add_reader(router.FD, self._receiver.on_router_readable)
        self._receiver.schedule_router()  # the FD only signals edges: read once to arm it
        local.spec = NodeSpec(
            self.name,
            self.config.advertised_host,
            port,
            public_key=local.keystore.public_key if local.keystore else None,
            role=self.config.role,
            incarnation=self.incarnation,
        )
        self._detection.start()
        log.info("links of %s listening on %s", self.name, local.spec)
        return local.spec

    def leave(self) -> None:
        """Start leaving (a graceful stop's first step): refuse new sessions, keep the live ones.

        Peers that dial us from now on get `JoinRefused("... is leaving")`, and
        `connect` refuses too; existing links stay up so that what the node
        sends on its way out (the exit signals and `Down`s of its stopping
        actors) still reaches them. `close` then flushes and says BYE.
        """
        self._local.leaving = True

    async def close(self, *, flush_timeout: float) -> None:
        """Flush what peers have not yet credited (up to `flush_timeout`), say BYE, close."""
        local = self._local
        if local.closed or local.loop is None:
            local.closed = True
            return
        local.closed = True
        loop = local.loop
        deadline = loop.time() + flush_timeout
        flushed = self._flow.flushed
        # Every reported-up peer counts, also one whose dial-back is still
        # handshaking: what we queued for it goes once its WELCOME arrives.
        while loop.time() < deadline and any(
            p.outstanding for p in self._table.peers.values() if p.up_reported
        ):
            flushed.clear()
            try:
                await asyncio.wait_for(flushed.wait(), deadline - loop.time())
            except TimeoutError:
                break
        self._detection.stop()
        for peer in self._table.values():
            self._detection.say_bye(peer, "left")
        for peer in self._table.values():
            self._detection.teardown(peer, "left", notify=False, linger=100)
        self._shutdown_sockets()

    def _shutdown_sockets(self) -> None:
        local = self._local
        self._detection.stop()
        if self._keywatch is not None:
            self._keywatch.stop()
        if local.router is not None:
            if local.loop is not None:
                local.loop.remove_reader(local.router.FD)
            local.router.close(linger=100)
            local.router = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if local.context is not None:
            local.context.term()
            local.context = None

    # ------------------------------------------------------------ connecting

    async def connect(self, target: NodeSpec | str, *, timeout: float | None = None) -> NodeSpec:
        """Dial `target` and exchange HELLO; return the peer's announced spec.

        Idempotent for a live link. Raises `JoinRefused(reason)` when the peer
        (or its key) refuses us and `CallTimeout` when nothing answered in time.
        """
        self._local.running()
        spec = NodeSpec.parse(target) if isinstance(target, str) else target
        admit = self._local.admit
        if admit is not None:  # fault injection: a partitioned peer is not dialled
            refusal = admit(spec.name, False)
            if refusal is not None:
                raise JoinRefused(refusal)
        timeout = self.config.handshake_timeout if timeout is None else timeout
        return await self._handshake.dial(spec, timeout)

    async def open_all_lanes(self, peer: str, *, timeout: float | None = None) -> None:
        """Open every lane of every channel to `peer` and wait until all are connected."""
        timeout = self.config.handshake_timeout if timeout is None else timeout
        await self._outbound.open_all_lanes(peer, timeout)

    def disconnect(self, peer: str, *, reason: str = "disconnected") -> None:
        """Close the link to `peer` on purpose: flush, say BYE, close; no PeerDown callback.

        `reason` is what the BYE tells the peer: ``"disconnected"`` (a view
        change; the default) or ``"left"`` (a leave: the peer reports NodeDown
        with reason ``"left"``).
        """
        state = self._table.get(peer)
        if state is None or state.closing:
            return
        state.closing = True
        if state.outstanding == 0:
            self._detection.say_bye(state, reason)
            self._detection.teardown(state, "disconnected", notify=False, linger=100)
        else:
            task = self._local.running().create_task(self._drain_then_close(state, reason))
            self._tasks.add(task)  # a strong reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _drain_then_close(self, peer: Peer, reason: str = "disconnected") -> None:
        loop = self._local.running()
        deadline = loop.time() + self.config.shutdown_timeout
        while peer.outstanding and self._table.current(peer):
            if loop.time() > deadline:
                break
            peer.room.clear()
            try:
                await asyncio.wait_for(peer.room.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        if self._table.current(peer):
            self._detection.say_bye(peer, reason)
            self._detection.teardown(peer, "disconnected", notify=False, linger=100)

    @property
    def admit(self) -> Callable[[str, bool], str | None] | None:
        """Fault injection's hook: a reason to refuse a peer's HELLO or our dial, or None."""
        return self._local.admit

    @admit.setter
    def admit(self, hook: Callable[[str, bool], str | None] | None) -> None:
        self._local.admit = hook

    def cut(self, peer: str, reason: str) -> None:
        """End the link to `peer` now, unflushed (fault injection's partition).

        The peer is told by a BYE carrying `reason` and reports
        ``NodeDown(reason)``; so does this node's handler.
        """
        state = self._table.get(peer)
        if state is None:
            return
        self._detection.say_bye(state, reason)
        self._detection.teardown(state, reason, tell=False, linger=0)

    def is_connected(self, peer: str) -> bool:
        """True when a session with `peer` is up (PeerUp was reported)."""
        state = self._table.get(peer)
        return state is not None and state.up_reported and not state.closing

    def carries_data(self, peer: str) -> bool:
        """`Peer.carries_data` of `peer` (False without a session): where a close is said."""
        state = self._table.get(peer)
        return state is not None and state.carries_data()

    def peers(self) -> list[NodeSpec]:
        """Peers with a live session (hidden ones too), sorted by name."""
        return sorted(
            p.spec
            for p in self._table.peers.values()
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
    ) -> int:
        """Queue `payload` for `dest` on `peer` over `channel`; never blocks; its wire size.

        Returns the message's size in bytes on the wire (header and payload
        frames), the amount it takes from the channel's byte budget.

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

        (Each instance binds `Outbound.send` over this method, for speed.)
        """
        return self._outbound.send(
            peer,
            channel,
            dest,
            payload,
            partition_key=partition_key,
            control=control,
            waiting=waiting,
        )

    async def send_wait(
        self,
        peer: str,
        channel: str,
        dest: str,
        payload: object,
        *,
        partition_key: object = None,
        timeout: float | None = None,
    ) -> None:
        """Like `send`, but wait (up to `timeout`, None = forever) for room in the budget.

        Waiters on one (peer, channel) budget are served in the order they
        started waiting. Raises `Overloaded` if there is still no room at the
        timeout, `NotConnected` if the link goes down meanwhile.
        """
        await self._flow.send_wait(
            peer, channel, dest, payload, partition_key=partition_key, timeout=timeout
        )

    # ------------------------------------------------------------ housekeeping

    def pause_receiving(self) -> None:
        """Stop reading the ROUTER: peers' budgets fill and their sends hit `Overloaded`.

        For tests and for a node that must shed load; nothing is lost, the
        kernel and ZeroMQ hold what peers already sent (bounded by their budgets).
        """
        self._receiver.pause()

    def resume_receiving(self) -> None:
        """Undo `pause_receiving`."""
        self._receiver.resume()

    # ------------------------------------------------------------ statistics

    def statistics(self) -> LinkStatistics:
        """An immutable snapshot of every peer's counters."""
        table = self._table
        records = tuple(
            snapshot_peer(name, counters, table.get(name))
            for name, counters in sorted(table.counters.items())
        )
        return LinkStatistics(
            node=self.name,
            peers=records,
            rejected=freeze_rejected(self._rejections.by_reason),
            refused=self._handshake.refused,
            handshakes=self._handshake.handshakes,
            decoded=self._dispatch.decoded,
            unread_bytes=self.gauge.held,
            unread_peak=self.gauge.peak,
            inbound_buffer_bytes=self.gauge.limit,
        )

    def auth_statistics(self) -> AuthStatistics | None:
        """The ZAP handler's decisions (None when insecure or before `start`)."""
        return self._auth.statistics() if self._auth is not None else None

    @property
    def revoked(self) -> int:
        """Peers whose links were closed because their public key was removed."""
        return self._keywatch.revoked if self._keywatch is not None else 0

    def traffic(self, peer: str) -> int:
        """Messages sent to and received from `peer` so far, membership excluded.

        The membership driver's sweep compares it between sweeps to find links
        dialled for actor traffic that have gone idle.
        """
        counters = self._table.counters.get(peer)
        if counters is None:
            return 0
        return sum(
            slot[0] + slot[2] for name, slot in counters.channels.items() if name != "membership"
        )

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

Sessions, sequence numbers and the handshake are in `session`; flow control
(a per-peer byte budget refilled by the receiver's CREDIT frames) is in
`backpressure`; inbound frames are handled by `receive.Receiver`, which this
class extends.

Failure detection: ZMTP heartbeats on every socket (libzmq's I/O thread
answers them, so a busy loop causes no false alarm) and a monitor on every
DEALER. A DISCONNECTED or failed handshake on any lane of an established
session ends the whole link: every DEALER to that peer is closed with linger 0
(libzmq would otherwise reconnect silently and lose or delay frames), queued
messages are counted as dropped, and `on_peer_down(peer, reason)` fires. The
reason is ``heartbeat_timeout`` when nothing was heard from the peer for
longer than the heartbeat allows (we send a PING on idle links so that
silence means something), else ``connection_closed``. A hidden peer has no
DEALER of ours to monitor, so we PING it through the ROUTER every heartbeat
interval: ROUTER_MANDATORY answers EHOSTUNREACH once libzmq dropped its
connection (heartbeats included).

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
import time
from collections import Counter
from typing import Any, Protocol

import zmq

from partisan.config import ChannelSpec, Config
from partisan.errors import CallTimeout, JoinRefused, NotConnected, Overloaded
from partisan.identity import NodeSpec
from partisan.transport.backpressure import Pending
from partisan.transport.codec import encode_payload
from partisan.transport.keys import KeyStore
from partisan.transport.lanes import FLAG_INLINE, OutLane, lane_for
from partisan.transport.peer import OutState, Peer
from partisan.transport.receive import Receiver
from partisan.transport.session import Greeting, new_session_id, routing_id
from partisan.transport.sockets import close_dealer, make_dealer, make_router, raise_nofile_limit
from partisan.transport.statistics import (
    ChannelStatistics,
    LinkStatistics,
    PeerCounters,
    PeerStatistics,
    freeze_rejected,
)
from partisan.transport.wire import WIRE_VERSION, Header, Kind, encode_header

__all__ = ["LinkHandler", "Links"]

log = logging.getLogger(__name__)

_TEMPLATE_CACHE = 4096
_MORE = int(zmq.SNDMORE)
_FIRST = int(zmq.NOBLOCK) | _MORE
_send = zmq.backend.Socket.send  # the Cython method, without pyzmq's Python wrapper
_ZERO_COPY = 64 * 1024  # parts at least this big are sent without copying
#: magic, version, kind, flags, incarnation, seq: the header bytes before template[2].
_HEADER_PREFIX = 22  # (channel, dest) header templates kept before the cache is reset


class LinkHandler(Protocol):
    """What the node implements; called on the loop, must not block."""

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None: ...

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None: ...

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None: ...


class Links(Receiver):
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
        self._rid_cache: dict[bytes, tuple[Peer, Any]] = {}
        self._counters: dict[str, PeerCounters] = {}
        self._rejected: Counter[str] = Counter()
        self._refused = 0
        self._handshakes = 0
        self._decoded = 0
        self._credit_due: set[Peer] = set()
        self._names: dict[bytes, tuple[str, str, str]] = {}
        self._backoff: dict[tuple[str, str, int], tuple[float, float, str]] = {}
        self._templates: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}
        self._name_b = self.name.encode()
        self._context: zmq.Context[Any] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._auth: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._router_scheduled = False
        self._paused = False
        self._dirty: dict[OutLane, Peer] = {}
        self._dirty_scheduled = False
        self._closed = False
        self._spec: NodeSpec | None = None
        self._flushed = asyncio.Event()

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
                    from partisan.errors import ConfigError

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

    async def close(self, *, flush_timeout: float) -> None:
        """Flush what peers have not yet credited (up to `flush_timeout`), say BYE, close."""
        if self._closed or self._loop is None:
            self._closed = True
            return
        self._closed = True
        deadline = self._loop.time() + flush_timeout
        while self._loop.time() < deadline and any(
            p.budget.outstanding for p in self._peers.values() if p.out_state is OutState.UP
        ):
            self._flushed.clear()
            try:
                await asyncio.wait_for(self._flushed.wait(), deadline - self._loop.time())
            except TimeoutError:
                break
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

    def disconnect(self, peer: str) -> None:
        """Close the link to `peer` on purpose: flush, say BYE, close; no PeerDown callback."""
        state = self._peers.get(peer)
        if state is None or state.closing:
            return
        state.closing = True
        if state.budget.outstanding == 0:
            self._send_bye(state, "disconnected")
            self._teardown(state, "disconnected", notify=False, linger=100)
        else:
            self._running().create_task(self._drain_then_close(state))

    async def _drain_then_close(self, peer: Peer) -> None:
        loop = self._running()
        deadline = loop.time() + self.config.shutdown_timeout
        while peer.budget.outstanding and self._peers.get(peer.name) is peer:
            if loop.time() > deadline:
                break
            peer.room.clear()
            try:
                await asyncio.wait_for(peer.room.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        if self._peers.get(peer.name) is peer:
            self._send_bye(peer, "disconnected")
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
    ) -> None:
        """Queue `payload` for `dest` on `peer` over `channel`; never blocks.

        Raises `NotConnected` without a session, `Overloaded` when the peer's
        byte budget is used up, `ValueError` for an unknown channel or a
        message over `max_frame_bytes`, `EncodeError` for an unpicklable payload.
        """
        state = self._peers.get(peer)
        if state is None or state.closing or self._closed:
            raise NotConnected(f"{self.name} has no link to {peer}")
        lane = self._pick_lane(state, channel, partition_key)
        flags, frames = encode_payload(payload)
        template = self._template(channel, dest)
        size = _HEADER_PREFIX + len(template[2])
        limit = self.config.max_frame_bytes
        for frame in frames:
            n = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
            if n > limit:
                raise ValueError(f"payload frame of {n} bytes exceeds max_frame_bytes ({limit})")
            size += n
        budget = state.budget
        queue = lane.queue
        outstanding = budget.queued + budget.sent - budget.acked
        if outstanding + size > budget.limit and outstanding > 0:  # ByteBudget.admits, inlined
            freed = queue.replaces(dest) if queue.monotonic else 0
            if not budget.admits(size, freed):
                raise Overloaded(
                    f"send buffer to {peer} is full ({outstanding} of {budget.limit} bytes "
                    "outstanding); retry, or use send_wait"
                )
        if (
            queue.bytes == 0  # nothing queued ahead of it (every message has bytes)
            and state.out_state is OutState.UP
            and (lane.up or lane.routed)
            and self._hand_off(state, lane, channel, template, flags, frames, size)
        ):
            return
        budget.queued += size - queue.push(Pending(channel, dest, flags, frames, size))
        if lane.routed and len(queue) == 1:
            # A ROUTER lane has no FD edge of its own to wake us: retry soon.
            self._running().call_later(0.001, self._flush, state, lane)

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

        Raises `Overloaded` if there is still no room at the timeout.
        """
        loop = self._running()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            try:
                self.send(peer, channel, dest, payload, partition_key=partition_key)
                return
            except Overloaded:
                state = self._peers[peer]
                state.room.clear()
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.room.wait(), remaining)

    def _pick_lane(self, peer: Peer, channel: str, key: object) -> OutLane:
        if peer.router_lane is not None:
            if channel not in self.channels:
                raise ValueError(self._unknown_channel(channel))
            return peer.router_lane
        spec = self.channels.get(channel)
        if spec is None:
            raise ValueError(self._unknown_channel(channel))
        index = lane_for(key, spec.parallelism)
        lane = peer.lanes.get((channel, index))
        if lane is None:
            lane = self._open_lane(peer, channel, index)
        if channel == "default" or not self.config.channel_fallback:
            return lane
        if lane.up and channel not in peer.fallback:
            return lane
        if lane.up and peer.budget.outstanding == 0:
            # Everything sent on the fallback lane was delivered: switching
            # now cannot reorder this channel.
            peer.fallback.discard(channel)
            return lane
        peer.fallback.add(channel)
        default = self.channels["default"]
        index = lane_for(key, default.parallelism)
        fallback = peer.lanes.get(("default", index))
        return fallback if fallback is not None else self._open_lane(peer, "default", index)

    def _unknown_channel(self, channel: str) -> str:
        return f"unknown channel {channel!r}; configured: {', '.join(sorted(self.channels))}"

    def _sendable(self, peer: Peer, lane: OutLane) -> bool:
        # Inlined in `send`; keep the two in step.
        return peer.out_state is OutState.UP and (lane.up or lane.routed)

    def _template(self, channel: str, dest: str) -> tuple[bytes, bytes, bytes]:
        """Header parts around flags and seq for (channel, dest): encoded once, patched per message."""
        key = (channel, dest)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _TEMPLATE_CACHE:
                self._templates.clear()
            raw = encode_header(Header(Kind.DATA, self.name, self.incarnation, channel, dest, 0, 0))
            # magic+version+kind | flags | incarnation | seq | strings
            template = self._templates[key] = (raw[:4], raw[6:14], raw[22:])
        return template

    def _hand_off(
        self,
        peer: Peer,
        lane: OutLane,
        channel: str,
        template: tuple[bytes, bytes, bytes],
        flags: int,
        frames: list[Any],
        size: int,
    ) -> bool:
        """Give one message to ZeroMQ; False if it would block (the caller queues it)."""
        head, incarnation, strings = template
        seq = lane.seq + 1
        send = _send
        sock = lane.sock
        try:
            # The first part decides (EAGAIN / EHOSTUNREACH); the rest of a
            # multipart message is then always accepted. One send per part is
            # ~4x cheaper than send_multipart; the base class's send skips
            # pyzmq's Python wrapper.
            if lane.prefix:
                send(sock, lane.prefix[0], _FIRST)
                first = _MORE
            else:
                first = _FIRST
            if len(frames) == 1 and size < _ZERO_COPY:
                flags |= FLAG_INLINE
                blob = b"".join(
                    (
                        head,
                        flags.to_bytes(2, "big"),
                        incarnation,
                        seq.to_bytes(8, "big"),
                        strings,
                        frames[0],
                    )
                )
                send(sock, blob, first & ~_MORE)
            else:
                header = b"".join(
                    (head, flags.to_bytes(2, "big"), incarnation, seq.to_bytes(8, "big"), strings)
                )
                send(sock, header, first)
                last = len(frames) - 1
                for i, frame in enumerate(frames):
                    more = 0 if i == last else _MORE
                    send(sock, frame, more, copy=len(frame) < _ZERO_COPY)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._defer_teardown(peer, "connection_closed")
                return True  # the link is going down; the loss is reported with it
            raise
        lane.seq = seq
        if not lane.routed:  # _mark_dirty, inlined
            self._dirty[lane] = peer
            if not self._dirty_scheduled:
                self._dirty_scheduled = True
                self._running().call_soon(self._check_dirty)
        else:
            self._recheck_router()
        peer.budget.sent += size
        peer.sent_recently = True
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[0] += 1
        counts[1] += size
        return True

    def _flush(self, peer: Peer, lane: OutLane) -> None:
        """Hand queued messages of `lane` to ZeroMQ until it would block."""
        if self._peers.get(peer.name) is not peer or not self._sendable(peer, lane):
            return  # (a retry scheduled before the link went down)
        queue = lane.queue
        moved = 0
        while queue:
            msg = queue.peek()
            template = self._template(msg.channel, msg.dest)
            if not self._hand_off(
                peer, lane, msg.channel, template, msg.flags, msg.frames, msg.size
            ):
                if lane.routed and self._loop is not None:
                    self._loop.call_later(0.001, self._flush, peer, lane)
                break
            queue.pop()
            peer.budget.queued -= msg.size
            moved += 1
        if moved:
            self._mark_dirty(peer, lane)

    # ------------------------------------------------------------ sessions

    def _new_peer(self, name: str, host: str, port: int) -> Peer:
        counters = self._counters.get(name)
        if counters is None:
            counters = self._counters[name] = PeerCounters()
        peer = Peer(
            name,
            host,
            port,
            budget=self.config.send_buffer_bytes,
            counters=counters,
            loop=self._running(),
        )
        self._peers[name] = peer
        return peer

    def _greeting(self, session: int, *, target: str | None, reply_to: int | None) -> Greeting:
        spec = self.spec
        return Greeting(
            name=self.name,
            incarnation=self.incarnation,
            manager=self.config.manager,
            wire_version=WIRE_VERSION,
            hidden=self.hidden,
            host=spec.host,
            port=spec.port,
            role=self.config.role,
            public_key=spec.public_key,
            session=session,
            target=target,
            reply_to=reply_to,
        )

    def _open_out(self, peer: Peer, *, reply_to: int | None) -> None:
        """Start our outbound half-session: open membership lane 0; HELLO goes when it connects."""
        if self.keystore is not None:
            peer.server_key = self.keystore.key_for(peer.name)
            if peer.server_key is None:
                error = JoinRefused(
                    f"no public key for {peer.name} in {self.keystore.directory}/public_keys"
                )
                self._teardown(peer, "unreachable", notify=False, error=error)
                return
        peer.out_session = new_session_id()
        peer.out_state = OutState.HANDSHAKING
        peer.reply_to = reply_to
        peer.deadline = self._running().time() + self.config.handshake_timeout
        header = encode_header(
            Header(Kind.HELLO, self.name, self.incarnation, "membership", "", 0, 0)
        )
        hello = self._greeting(peer.out_session, target=peer.name, reply_to=reply_to)
        peer.hello = [header, hello.to_bytes()]
        self._open_lane(peer, "membership", 0)

    def _open_lane(self, peer: Peer, channel: str, index: int) -> OutLane:
        assert peer.out_session is not None and self._context is not None
        slot = peer.next_slot
        peer.next_slot += 1
        rid = routing_id(peer.out_session, slot)
        sock, monitor = make_dealer(
            self._context,
            self.config,
            self.keystore,
            routing_id=rid,
            server_key=peer.server_key,
            endpoint=peer.endpoint,
        )
        spec = self.channels[channel]
        lane = OutLane(
            channel=channel,
            index=index,
            slot=slot,
            rid=rid,
            sock=sock,
            monitor=monitor,
            monotonic=spec.monotonic,
        )
        peer.lanes[(channel, index)] = lane
        loop = self._running()
        loop.add_reader(sock.FD, self._on_dealer_readable, peer, lane)
        loop.add_reader(monitor.FD, self._on_monitor, peer, lane)
        # The FDs only signal edges: read once now so the first edge is armed.
        loop.call_soon(self._on_monitor, peer, lane)
        loop.call_soon(self._on_dealer_readable, peer, lane)
        return lane

    def _close_lane(self, lane: OutLane, linger: int = 0) -> None:
        if self._loop is not None and not lane.routed and not lane.sock.closed:
            self._loop.remove_reader(lane.sock.FD)
            if lane.monitor is not None:
                self._loop.remove_reader(lane.monitor.FD)
        if not lane.routed:
            if linger:
                lane.sock.setsockopt(zmq.LINGER, linger)
                if lane.monitor is not None:
                    lane.sock.disable_monitor()
                    lane.monitor.close(linger=0)
                lane.sock.close(linger=linger)
            else:
                close_dealer(lane.sock, lane.monitor)

    def _open_default_lanes(self, peer: Peer) -> None:
        for name in ("default", "membership"):
            for index in range(self.channels[name].parallelism):
                if (name, index) not in peer.lanes:
                    self._open_lane(peer, name, index)

    def _send_bye(self, peer: Peer, reason: str) -> None:
        self._say_bye(peer, reason)

    def _send_control(self, peer: Peer, kind: Kind, payload: bytes = b"", seq: int = 0) -> bool:
        """Send a control frame on the control lane, bypassing the data queues."""
        lane = peer.control_lane()
        if lane is None:
            return False
        header = encode_header(Header(kind, self.name, self.incarnation, "", "", seq, 0))
        frames = [*lane.prefix, header] + ([payload] if payload else [])
        try:
            lane.sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH and lane.routed:
                self._defer_teardown(peer, self._down_reason(peer))
            return False
        peer.sent_recently = True
        self._mark_dirty(peer, lane)
        return True

    # ------------------------------------------------------------ housekeeping

    def _housekeeping(self) -> None:
        """Every heartbeat interval: handshake deadlines, PINGs, credits, expired backoffs."""
        loop = self._running()
        now = loop.time()
        interval = self.config.heartbeat_interval
        for peer in list(self._peers.values()):
            if not peer.up_reported and peer.deadline and now > peer.deadline:
                error = CallTimeout(f"handshake with {peer.name}@{peer.address} timed out")
                self._teardown(peer, "unreachable", notify=False, error=error)
            elif peer.up_reported and (peer.router_lane is not None or not peer.sent_recently):
                self._send_control(peer, Kind.PING)
            peer.sent_recently = False
            if peer.router_lane is not None and peer.router_lane.queue:
                self._flush(peer, peer.router_lane)
            if peer.heard_recently:
                peer.heard_recently = False
                peer.last_heard = now
        self._send_credits()
        for address, (until, _, _) in list(self._backoff.items()):
            if until < now - 600:
                del self._backoff[address]
        if not self._closed:
            self._timer = loop.call_later(interval, self._housekeeping)

    def _down_reason(self, peer: Peer) -> str:
        """``heartbeat_timeout`` if the peer has been silent past the heartbeat allowance."""
        if peer.heard_recently:
            return "connection_closed"  # heard from within this heartbeat interval
        silent = self._running().time() - peer.last_heard
        threshold = (self.config.heartbeat_interval + self.config.heartbeat_timeout) / 2
        return "heartbeat_timeout" if silent >= threshold else "connection_closed"

    def _backoff_address(self, peer: Peer, reason: str) -> None:
        """Stop re-dialling (name, address) after an authentication failure, for a growing while.

        libzmq would retry a CURVE handshake with the wrong server key every
        100 ms forever (reliability.md §1); we close the DEALER instead and
        refuse further dials of that combination for 1, 2, 4 ... 60 s.
        """
        key = (peer.name, peer.host, peer.port)
        previous = self._backoff.get(key)
        interval = min(60.0, previous[1] * 2) if previous else 1.0
        self._backoff[key] = (self._running().time() + interval, interval, reason)

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
        records = []
        for name, counters in sorted(self._counters.items()):
            peer = self._peers.get(name)
            live = peer is not None and peer.up_reported and not peer.closing
            queued = peer.queued() if peer is not None else (0, 0)
            lanes_open: Counter[str] = Counter()
            if peer is not None:
                for channel, _ in peer.lanes:
                    lanes_open[channel] += 1
            channels = tuple(
                ChannelStatistics(
                    channel, values[0], values[1], values[2], values[3], lanes_open[channel]
                )
                for channel, values in sorted(counters.channels.items())
            )
            records.append(
                PeerStatistics(
                    name=name,
                    connected=live,
                    incarnation=peer.spec.incarnation if peer and peer.spec else None,
                    hidden=peer.hidden if peer else False,
                    sessions=counters.sessions,
                    reconnects=max(0, counters.sessions - 1),
                    queue_messages=queued[0],
                    queue_bytes=queued[1],
                    outstanding_bytes=peer.budget.outstanding if peer else 0,
                    rejects=counters.rejects,
                    dropped=counters.dropped,
                    channels=channels,
                )
            )
        return LinkStatistics(
            node=self.name,
            peers=tuple(records),
            rejected=freeze_rejected(self._rejected),
            refused=self._refused,
            handshakes=self._handshakes,
            decoded=self._decoded,
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

    def _now(self) -> float:
        return time.monotonic()

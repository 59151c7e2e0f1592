"""Outgoing lanes: sending, choosing a lane, opening and closing DEALERs, handing off to ZeroMQ.

`Outbound.send` *is* `Links.send` (the facade binds it, so a send costs no
forwarding call). The hot path is `send` and `hand_off`: the header is a cached
template patched with flags and the lane's next sequence number; a payload of
one pickle frame under 64 KiB rides in the same ZeroMQ part as the header
(`FLAG_INLINE`); larger parts go zero-copy. We call the Cython
`Socket.send` part by part: pyzmq's `send_multipart` and its Python wrapper
cost several times the send itself. With NOBLOCK the first part decides
(EAGAIN, EHOSTUNREACH); the rest of a multipart message is then always taken.

Coalescing (`batch.py`): a send that follows the lane's previous hand-off
within `COALESCE_WINDOW` is queued instead, a flush is scheduled for the end
of the loop turn, and `flush` sends runs of queued messages as BATCH frames.
A message alone in its turn still goes at once, as above.

This part owns the header templates; each peer's lanes, queues and budgets
live on its `Peer`. After a send it owes the receive path a re-check of the
socket's EVENTS (a send can consume the edge of a pending receive): `hand_off`
does `Receiver.mark_dirty`'s bookkeeping inline, on the receiver's `dirty`,
`synced` and `dirty_scheduled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from typing import TYPE_CHECKING, Any, cast

import zmq

from partisan.errors import CallTimeout, NotConnected, Overloaded
from partisan.transport.backpressure import ByteBudget, Pending
from partisan.transport.batch import COALESCE_WINDOW, pack_run
from partisan.transport.codec import encode_payload
from partisan.transport.lanes import FLAG_INLINE, OutLane, lane_for
from partisan.transport.peer import OutState, Peer, PeerTable
from partisan.transport.session import routing_id
from partisan.transport.sockets import close_dealer, make_dealer
from partisan.transport.wire import Header, Kind, encode_header

if TYPE_CHECKING:
    from partisan.transport.detection import Detection
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.receive import Receiver

__all__ = ["Outbound"]

log = logging.getLogger(__name__)

_TEMPLATE_CACHE = 4096  # (channel, dest) header templates kept before the cache is reset
_MORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_FIRST = _NOBLOCK | _MORE
_ZERO_COPY = 64 * 1024  # parts at least this big are sent without copying
_send = zmq.backend.Socket.send  # the Cython method, without pyzmq's Python wrapper
_get = zmq.backend.Socket.get
_FLAGS_INC_SEQ = struct.Struct("!H8sQ").pack  # wire.py's layout at offset 4
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: magic, version, kind, flags, incarnation, seq: the header bytes before template[2].
_HEADER_PREFIX = 22
_UP = OutState.UP
_DEFAULT_LANE = ("default", 0)
_clock = time.perf_counter


class Outbound:
    """Lanes towards peers and the hand-off of messages to them."""

    def __init__(self, local: Endpoint, table: PeerTable, receiver: Receiver) -> None:
        self._local = local
        self._peers = table.peers
        self._receiver = receiver
        self._channels = local.channels
        self._max_frame = local.config.max_frame_bytes
        self._fallback = local.config.channel_fallback
        self._default_lanes = self._channels["default"].parallelism
        self._templates: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}

    def attach(self, *, detection: Detection) -> None:
        """Meet failure detection (built after this one): it watches the lanes we open."""
        self._detection = detection

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
        """`Links.send` (documented there): queue `payload` for `dest` on `peer`; its size."""
        state = self._peers.get(peer)
        if state is None or state.closing or self._local.closed:
            raise NotConnected(f"{self._local.name} has no link to {peer}")
        if channel != "default" or state.router_lane is not None or self._default_lanes != 1:
            lane = self.pick_lane(state, channel, partition_key)
        else:  # `pick_lane`, inlined for the common case: the one lane of `default`
            lane = state.lanes.get(_DEFAULT_LANE) or self.pick_lane(state, channel, partition_key)
        flags, frames = encode_payload(payload)
        template = self._templates.get((channel, dest)) or self._template(channel, dest)
        limit = self._max_frame
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
        ):
            now = _clock()
            if now - lane.sent_at >= COALESCE_WINDOW or queue.monotonic:
                lane.sent_at = now
                if self.hand_off(state, lane, budget, channel, template, flags, frames, size):
                    return size
            elif not lane.flush_due:
                # Right behind another message: wait for the end of this loop
                # turn and leave with whatever else this turn sends (batch.py).
                lane.flush_due = True
                self._local.running().call_soon(self._flush_due, state, lane)
        budget.queued += size - queue.push(Pending(channel, dest, flags, frames, size))
        if lane.prefix and len(queue) == 1 and not lane.flush_due:  # lane.routed, inlined
            # A ROUTER lane has no FD edge of its own to wake us: retry soon.
            self._local.running().call_later(0.001, self.flush, state, lane)
        return size

    def pick_lane(self, peer: Peer, channel: str, key: object) -> OutLane:
        """The lane a message of `channel` with `key` takes now (opening it if need be)."""
        if peer.router_lane is not None:
            if channel not in self._channels:
                raise ValueError(self._unknown_channel(channel))
            return peer.router_lane
        spec = self._channels.get(channel)
        if spec is None:
            raise ValueError(self._unknown_channel(channel))
        index = lane_for(key, spec.parallelism)
        lane = peer.lanes.get((channel, index))
        if lane is None:
            lane = self.open_lane(peer, channel, index)
        if channel == "default" or channel == "membership" or not self._fallback:
            # `membership` lane 0 opens with the session: its messages wait for
            # it. (Falling back made the side that dials back open a `default`
            # lane, a whole CURVE handshake, for a membership message sent
            # before its own DEALER had connected: 15% more connections in a
            # 32-node full mesh.)
            return lane
        if lane.up and channel not in peer.fallback:
            return lane
        budget = peer.budgets.get(channel)
        idle = budget is None or budget.outstanding == 0
        if lane.up and idle:
            # Everything of this channel sent on the fallback lane was
            # delivered: switching now cannot reorder it.
            peer.fallback.discard(channel)
            return lane
        if channel not in peer.fallback and not idle:
            # Some of this channel is in flight on its own lanes (another key's
            # lane is up): moving this key to `default` now could overtake its
            # earlier messages. Fall back only from an idle channel; meanwhile
            # this one waits in its own lane's queue until the lane is up.
            return lane
        peer.fallback.add(channel)
        default = self._channels["default"]
        index = lane_for(key, default.parallelism)
        fallback = peer.lanes.get(("default", index))
        return fallback if fallback is not None else self.open_lane(peer, "default", index)

    def _unknown_channel(self, channel: str) -> str:
        return f"unknown channel {channel!r}; configured: {', '.join(sorted(self._channels))}"

    @staticmethod
    def _sendable(peer: Peer, lane: OutLane) -> bool:
        # Inlined in `send`; keep the two in step.
        return peer.out_state is OutState.UP and (lane.up or lane.routed)

    def _template(self, channel: str, dest: str) -> tuple[bytes, bytes, bytes]:
        """Header parts around flags and seq for (channel, dest): encoded once, patched per message."""
        key = (channel, dest)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _TEMPLATE_CACHE:
                self._templates.clear()
            local = self._local
            raw = encode_header(
                Header(Kind.DATA, local.name, local.incarnation, channel, dest, 0, 0)
            )
            # magic+version+kind | flags | incarnation | seq | strings
            template = self._templates[key] = (raw[:4], raw[6:14], raw[22:])
        return template

    def hand_off(
        self,
        peer: Peer,
        lane: OutLane,
        budget: ByteBudget,
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
        prefix = lane.prefix
        try:
            # The first part decides (EAGAIN / EHOSTUNREACH); the rest of a
            # multipart message is then always accepted. One send per part is
            # ~4x cheaper than send_multipart; the base class's send skips
            # pyzmq's Python wrapper.
            if prefix:
                send(sock, prefix[0], _FIRST)
                first = _MORE
            else:
                first = _FIRST
            if len(frames) == 1 and size < _ZERO_COPY:
                middle = _FLAGS_INC_SEQ(flags | FLAG_INLINE, incarnation, seq)
                send(sock, b"".join((head, middle, strings, frames[0])), first & ~_MORE)
            else:
                header = b"".join((head, _FLAGS_INC_SEQ(flags, incarnation, seq), strings))
                send(sock, header, first)
                last = len(frames) - 1
                for i, frame in enumerate(frames):
                    more = 0 if i == last else _MORE
                    send(sock, frame, more, copy=len(frame) < _ZERO_COPY)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._detection.defer_teardown(peer, "connection_closed")
                return True  # the link is going down; the loss is reported with it
            raise
        lane.seq = seq
        ready = self._receiver
        if prefix:  # lane.routed
            ready.recheck_router()
        elif ready.dirty_scheduled or lane in ready.synced:  # Receiver.mark_dirty, inlined
            ready.dirty[lane] = peer
            if not ready.dirty_scheduled:
                ready.dirty_scheduled = True
                self._local.running().call_soon(ready.check_dirty)
        else:
            # The first send on a lane since its EVENTS were last read is
            # checked at once (~1.5 us) instead of in one more loop iteration
            # (a call's request would otherwise cost the caller an extra
            # epoll round); later sends before that check are batched.
            ready.synced.add(lane)
            if cast(int, _get(sock, _EVENTS)) & _POLLIN:
                ready.dirty[lane] = peer
                ready.dirty_scheduled = True
                self._local.running().call_soon(ready.check_dirty)
        budget.sent += size
        peer.sent_recently = True
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[0] += 1
        counts[1] += size
        return True

    def _flush_due(self, peer: Peer, lane: OutLane) -> None:
        """The end of a loop turn in which `send` coalesced messages on `lane`."""
        lane.flush_due = False
        self.flush(peer, lane)

    def flush(self, peer: Peer, lane: OutLane) -> None:
        """Hand queued messages of `lane` to ZeroMQ until it would block.

        Runs of small one-frame messages of one channel leave as BATCH frames
        (`batch.py`); anything else, and a run of one, as it would alone.
        """
        if self._peers.get(peer.name) is not peer or not self._sendable(peer, lane):
            return  # (a retry scheduled before the link went down)
        queue = lane.queue
        moved = 0
        while queue:
            if len(queue) > 1 and not queue.monotonic:
                batched = self._hand_off_batch(peer, lane)
                if batched is None:
                    if lane.routed and self._local.loop is not None:
                        self._local.loop.call_later(0.001, self.flush, peer, lane)
                    break
                if batched:
                    moved += batched
                    continue
            msg = queue.peek()
            template = self._template(msg.channel, msg.dest)
            budget = peer.budget(msg.channel)
            if not self.hand_off(
                peer, lane, budget, msg.channel, template, msg.flags, msg.frames, msg.size
            ):
                if lane.routed and self._local.loop is not None:
                    self._local.loop.call_later(0.001, self.flush, peer, lane)
                break
            queue.pop()
            budget.queued -= msg.size
            moved += 1
        if moved:
            lane.sent_at = _clock()
            self._receiver.mark_dirty(peer, lane)

    def _hand_off_batch(self, peer: Peer, lane: OutLane) -> int | None:
        """Give the run of batchable messages at the head of `lane`'s queue to ZeroMQ as one.

        Returns how many left (0: fewer than two could be batched, the caller
        sends the head alone), None if ZeroMQ would block (nothing left).
        """
        run = pack_run(lane.queue, lane.seq, self._template)
        if run is None:
            return 0
        frame, count, size, channel = run
        try:
            if lane.prefix:
                _send(lane.sock, lane.prefix[0], _FIRST)
                _send(lane.sock, frame, 0)
            else:
                _send(lane.sock, frame, _NOBLOCK)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._detection.defer_teardown(peer, "connection_closed")  # as in `hand_off`
        lane.seq += count
        lane.queue.pop_many(count, size)
        budget = peer.budget(channel)
        budget.queued -= size
        budget.sent += size
        peer.sent_recently = True
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[0] += count
        counts[1] += size
        return count

    # ------------------------------------------------------------ lanes

    def open_lane(self, peer: Peer, channel: str, index: int) -> OutLane:
        """Dial a DEALER for (channel, index) of our session with `peer`; watch and read it."""
        local = self._local
        assert peer.out_session is not None and local.context is not None
        slot = peer.next_slot
        peer.next_slot += 1
        rid = routing_id(peer.out_session, slot)
        sock, monitor = make_dealer(
            local.context,
            local.config,
            local.keystore,
            routing_id=rid,
            server_key=peer.server_key,
            endpoint=peer.endpoint,
            heartbeat=(channel, index) == ("membership", 0),  # the control lane
            bulk=channel not in ("default", "membership"),
        )
        spec = self._channels[channel]
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
        loop = local.running()
        loop.add_reader(sock.FD, self._receiver.on_dealer_readable, peer, lane)
        loop.add_reader(monitor.FD, self._detection.on_monitor, peer, lane)
        # The FDs only signal edges: read once now so the first edge is armed.
        loop.call_soon(self._detection.on_monitor, peer, lane)
        loop.call_soon(self._receiver.on_dealer_readable, peer, lane)
        return lane

    def close_lane(self, lane: OutLane, linger: int = 0) -> None:
        """Stop reading and watching `lane` and close its DEALER (linger in ms)."""
        self._receiver.forget_lane(lane)
        loop = self._local.loop
        if loop is not None and not lane.routed and not lane.sock.closed:
            loop.remove_reader(lane.sock.FD)
            if lane.monitor is not None:
                loop.remove_reader(lane.monitor.FD)
        if not lane.routed:
            if linger:
                lane.sock.setsockopt(zmq.LINGER, linger)
                if lane.monitor is not None:
                    lane.sock.disable_monitor()
                    lane.monitor.close(linger=0)
                lane.sock.close(linger=linger)
            else:
                close_dealer(lane.sock, lane.monitor)

    async def open_all_lanes(self, peer: str, timeout: float) -> None:
        """`Links.open_all_lanes`: open every lane of every channel to `peer`, wait for all."""
        loop = self._local.running()
        state = self._peers.get(peer)
        if state is None or state.closing:
            raise NotConnected(f"{self._local.name} has no link to {peer}")
        if state.router_lane is not None:
            return  # a hidden peer has one ROUTER lane, always up
        for spec in self._channels.values():
            for index in range(spec.parallelism):
                if (spec.name, index) not in state.lanes:
                    self.open_lane(state, spec.name, index)
        deadline = loop.time() + timeout
        while not all(lane.up for lane in state.lanes.values()):
            if self._peers.get(peer) is not state:
                raise NotConnected(f"link to {peer} went down while opening lanes")
            if loop.time() > deadline:
                raise CallTimeout(f"lanes to {peer} did not all connect in time")
            state.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.room.wait(), max(0.0, deadline - loop.time()))

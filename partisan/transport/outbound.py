"""Outgoing lanes: choosing one, opening and closing DEALERs, handing messages to ZeroMQ.

(A `Links` mixin.) The hot path is `_hand_off`: the header is a cached
template patched with flags and the lane's next sequence number; a payload of
one pickle frame under 64 KiB rides in the same ZeroMQ part as the header
(`FLAG_INLINE`); larger parts go zero-copy. We call the Cython
`Socket.send` part by part: pyzmq's `send_multipart` and its Python wrapper
cost several times the send itself. With NOBLOCK the first part decides
(EAGAIN, EHOSTUNREACH); the rest of a multipart message is then always taken.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, cast

import zmq

from partisan.transport.backpressure import ByteBudget
from partisan.transport.core import LinksCore
from partisan.transport.lanes import FLAG_INLINE, OutLane, lane_for
from partisan.transport.peer import OutState, Peer
from partisan.transport.session import routing_id
from partisan.transport.sockets import close_dealer, make_dealer
from partisan.transport.wire import Header, Kind, encode_header

__all__ = ["Outbound"]

log = logging.getLogger(__name__)

_TEMPLATE_CACHE = 4096  # (channel, dest) header templates kept before the cache is reset
_MORE = int(zmq.SNDMORE)
_FIRST = int(zmq.NOBLOCK) | _MORE
_ZERO_COPY = 64 * 1024  # parts at least this big are sent without copying
_send = zmq.backend.Socket.send  # the Cython method, without pyzmq's Python wrapper
_get = zmq.backend.Socket.get
_FLAGS_INC_SEQ = struct.Struct("!H8sQ").pack  # wire.py's layout at offset 4
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class Outbound(LinksCore):
    """Lanes towards peers and the hand-off of messages to them."""

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
        budget = peer.budgets.get(channel)
        if lane.up and (budget is None or budget.outstanding == 0):
            # Everything of this channel sent on the fallback lane was
            # delivered: switching now cannot reorder it.
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
                self._defer_teardown(peer, "connection_closed")
                return True  # the link is going down; the loss is reported with it
            raise
        lane.seq = seq
        if prefix:  # lane.routed
            self._recheck_router()
        elif self._dirty_scheduled or lane in self._synced:  # _mark_dirty, inlined
            self._dirty[lane] = peer
            if not self._dirty_scheduled:
                self._dirty_scheduled = True
                self._running().call_soon(self._check_dirty)
        else:
            # The first send on a lane since its EVENTS were last read is
            # checked at once (~1.5 us) instead of in one more loop iteration
            # (a call's request would otherwise cost the caller an extra
            # epoll round); later sends before that check are batched.
            self._synced.add(lane)
            if cast(int, _get(sock, _EVENTS)) & _POLLIN:
                self._dirty[lane] = peer
                self._dirty_scheduled = True
                self._running().call_soon(self._check_dirty)
        budget.sent += size
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
            budget = peer.budget(msg.channel)
            if not self._hand_off(
                peer, lane, budget, msg.channel, template, msg.flags, msg.frames, msg.size
            ):
                if lane.routed and self._loop is not None:
                    self._loop.call_later(0.001, self._flush, peer, lane)
                break
            queue.pop()
            budget.queued -= msg.size
            moved += 1
        if moved:
            self._mark_dirty(peer, lane)

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
        self._synced.discard(lane)
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

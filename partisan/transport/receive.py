"""The receive path's socket side: readiness of every socket, draining, the ROUTER's replies.

Theory of operation
-------------------
Every socket's ZeroMQ FD is registered with ``loop.add_reader``. The FD is
edge-triggered: a wake-up means "EVENTS may have changed", so each callback
drains with NOBLOCK until EAGAIN (bounded per call, then rescheduled with
``call_soon`` so one busy peer cannot starve the loop). Sending on a socket can
consume the edge of a pending receive, so every socket we send on is marked
dirty and re-checked once per loop iteration (`mark_dirty`); the ROUTER is
re-checked after every send on it (`recheck_router`).

What a frame means is `dispatch`'s business; this part only reads frames and
hands them over, with the one-part, in-sequence, plain-pickle DATA message
inlined here (the hot path: no Header object, no extra call). A BATCH frame
(`batch.py`) is split first and each record takes that same path, as if it
had arrived alone; a batch counts its records against the per-callback bound. After each batch
the credits part is asked to return CREDIT for what was read.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any, cast

import zmq

from partisan.errors import ProtocolError
from partisan.transport.batch import BATCH_PREFIX, split_batch
from partisan.transport.codec import CODEC_FLAGS_MASK
from partisan.transport.lanes import FLAG_INLINE, OutLane
from partisan.transport.peer import Peer, PeerTable
from partisan.transport.wire import MAGIC, WIRE_VERSION, Kind

if TYPE_CHECKING:
    from partisan.transport.credits import Credits
    from partisan.transport.dispatch import Dispatch
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.outbound import Outbound

__all__ = ["Receiver", "events"]

log = logging.getLogger(__name__)

_BATCH = 1024  # messages per callback before yielding to the loop
_DATA_PREFIX = MAGIC + bytes((WIRE_VERSION, Kind.DATA))
_FLAGS_INC_SEQ = struct.Struct("!HQQ")  # wire.py's layout at offset 4: flags, incarnation, seq
_INLINE_BYTE = FLAG_INLINE >> 8  # the links' flags are the high byte of Header.flags
# Plain ints: ``events & zmq.POLLIN`` goes through IntFlag's Python ``__rand__``
# (~1 us, twice per round trip per side); the Cython getter skips pyzmq's wrapper.
_get = zmq.backend.Socket.get
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


def _read_message(recv: Any, first: zmq.Frame) -> tuple[bytes, list[Any]]:
    """Read the rest of a message whose first part (after any routing id) is `first`.

    Returns (header bytes, payload parts). Parts are read as zmq.Frames: the
    Frame's ``more`` marks the message boundary without a getsockopt(RCVMORE),
    which costs more than the receive itself, and keeps big buffers zero-copy
    (and a HELLO's User-Id readable). A single-part DATA message with
    `FLAG_INLINE` carries its payload right after the header: the common,
    small case costs one part.
    """
    if not first.more:
        return _split_single(first.bytes)
    parts = []
    frame = first
    while frame.more:
        frame = recv(zmq.NOBLOCK, copy=False)
        parts.append(frame)
    return first.bytes, parts


def _split_single(blob: bytes) -> tuple[bytes, list[Any]]:
    """(header bytes, payload parts) of a one-part message (an inline DATA's payload follows)."""
    if blob[:4] == _DATA_PREFIX and len(blob) >= 26 and blob[4] & _INLINE_BYTE:
        end = 26 + blob[22] + blob[23] + (blob[24] << 8 | blob[25])
        return blob[:end], [blob[end:]]
    return blob, []


def events(sock: zmq.Socket[bytes]) -> int:
    """The socket's ZMQ_EVENTS as a plain int (the cheap way; see the constants above)."""
    return cast(int, _get(sock, _EVENTS))


class Receiver:
    """Read every socket when it is ready; re-check the ones we sent on."""

    def __init__(self, local: Endpoint, table: PeerTable) -> None:
        self._local = local
        self._rid_cache = table.rid_cache  # read on the hot path; PeerTable writes it
        self._router_scheduled = False
        self._paused = False
        #: Lanes sent on since their EVENTS were last read, re-checked in `_check_dirty`.
        self.dirty: dict[OutLane, Peer] = {}
        #: Lanes whose first send since their EVENTS were read was already checked.
        self.synced: set[OutLane] = set()
        self.dirty_scheduled = False

    def attach(self, *, dispatch: Dispatch, credits: Credits, outbound: Outbound) -> None:
        """Meet the parts this one hands frames to (they are built after it)."""
        self._dispatch = dispatch
        self._names = dispatch.names  # read on the hot path; Dispatch fills it
        self._deliver_plain = dispatch.deliver_plain
        self._send_credits = credits.send
        self._flush = outbound.flush

    # ------------------------------------------------------------ the ROUTER

    def on_router_readable(self) -> None:
        """Drain the ROUTER (the loop's reader callback, and a scheduled re-read)."""
        self._router_scheduled = False
        sock = self._local.router
        if sock is None or self._paused:
            return
        local = self._local
        count = 0
        state = -1  # EVENTS unknown
        recv = sock.recv
        names = self._names
        rid_cache = self._rid_cache
        try:
            while count < _BATCH:
                if count == 1:
                    # A lone message (a call, a reply) is the common wake-up:
                    # asking EVENTS after it (~1.5 us) spares the EAGAIN
                    # exception that ends a drain (~4 us) and the EVENTS after that.
                    if local.router is None:
                        break
                    state = events(sock)
                    if not state & _POLLIN:
                        break
                    state = -1
                try:
                    rid = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                count += 1
                # A ROUTER message always has a part after the routing id.
                first = recv(zmq.NOBLOCK, copy=False)
                if first.more:
                    raw, parts = _read_message(recv, first)
                    self._dispatch.on_router_message(rid, raw, parts)
                    continue
                blob = first.bytes
                if blob[:4] != BATCH_PREFIX:
                    units: tuple[bytes, ...] | list[bytes] = (blob,)
                else:
                    try:
                        units = split_batch(blob)
                    except ProtocolError as exc:
                        self._dispatch.bad_batch(rid_cache.get(rid), exc)
                        continue
                    count += len(units) - 1
                for blob in units:
                    # The hot path, inlined: a one-part DATA message (or BATCH
                    # record) of a known session, next in sequence, plain
                    # pickle. Anything else (first frame of a lane, a gap, a
                    # control frame, dill, out-of-band buffers) takes the
                    # general path below.
                    if blob[:4] == _DATA_PREFIX and len(blob) >= 26 and blob[4] & _INLINE_BYTE:
                        end = 26 + blob[22] + blob[23] + (blob[24] << 8 | blob[25])
                        sender = names.get(blob[22:end])
                        entry = rid_cache.get(rid)
                        if sender is not None and entry is not None:
                            peer, inbound = entry
                            flags, incarnation, seq = _FLAGS_INC_SEQ.unpack_from(blob, 4)
                            spec = peer.spec
                            if (
                                seq == inbound.expected
                                and not flags & CODEC_FLAGS_MASK
                                and spec is not None
                                and incarnation == spec.incarnation
                                and sender[0] == peer.name
                                and len(blob) > end
                            ):
                                inbound.expected = seq + 1
                                self._deliver_plain(peer, rid, sender, blob, end)
                                continue
                    raw, parts = _split_single(blob)
                    self._dispatch.on_router_message(rid, raw, parts)
        finally:
            self._send_credits()
        router = local.router
        if router is not None and (count >= _BATCH or (state < 0 and events(router) & _POLLIN)):
            self.schedule_router()

    def schedule_router(self) -> None:
        """Read the ROUTER in the next loop iteration (once, however often asked)."""
        loop = self._local.loop
        if not self._router_scheduled and loop is not None:
            self._router_scheduled = True
            loop.call_soon(self.on_router_readable)

    def recheck_router(self) -> None:
        """After sending on the ROUTER: if a receive is pending, make sure it is read."""
        router = self._local.router
        if router is not None and events(router) & _POLLIN:
            self.schedule_router()

    def router_send(self, frames: list[bytes]) -> bool:
        """Send an addressed message on the ROUTER without blocking; False if it did not go."""
        router = self._local.router
        if router is None:
            return False
        try:
            router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the dialer went away, or its pipe is full
            log.debug("%s: ROUTER send failed: %s", self._local.name, exc)
            return False
        self.recheck_router()
        return True

    def pause(self) -> None:
        """Stop reading the ROUTER (see `Links.pause_receiving`)."""
        self._paused = True
        local = self._local
        if local.router is not None and local.loop is not None:
            local.loop.remove_reader(local.router.FD)

    def resume(self) -> None:
        """Read the ROUTER again, starting with what arrived meanwhile."""
        self._paused = False
        local = self._local
        if local.router is not None and local.loop is not None:
            local.loop.add_reader(local.router.FD, self.on_router_readable)
            self.schedule_router()

    # ------------------------------------------------------------ our DEALERs

    def on_dealer_readable(self, peer: Peer, lane: OutLane) -> None:
        """Drain one of our DEALERs (WELCOME, REFUSE, CREDIT, replies to a hidden node)."""
        sock = lane.sock
        count = 0
        state = -1  # EVENTS unknown
        recv = sock.recv
        names = self._names
        try:
            while count < _BATCH and not sock.closed:
                if count == 1:  # see on_router_readable
                    state = events(sock)
                    if not state & _POLLIN:
                        break
                    state = -1
                try:
                    first = recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                count += 1
                if first.more:
                    raw, parts = _read_message(recv, first)
                    self._dispatch.on_dealer_message(peer, lane, raw, parts)
                    continue
                blob = first.bytes
                if blob[:4] != BATCH_PREFIX:
                    units: tuple[bytes, ...] | list[bytes] = (blob,)
                else:
                    try:
                        units = split_batch(blob)
                    except ProtocolError as exc:
                        self._dispatch.bad_batch((peer, None), exc)
                        continue
                    count += len(units) - 1
                for blob in units:
                    # The hot path, as on the ROUTER: a reply's path is as
                    # short as its request's.
                    if blob[:4] == _DATA_PREFIX and len(blob) >= 26 and blob[4] & _INLINE_BYTE:
                        end = 26 + blob[22] + blob[23] + (blob[24] << 8 | blob[25])
                        sender = names.get(blob[22:end])
                        inbound = peer.in_lanes.get(lane.rid)
                        if sender is not None and inbound is not None:
                            flags, incarnation, seq = _FLAGS_INC_SEQ.unpack_from(blob, 4)
                            spec = peer.spec
                            if (
                                seq == inbound.expected
                                and not flags & CODEC_FLAGS_MASK
                                and spec is not None
                                and incarnation == spec.incarnation
                                and sender[0] == peer.name
                                and len(blob) > end
                            ):
                                inbound.expected = seq + 1
                                peer.credit_lane = lane
                                self._deliver_plain(peer, None, sender, blob, end)
                                continue
                    raw, parts = _split_single(blob)
                    self._dispatch.on_dealer_message(peer, lane, raw, parts)
                    if sock.closed:  # the record ended the link (a gap, a BYE)
                        break
        finally:
            self._send_credits()
        if sock.closed:
            return
        if state < 0:
            state = events(sock)
        self.synced.discard(lane)
        if state & _POLLOUT and lane.queue:
            self._flush(peer, lane)
            state = events(sock) if not sock.closed else 0
        if count >= _BATCH or state & _POLLIN:
            self._local.running().call_soon(self.on_dealer_readable, peer, lane)

    def mark_dirty(self, peer: Peer, lane: OutLane) -> None:
        """After sending on a lane: re-check its EVENTS once this loop iteration ends.

        `Outbound.hand_off` inlines this (with its check-the-first-send-at-once
        twist); keep the two in step.
        """
        if lane.routed:
            self.recheck_router()
            return
        self.dirty[lane] = peer
        if not self.dirty_scheduled:
            self.dirty_scheduled = True
            self._local.running().call_soon(self.check_dirty)

    def check_dirty(self) -> None:
        """Read every lane sent on since the last check that has something to read."""
        self.dirty_scheduled = False
        self.synced.clear()
        dirty, self.dirty = self.dirty, {}
        for lane, peer in dirty.items():
            sock = lane.sock
            if not sock.closed and events(sock) & _POLLIN:
                self.on_dealer_readable(peer, lane)

    def forget_lane(self, lane: OutLane) -> None:
        """`lane` is closing: no re-check of it is owed any more."""
        self.synced.discard(lane)

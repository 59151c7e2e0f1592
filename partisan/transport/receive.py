"""The receiving half of `Links`: socket readiness, frame dispatch, delivery, credits.

Theory of operation
-------------------
Every socket's ZeroMQ FD is registered with ``loop.add_reader``. The FD is
edge-triggered: a wake-up means "EVENTS may have changed", so each callback
drains with NOBLOCK until EAGAIN (bounded per call, then rescheduled with
``call_soon`` so one busy peer cannot starve the loop). Sending on a socket can
consume the edge of a pending receive, so every socket we send on is marked
dirty and re-checked once per loop iteration (`_mark_dirty`).

Nothing a peer sends can raise out of a callback: a bad header or payload is a
`ProtocolError` that is counted (`LinkStatistics.rejected`) and logged, and the
frame is dropped. Payloads are decoded only for DATA of a live session, whose
sender was authenticated by CURVE and tied to its name at HELLO; frames of
unknown or closed sessions are dropped before their payload is looked at.

After each batch, the receiver returns cumulative CREDIT per channel for
what it delivered (see `backpressure` and `inflow`), on the path the data
came by.
"""

from __future__ import annotations

import logging
import pickle
import struct
from typing import Any, cast

import zmq

from partisan.errors import JoinRefused, ProtocolError
from partisan.transport.codec import CODEC_FLAGS_MASK, decode_payload
from partisan.transport.core import LinksCore
from partisan.transport.lanes import FLAG_INLINE, OutLane
from partisan.transport.peer import OutState, Peer
from partisan.transport.session import (
    InboundLane,
    SeqVerdict,
    parse_routing_id,
)
from partisan.transport.wire import (
    MAGIC,
    WIRE_VERSION,
    Header,
    Kind,
    WireVersionError,
    decode_header,
)

__all__ = ["Receiver"]

log = logging.getLogger(__name__)

_BATCH = 1024  # messages per callback before yielding to the loop
_BYE_REASONS = {"left": "left", "disconnected": "disconnected"}

_DATA_PREFIX = MAGIC + bytes((WIRE_VERSION, Kind.DATA))
_FLAGS_INC_SEQ = struct.Struct("!HQQ")  # wire.py's layout at offset 4: flags, incarnation, seq
_NAMES_CACHE = 4096
_loads = pickle.loads
_SLICE_MAX = 8192  # inline payloads below this are unpickled from a bytes copy
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
        blob = first.bytes
        if blob[:4] == _DATA_PREFIX and len(blob) >= 26 and blob[4] & _INLINE_BYTE:
            end = 26 + blob[22] + blob[23] + (blob[24] << 8 | blob[25])
            return blob[:end], [blob[end:]]
        return blob, []
    parts = []
    frame = first
    while frame.more:
        frame = recv(zmq.NOBLOCK, copy=False)
        parts.append(frame)
    return first.bytes, parts


def _view(part: Any) -> bytes | memoryview:
    return part.buffer if isinstance(part, zmq.Frame) else part


def _events(sock: zmq.Socket[bytes]) -> int:
    return cast(int, _get(sock, _EVENTS))


class Receiver(LinksCore):
    """Inbound machinery of `Links`: readiness, dispatch, delivery, credits."""

    # ------------------------------------------------------------ readiness

    def _on_router_readable(self) -> None:
        self._router_scheduled = False
        sock = self._router
        if sock is None or self._paused:
            return
        count = 0
        events = -1  # unknown
        recv = sock.recv
        names = self._names
        rid_cache = self._rid_cache
        try:
            while count < _BATCH:
                if count == 1:
                    # A lone message (a call, a reply) is the common wake-up:
                    # asking EVENTS after it (~1.5 us) spares the EAGAIN
                    # exception that ends a drain (~4 us) and the EVENTS after that.
                    if self._router is None:
                        break
                    events = _events(sock)
                    if not events & _POLLIN:
                        break
                    events = -1
                try:
                    rid = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                count += 1
                # A ROUTER message always has a part after the routing id.
                first = recv(zmq.NOBLOCK, copy=False)
                if not first.more:
                    # The hot path, inlined: a one-part DATA message of a known
                    # session, next in sequence, plain pickle. Anything else
                    # (first frame of a lane, a gap, a control frame, dill,
                    # out-of-band buffers) takes the general path below.
                    blob = first.bytes
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
                raw, parts = _read_message(recv, first)
                self._on_router_message(rid, raw, parts)
        finally:
            self._send_credits()
        if self._router is not None and (
            count >= _BATCH or (events < 0 and _events(self._router) & _POLLIN)
        ):
            self._schedule_router()

    def _schedule_router(self) -> None:
        if not self._router_scheduled and self._loop is not None:
            self._router_scheduled = True
            self._loop.call_soon(self._on_router_readable)

    def _on_dealer_readable(self, peer: Peer, lane: OutLane) -> None:
        sock = lane.sock
        count = 0
        events = -1  # unknown
        recv = sock.recv
        names = self._names
        try:
            while count < _BATCH and not sock.closed:
                if count == 1:  # see _on_router_readable
                    events = _events(sock)
                    if not events & _POLLIN:
                        break
                    events = -1
                try:
                    first = recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                count += 1
                if not first.more:
                    # The hot path, as on the ROUTER: a reply's path is as
                    # short as its request's.
                    blob = first.bytes
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
                raw, parts = _read_message(recv, first)
                self._on_dealer_message(peer, lane, raw, parts)
        finally:
            self._send_credits()
        if sock.closed:
            return
        if events < 0:
            events = _events(sock)
        self._synced.discard(lane)
        if events & _POLLOUT and lane.queue:
            self._flush(peer, lane)
            events = _events(sock) if not sock.closed else 0
        if count >= _BATCH or events & _POLLIN:
            self._running().call_soon(self._on_dealer_readable, peer, lane)

    def _recheck_router(self) -> None:
        """After sending on the ROUTER: if a receive is pending, make sure it is read."""
        if self._router is not None and _events(self._router) & _POLLIN:
            self._schedule_router()

    def _mark_dirty(self, peer: Peer, lane: OutLane) -> None:
        """After sending on a lane: re-check its EVENTS once this loop iteration ends."""
        if lane.routed:
            self._recheck_router()
            return
        self._dirty[lane] = peer
        if not self._dirty_scheduled:
            self._dirty_scheduled = True
            self._running().call_soon(self._check_dirty)

    def _check_dirty(self) -> None:
        self._dirty_scheduled = False
        self._synced.clear()
        dirty, self._dirty = self._dirty, {}
        for lane, peer in dirty.items():
            sock = lane.sock
            if not sock.closed and _events(sock) & _POLLIN:
                self._on_dealer_readable(peer, lane)

    # ------------------------------------------------------------ dispatch

    def _reject(self, reason: str, peer: Peer | None = None, detail: object = None) -> None:
        self._rejected[reason] += 1
        if peer is not None:
            peer.counters.rejects += 1
        if detail is not None:
            log.warning("%s dropped a frame (%s): %s", self.name, reason, detail)

    def _on_router_message(self, rid: bytes, raw: bytes, parts: list[Any]) -> None:
        if raw[:4] == _DATA_PREFIX:  # the hot path: no Header object, names cached
            names = self._names.get(raw[22:])
            if names is None:
                names = self._decode_names(raw)
                if names is None:
                    return
            entry = self._rid_cache.get(rid) or self._lookup_rid(rid)
            if entry is None:
                self._reject("unknown_session")
                return
            peer, inbound = entry
            flags, incarnation, seq = _FLAGS_INC_SEQ.unpack_from(raw, 4)
            spec = peer.spec
            if spec is None or names[0] != peer.name or incarnation != spec.incarnation:
                self._reject("stale_incarnation", peer)
                return
            peer.credit_rid = rid
            size = len(raw) + (len(parts[0]) if len(parts) == 1 else sum(len(p) for p in parts))
            self._deliver(peer, inbound, names[1], names[2], flags, seq, parts, size)
            return
        try:
            header = decode_header(raw)
        except WireVersionError as exc:
            parsed = parse_routing_id(rid)
            if parsed is not None:
                self._refuse(rid, str(exc), parsed[0])
            self._reject("protocol_error", detail=exc)
            return
        except ProtocolError as exc:
            self._reject("protocol_error", detail=exc)
            return
        kind = header.kind
        if kind is Kind.HELLO:
            self._handle_hello(rid, header, parts)
            return
        entry = self._rid_cache.get(rid) or self._lookup_rid(rid)
        if entry is None:
            self._reject("unknown_session")
            return
        peer, _ = entry
        spec = peer.spec
        if spec is None or header.sender != peer.name or header.incarnation != spec.incarnation:
            self._reject("stale_incarnation", peer)
            return
        self._handle_control(peer, header, parts)

    def _decode_names(self, raw: bytes) -> tuple[str, str, str] | None:
        """Fully check a DATA header once; cache its (sender, channel, dest) by its tail bytes.

        The cache key is every byte after the fixed integers (the three
        lengths and strings), so a hit is a header identical in everything
        but flags, incarnation and seq, which the caller unpacks itself.
        """
        try:
            header = decode_header(raw)
        except ProtocolError as exc:
            self._reject("protocol_error", detail=exc)
            return None
        if len(self._names) >= _NAMES_CACHE:
            self._names.clear()
        names = self._names[raw[22:]] = (header.sender, header.channel, header.dest)
        return names

    def _lookup_rid(self, rid: bytes) -> tuple[Peer, InboundLane] | None:
        parsed = parse_routing_id(rid)
        peer = self._sessions.get(parsed[0]) if parsed is not None else None
        if peer is None or peer.in_session != parsed[0]:  # type: ignore[index]  # parsed is set when peer is
            return None
        inbound = peer.in_lanes[rid] = InboundLane()
        self._rid_cache[rid] = (peer, inbound)
        return peer, inbound

    def _on_dealer_message(self, peer: Peer, lane: OutLane, raw: bytes, parts: list[Any]) -> None:
        try:
            header = decode_header(raw)
        except ProtocolError as exc:
            if peer.out_state is OutState.HANDSHAKING and isinstance(exc, WireVersionError):
                self._teardown(peer, "unreachable", notify=False, error=JoinRefused(str(exc)))
            self._reject("protocol_error", peer, exc)
            return
        kind = header.kind
        # Answers to our HELLO may come from whoever holds the address (#251);
        # the session id they echo is what ties them to our dial.
        if kind is Kind.WELCOME:
            self._handle_welcome(peer, parts)
            return
        if kind is Kind.REFUSE:
            self._handle_refuse(peer, parts)
            return
        if header.sender != peer.name:
            self._reject("wrong_sender", peer, f"{header.sender!r} on a link to {peer.name!r}")
            return
        if peer.spec is None or header.incarnation != peer.spec.incarnation:
            self._reject("stale_incarnation", peer)
            return
        if kind is Kind.DATA:
            inbound = peer.in_lanes.get(lane.rid)
            if inbound is None:
                inbound = peer.in_lanes[lane.rid] = InboundLane()
            if raw[22:] not in self._names:  # checked in full above: the hot path may trust it
                if len(self._names) >= _NAMES_CACHE:
                    self._names.clear()
                self._names[raw[22:]] = (header.sender, header.channel, header.dest)
            peer.credit_lane = lane
            size = len(raw) + sum(len(p) for p in parts)
            self._deliver(
                peer, inbound, header.channel, header.dest, header.flags, header.seq, parts, size
            )
        else:
            self._handle_control(peer, header, parts)

    def _deliver_plain(
        self, peer: Peer, rid: bytes | None, names: tuple[str, str, str], blob: bytes, start: int
    ) -> None:
        """Deliver a checked, in-sequence, one-part plain-pickle DATA message (the hot path).

        Decoding is the codec's rule for flags 0 and one frame — ``pickle.loads``
        — with its error contract: anything raised is the peer's bad input.
        """
        size = len(blob)
        peer.heard_recently = True
        channel = names[1]
        inflow = peer.inflows.get(channel) or peer.inflow(channel)
        inflow.consumed += size
        if rid is not None:
            peer.credit_rid = rid
        self._credit_due.add(inflow)
        if inflow.consumed - inflow.reported >= self._credit_chunk:
            self._credit_urgent = True
        try:
            # pickle.loads of a memoryview costs ~0.5-1 us more than of bytes;
            # copying a small payload out is cheaper than that.
            value = _loads(blob[start:] if size < _SLICE_MAX else memoryview(blob)[start:])
        except (Exception, SystemExit) as exc:
            self._reject("decode_error", peer, f"payload does not decode: {exc!r}")
            return
        self._decoded += 1
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[2] += 1
        counts[3] += size
        gauge = self.gauge
        gauge.account = inflow  # what the runtime holds if it queues the message
        gauge.size = size
        try:
            self.handler.on_message(peer.spec, channel, names[2], value)  # type: ignore[arg-type]  # checked by the caller
        except Exception:  # the handler's bug must not stop the links
            log.exception("on_message handler failed for a message from %s", peer.name)
        gauge.size = 0

    def _deliver(
        self,
        peer: Peer,
        inbound: InboundLane,
        channel: str,
        dest: str,
        flags: int,
        seq: int,
        parts: list[Any],
        size: int,
    ) -> None:
        peer.heard_recently = True
        inflow = peer.inflows.get(channel) or peer.inflow(channel)
        inflow.consumed += size
        self._credit_due.add(inflow)
        if inflow.consumed - inflow.reported >= self._credit_chunk:
            self._credit_urgent = True
        if seq == inbound.expected:  # InboundLane.check, inlined for the common case
            inbound.expected = seq + 1
        elif inbound.check(seq) is SeqVerdict.DUPLICATE:
            self._reject("duplicate", peer)
            return
        else:
            self._reject("gap", peer, f"lane of {peer.name} skipped to seq {seq}")
            self._teardown(peer, "connection_closed")
            return
        try:
            if len(parts) == 1 and type(parts[0]) is bytes:
                value = decode_payload(flags, parts)
            else:
                value = decode_payload(flags, [_view(p) for p in parts])
        except ProtocolError as exc:
            self._reject("decode_error", peer, exc)
            return
        self._decoded += 1
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[2] += 1
        counts[3] += size
        gauge = self.gauge
        gauge.account = inflow
        gauge.size = size
        try:
            self.handler.on_message(peer.spec, channel, dest, value)  # type: ignore[arg-type]  # set before any session is registered
        except Exception:  # the handler's bug must not stop the links
            log.exception("on_message handler failed for a message from %s", peer.name)
        gauge.size = 0

    def _handle_control(self, peer: Peer, header: Header, payload: list[Any]) -> None:
        peer.heard_recently = True
        kind = header.kind
        if kind is Kind.CREDIT:
            self._take_credit(peer, header.channel, header.seq, payload)
        elif kind is Kind.BYE:
            said = bytes(_view(payload[0])).decode("utf-8", "replace") if payload else ""
            self._teardown(peer, _BYE_REASONS.get(said, "connection_closed"), tell=False)
        elif kind is Kind.PING:
            pass
        else:
            self._reject("protocol_error", peer, f"unexpected {kind.name}")

"""The receive path's meaning side: what a frame is, whose it is, and delivering it.

Theory of operation
-------------------
Nothing a peer sends can raise out of here: a bad header or payload is a
`ProtocolError` that is counted (`LinkStatistics.rejected`) and logged, and the
frame is dropped. Payloads are decoded only for DATA of a live session, whose
sender was authenticated by CURVE and tied to its name at HELLO; frames of
unknown or closed sessions are dropped before their payload is looked at.
HELLO, WELCOME and REFUSE go to the handshake, CREDIT to flow control, BYE and
a sequence gap to detection (which ends the link).

Delivery accounts every DATA frame to its (peer, channel) `Inflow` and marks
the account due for CREDIT (the credits part decides when to send it), then
hands the decoded value to the node's `LinkHandler` with the account set on
the `InboundGauge`, so the runtime can hold the bytes until an actor reads them.
"""

from __future__ import annotations

import logging
import pickle
import struct
from typing import TYPE_CHECKING, Any

import zmq

from partisan.errors import JoinRefused, ProtocolError
from partisan.transport.codec import decode_payload
from partisan.transport.lanes import OutLane
from partisan.transport.peer import OutState, Peer, PeerTable
from partisan.transport.session import InboundLane, SeqVerdict, parse_routing_id
from partisan.transport.statistics import Rejections
from partisan.transport.wire import (
    MAGIC,
    WIRE_VERSION,
    Header,
    Kind,
    WireVersionError,
    decode_header,
)

if TYPE_CHECKING:
    from partisan.transport.credits import Credits
    from partisan.transport.detection import Detection
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.flow import Flow
    from partisan.transport.handshake import Handshake

__all__ = ["Dispatch"]

log = logging.getLogger(__name__)

_BYE_REASONS = {"left": "left", "disconnected": "disconnected", "partitioned": "partitioned"}
_DATA_PREFIX = MAGIC + bytes((WIRE_VERSION, Kind.DATA))
_FLAGS_INC_SEQ = struct.Struct("!HQQ")  # wire.py's layout at offset 4: flags, incarnation, seq
_NAMES_CACHE = 4096
_loads = pickle.loads
_SLICE_MAX = 8192  # inline payloads below this are unpickled from a bytes copy


def _view(part: Any) -> bytes | memoryview:
    return part.buffer if isinstance(part, zmq.Frame) else part


class Dispatch:
    """Check, route and deliver the frames the `Receiver` read."""

    def __init__(
        self, local: Endpoint, table: PeerTable, reject: Rejections, credits: Credits
    ) -> None:
        self._local = local
        self._table = table
        self._reject = reject
        self._due = credits.due  # accounts we read, for the credits part to answer
        self._chunk = credits.chunk
        self._hurry = credits.hurry
        self._gauge = credits.gauge
        #: (sender, channel, dest) by a DATA header's tail bytes, each checked once in full.
        self.names: dict[bytes, tuple[str, str, str]] = {}
        #: Payloads decoded and handed to the handler.
        self.decoded = 0

    def attach(self, *, handshake: Handshake, detection: Detection, flow: Flow) -> None:
        """Meet the parts frames are routed to (they are built after this one)."""
        self._handshake = handshake
        self._detection = detection
        self._flow = flow

    # ------------------------------------------------------------ routing

    def on_router_message(self, rid: bytes, raw: bytes, parts: list[Any]) -> None:
        """A message the ROUTER read that the inlined hot path did not take."""
        if raw[:4] == _DATA_PREFIX:  # no Header object, names cached
            names = self.names.get(raw[22:])
            if names is None:
                names = self._decode_names(raw)
                if names is None:
                    return
            entry = self._table.rid_cache.get(rid) or self._table.lookup_rid(rid)
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
            self.deliver(peer, inbound, names[1], names[2], flags, seq, parts, size)
            return
        try:
            header = decode_header(raw)
        except WireVersionError as exc:
            parsed = parse_routing_id(rid)
            if parsed is not None:
                self._handshake.refuse(rid, str(exc), parsed[0])
            self._reject("protocol_error", detail=exc)
            return
        except ProtocolError as exc:
            self._reject("protocol_error", detail=exc)
            return
        kind = header.kind
        if kind is Kind.HELLO:
            self._handshake.handle_hello(rid, header, parts)
            return
        entry = self._table.rid_cache.get(rid) or self._table.lookup_rid(rid)
        if entry is None:
            self._reject("unknown_session")
            return
        peer, _ = entry
        spec = peer.spec
        if spec is None or header.sender != peer.name or header.incarnation != spec.incarnation:
            self._reject("stale_incarnation", peer)
            return
        self._handle_control(peer, header, parts)

    def bad_batch(self, entry: tuple[Peer, Any] | None, error: ProtocolError) -> None:
        """A BATCH frame that does not split (`batch.split_batch`): drop it whole, count it.

        `entry` is the sending peer's (peer, lane) when known. Its records'
        sequence numbers are then missing, so the lane's next message is a
        gap, which ends the link: the loss is reported, never silent.
        """
        self._reject("protocol_error", None if entry is None else entry[0], f"bad batch: {error}")

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
        if len(self.names) >= _NAMES_CACHE:
            self.names.clear()  # in place: the receiver holds this dict
        names = self.names[raw[22:]] = (header.sender, header.channel, header.dest)
        return names

    def on_dealer_message(self, peer: Peer, lane: OutLane, raw: bytes, parts: list[Any]) -> None:
        """A message one of our DEALERs read that the inlined hot path did not take."""
        try:
            header = decode_header(raw)
        except ProtocolError as exc:
            if peer.out_state is OutState.HANDSHAKING and isinstance(exc, WireVersionError):
                error = JoinRefused(str(exc))
                self._detection.teardown(peer, "unreachable", notify=False, error=error)
            self._reject("protocol_error", peer, exc)
            return
        kind = header.kind
        # Answers to our HELLO may come from whoever holds the address (#251);
        # the session id they echo is what ties them to our dial.
        if kind is Kind.WELCOME:
            self._handshake.handle_welcome(peer, parts)
            return
        if kind is Kind.REFUSE:
            self._handshake.handle_refuse(peer, parts)
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
            if raw[22:] not in self.names:  # checked in full above: the hot path may trust it
                if len(self.names) >= _NAMES_CACHE:
                    self.names.clear()
                self.names[raw[22:]] = (header.sender, header.channel, header.dest)
            peer.credit_lane = lane
            size = len(raw) + sum(len(p) for p in parts)
            self.deliver(
                peer, inbound, header.channel, header.dest, header.flags, header.seq, parts, size
            )
        else:
            self._handle_control(peer, header, parts)

    # ------------------------------------------------------------ delivery

    def deliver_plain(
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
        self._due.add(inflow)
        if inflow.consumed - inflow.reported >= self._chunk:
            self._hurry()
        try:
            # pickle.loads of a memoryview costs ~0.5-1 us more than of bytes;
            # copying a small payload out is cheaper than that.
            value = _loads(blob[start:] if size < _SLICE_MAX else memoryview(blob)[start:])
        except (Exception, SystemExit) as exc:
            self._reject("decode_error", peer, f"payload does not decode: {exc!r}")
            return
        self.decoded += 1
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[2] += 1
        counts[3] += size
        gauge = self._gauge
        gauge.account = inflow  # what the runtime holds if it queues the message
        gauge.size = size
        try:
            self._local.handler.on_message(peer.spec, channel, names[2], value)  # type: ignore[arg-type]  # checked by the caller
        except Exception:  # the handler's bug must not stop the links
            log.exception("on_message handler failed for a message from %s", peer.name)
        gauge.size = 0

    def deliver(
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
        """Check the sequence of a DATA message, decode it and hand it to the handler."""
        peer.heard_recently = True
        inflow = peer.inflows.get(channel) or peer.inflow(channel)
        inflow.consumed += size
        self._due.add(inflow)
        if inflow.consumed - inflow.reported >= self._chunk:
            self._hurry()
        if seq == inbound.expected:  # InboundLane.check, inlined for the common case
            inbound.expected = seq + 1
        elif inbound.check(seq) is SeqVerdict.DUPLICATE:
            self._reject("duplicate", peer)
            return
        else:
            self._reject("gap", peer, f"lane of {peer.name} skipped to seq {seq}")
            self._detection.teardown(peer, "connection_closed")
            return
        try:
            if len(parts) == 1 and type(parts[0]) is bytes:
                value = decode_payload(flags, parts)
            else:
                value = decode_payload(flags, [_view(p) for p in parts])
        except ProtocolError as exc:
            self._reject("decode_error", peer, exc)
            return
        self.decoded += 1
        counts = peer.counters.channels.get(channel) or peer.counters.channel(channel)
        counts[2] += 1
        counts[3] += size
        gauge = self._gauge
        gauge.account = inflow
        gauge.size = size
        try:
            self._local.handler.on_message(peer.spec, channel, dest, value)  # type: ignore[arg-type]  # set before any session is registered
        except Exception:  # the handler's bug must not stop the links
            log.exception("on_message handler failed for a message from %s", peer.name)
        gauge.size = 0

    def _handle_control(self, peer: Peer, header: Header, payload: list[Any]) -> None:
        peer.heard_recently = True
        kind = header.kind
        if kind is Kind.CREDIT:
            self._flow.take_credit(peer, header.channel, header.seq, payload)
        elif kind is Kind.BYE:
            said = bytes(_view(payload[0])).decode("utf-8", "replace") if payload else ""
            self._detection.teardown(peer, _BYE_REASONS.get(said, "connection_closed"), tell=False)
        elif kind is Kind.PING:
            pass
        else:
            self._reject("protocol_error", peer, f"unexpected {kind.name}")

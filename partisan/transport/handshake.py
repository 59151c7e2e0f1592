"""Opening sessions: dialling, HELLO, WELCOME and REFUSE, from both sides.

The rules (which HELLO is accepted, which ends an older session, when a peer
is reported up) are described in `session` and docs/transport.md,
"Sessions"; the pure checks live in `session.refusal`. This part carries
them out on the sockets: it is the only one that admits a peer into the
`PeerTable` and the only one that reports a peer up. Ending a link is
detection's (`Detection.teardown`), whatever the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import zmq

from partisan.errors import CallTimeout, JoinRefused, ProtocolError
from partisan.identity import NodeSpec
from partisan.transport.lanes import OutLane
from partisan.transport.peer import OutState, Peer, PeerTable
from partisan.transport.session import (
    Greeting,
    decode_refusal,
    encode_refusal,
    new_session_id,
    parse_routing_id,
    refusal,
)
from partisan.transport.statistics import Rejections
from partisan.transport.wire import WIRE_VERSION, Header, Kind, encode_header

if TYPE_CHECKING:
    from partisan.transport.detection import Detection
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.outbound import Outbound
    from partisan.transport.receive import Receiver

__all__ = ["Handshake"]

log = logging.getLogger(__name__)


def _view(part: Any) -> bytes | memoryview:
    return part.buffer if isinstance(part, zmq.Frame) else part


class Handshake:
    """Open our half-session and accept the peer's (see the module docstring)."""

    def __init__(
        self,
        local: Endpoint,
        table: PeerTable,
        reject: Rejections,
        *,
        receiver: Receiver,
        outbound: Outbound,
        detection: Detection,
    ) -> None:
        self._local = local
        self._table = table
        self._reject = reject
        self._receiver = receiver
        self._outbound = outbound
        self._detection = detection
        self.refused = 0  # HELLOs we refused
        self.handshakes = 0  # HELLOs we accepted

    # ------------------------------------------------------------ dialling

    async def dial(self, spec: NodeSpec, timeout: float) -> NodeSpec:
        """`Links.connect` once the target is parsed: dial unless a link is up or pending."""
        local = self._local
        loop = local.running()
        if spec.name == local.name:
            raise JoinRefused(f"self-join: {local.name} cannot join itself")
        if local.leaving or local.closed:
            raise JoinRefused(f"{local.name} is leaving: no new connections")
        peer = self._table.get(spec.name)
        if peer is not None and peer.up_reported and not peer.closing:
            assert peer.spec is not None
            return peer.spec
        backoff = self._detection.backoff(spec.name, spec.host, spec.port)
        if backoff is not None and peer is None:
            remaining, reason = backoff
            raise JoinRefused(f"{reason} (backing off for {remaining:.1f} s)")
        if peer is not None and peer.closing:
            self._detection.teardown(peer, "disconnected", notify=False)
            peer = None
        elif peer is not None and not peer.up_reported and peer.address != spec.address:
            # A dial of ours to another address for this name is still pending
            # (e.g. an earlier connect timed out): this connect supersedes it.
            # Waiting on it would time out against the old address.
            error = JoinRefused(f"dial of {spec.name}@{peer.address} superseded by {spec.address}")
            self._detection.teardown(peer, "unreachable", notify=False, error=error)
            peer = None
        if peer is None:
            peer = self._table.add(spec.name, spec.host, spec.port, loop)
        if peer.out_state is OutState.NONE:
            self._open_out(peer, reply_to=None)
        try:
            return await asyncio.wait_for(asyncio.shield(peer.ready), timeout)
        except TimeoutError:
            raise CallTimeout(
                f"no handshake with {spec.name}@{peer.address} within {timeout} s"
            ) from None

    def _greeting(self, session: int, *, target: str | None, reply_to: int | None) -> Greeting:
        local = self._local
        spec = local.our_spec()
        return Greeting(
            name=local.name,
            incarnation=local.incarnation,
            manager=local.config.manager,
            wire_version=WIRE_VERSION,
            hidden=local.hidden,
            host=spec.host,
            port=spec.port,
            role=local.config.role,
            public_key=spec.public_key,
            session=session,
            target=target,
            reply_to=reply_to,
        )

    def _open_out(self, peer: Peer, *, reply_to: int | None) -> None:
        """Start our outbound half-session: open membership lane 0; HELLO goes when it connects."""
        local = self._local
        if local.keystore is not None:
            peer.server_key = local.keystore.key_for(peer.name)
            if peer.server_key is None:
                error = JoinRefused(
                    f"no public key for {peer.name} in {local.keystore.directory}/public_keys"
                )
                self._detection.teardown(peer, "unreachable", notify=False, error=error)
                return
        peer.out_session = new_session_id()
        peer.out_state = OutState.HANDSHAKING
        peer.reply_to = reply_to
        peer.deadline = local.running().time() + local.config.handshake_timeout
        header = encode_header(
            Header(Kind.HELLO, local.name, local.incarnation, "membership", "", 0, 0)
        )
        hello = self._greeting(peer.out_session, target=peer.name, reply_to=reply_to)
        peer.hello = [header, hello.to_bytes()]
        self._outbound.open_lane(peer, "membership", 0)

    def send_hello(self, peer: Peer, lane: OutLane) -> None:
        """Send our HELLO on `lane` (membership lane 0, whose ZeroMQ handshake just completed)."""
        try:
            lane.sock.send_multipart(peer.hello, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("cannot send HELLO to %s yet: %s", peer.name, exc)

    # ------------------------------------------------------------ the listener's side

    def handle_hello(self, rid: bytes, header: Header, parts: list[Any]) -> None:
        """A HELLO on our ROUTER: refuse it, or accept the peer's half-session (and dial back)."""
        local = self._local
        if local.closed:
            # Closing: every peer gets our BYE ("left"); refusing a late
            # dial-back as stale would make it report a failure instead.
            return
        parsed = parse_routing_id(rid)
        if parsed is None or len(parts) != 1 or not isinstance(parts[0], zmq.Frame):
            self._reject("protocol_error", detail="HELLO without our routing id or greeting")
            return
        session = parsed[0]
        try:
            hello = Greeting.from_bytes(parts[0].buffer)
        except ProtocolError as exc:
            self._reject("protocol_error", detail=exc)
            self.refuse(rid, f"malformed HELLO: {exc}", session)
            return
        if (
            hello.session != session
            or hello.name != header.sender
            or hello.incarnation != header.incarnation
        ):
            self.refuse(rid, "HELLO header and greeting disagree", session)
            return
        key_owner = None
        if local.keystore is not None:
            user_id = parts[0].get("User-Id")  # the key CURVE authenticated
            key_owner = local.keystore.name_for(str(user_id)) if user_id else None
        reason = refusal(
            hello,
            local_name=local.name,
            local_incarnation=local.incarnation,
            local_manager=local.config.manager,
            wire_version=WIRE_VERSION,
            key_owner=key_owner,
            secure=local.keystore is not None,
            local_role=local.config.role,
            local_hidden=local.hidden,
        )
        if reason is None and local.admit is not None:  # fault injection (a partition)
            reason = local.admit(hello.name, hello.hidden)
        if reason is not None:
            self.refuse(rid, reason, session)
            return
        peer = self._table.get(hello.name)
        if (
            local.leaving
            and hello.reply_to is None
            and (peer is None or peer.in_session != session)
        ):
            # Leaving: a new session would be cut by our BYE at once. A
            # dial-back of a connect we started, or a repeated HELLO, is fine.
            self.refuse(rid, f"{local.name} is leaving", session)
            return
        if peer is not None:
            known = peer.spec
            if known is not None and known.incarnation > hello.incarnation:
                self.refuse(rid, f"stale incarnation of {hello.name}", session)
                return
            if known is not None and known.incarnation < hello.incarnation:
                self._detection.teardown(peer, "restarted")
                peer = None
            elif peer.in_session == session:
                self._welcome(rid, session)  # a repeated HELLO (the dialer re-connected)
                return
            elif hello.reply_to is not None:
                if hello.reply_to != peer.out_session:
                    self.refuse(rid, "stale session", session)
                    return
                # The dial-back of our current session (even one we are
                # closing: our BYE will end it in order): it replaces any
                # inbound half we had.
                self._table.forget_inbound(peer)
            elif peer.in_session is not None or peer.closing:
                # The peer started a new session: whatever we had is over.
                self._detection.teardown(peer, "connection_closed")
                peer = None
        if peer is None:
            if hello.reply_to is not None:
                self.refuse(rid, "stale session", session)
                return
            peer = self._table.add(hello.name, hello.host, hello.port, local.running())
        peer.spec = hello.spec()
        peer.hidden = hello.hidden
        self._table.accept_inbound(peer, session)
        peer.credit_rid = rid
        peer.last_heard = local.running().time()
        self.handshakes += 1
        self._welcome(rid, session)
        if hello.hidden:
            assert local.router is not None
            peer.router_lane = OutLane(
                channel="membership",
                index=0,
                slot=0,
                rid=rid,
                sock=local.router,
                monitor=None,
                monotonic=False,
                prefix=[rid],
                up=True,
            )
            peer.out_state = OutState.UP
        elif peer.out_state is OutState.NONE:
            self._open_out(peer, reply_to=session)
        self._maybe_up(peer)

    def _welcome(self, rid: bytes, session: int) -> None:
        local = self._local
        header = encode_header(Header(Kind.WELCOME, local.name, local.incarnation, "", "", 0, 0))
        greeting = self._greeting(session, target=None, reply_to=None).to_bytes()
        self._receiver.router_send([rid, header, greeting])

    def refuse(self, rid: bytes, reason: str, session: int) -> None:
        """Answer a HELLO with REFUSE (the dialer raises `JoinRefused(reason)`)."""
        local = self._local
        self.refused += 1
        log.warning("%s refused a HELLO: %s", local.name, reason)
        header = encode_header(Header(Kind.REFUSE, local.name, local.incarnation, "", "", 0, 0))
        self._receiver.router_send([rid, header, encode_refusal(reason, session)])

    # ------------------------------------------------------------ the dialer's side

    def handle_welcome(self, peer: Peer, payload: list[Any]) -> None:
        """A WELCOME on our DEALER: our half-session is up (unless it names the wrong node)."""
        local = self._local
        try:
            welcome = Greeting.from_bytes(_view(payload[0]) if payload else b"")
        except ProtocolError as exc:
            self._reject("protocol_error", peer, exc)
            return
        if welcome.session != peer.out_session or peer.out_state is not OutState.HANDSHAKING:
            return  # an answer to an earlier HELLO of this session, or of an older one
        error = None
        if welcome.name != peer.name:
            error = f"{peer.address} answered as {welcome.name!r}, not {peer.name!r} (did another node take the address?)"
        elif peer.spec is not None and peer.spec.incarnation != welcome.incarnation:
            error = f"{peer.name} restarted during the handshake"
        elif welcome.manager != local.config.manager and not (local.hidden or welcome.hidden):
            # A hidden node (an observer) may watch a cluster of any manager.
            error = f"manager mismatch: {peer.name} runs {welcome.manager}, {local.name} runs {local.config.manager}"
        if error is not None:
            self._detection.teardown(
                peer, "unreachable", notify=peer.up_reported, error=JoinRefused(error)
            )
            return
        peer.spec = welcome.spec()
        peer.hidden = welcome.hidden
        peer.out_state = OutState.UP
        peer.deadline = 0.0
        # Only the membership lane opens with the session; `default` opens on
        # first use like every other lane. Each lane is a CURVE handshake
        # (~1 ms of CPU) and ~3 descriptors, and most links of a membership
        # overlay (HyParView's shuffle replies and neighbour requests, a full
        # mesh's idle links) never carry an actor message.
        for lane in list(peer.lanes.values()):
            self._outbound.flush(peer, lane)
        self._maybe_up(peer)

    def handle_refuse(self, peer: Peer, payload: list[Any]) -> None:
        """A REFUSE on our DEALER: the dial failed with the listener's reason."""
        try:
            reason, session = decode_refusal(_view(payload[0]) if payload else b"")
        except ProtocolError as exc:
            self._reject("protocol_error", peer, exc)
            return
        if session != peer.out_session:
            return
        log.warning("%s: %s refused us: %s", self._local.name, peer.name, reason)
        self._detection.teardown(
            peer, "unreachable", notify=peer.up_reported, error=JoinRefused(reason)
        )

    def _maybe_up(self, peer: Peer) -> None:
        spec = peer.spec
        if peer.up_reported or spec is None or not self._table.current(peer):
            return
        if peer.out_state is OutState.UP or peer.in_session is not None:
            peer.up_reported = True
            peer.counters.sessions += 1
            if not peer.ready.done():
                peer.ready.set_result(spec)
            log.info("%s: link to %s up (hidden=%s)", self._local.name, spec, peer.hidden)
            try:
                self._local.handler.on_peer_up(spec, peer.hidden)
            except Exception:
                log.exception("on_peer_up handler failed for %s", spec)

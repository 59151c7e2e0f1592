"""Opening sessions: HELLO, WELCOME and REFUSE, from both sides (a `Links` mixin).

The rules (which HELLO is accepted, which ends an older session, when a peer
is reported up) are described in `session` and docs/transport.md,
"Sessions"; the pure checks live in `session.refusal`. This module carries
them out on the sockets.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from partisan.errors import JoinRefused, ProtocolError
from partisan.transport.core import LinksCore
from partisan.transport.lanes import OutLane
from partisan.transport.peer import OutState, Peer
from partisan.transport.session import (
    Greeting,
    decode_refusal,
    encode_refusal,
    new_session_id,
    parse_routing_id,
    refusal,
)
from partisan.transport.statistics import PeerCounters
from partisan.transport.wire import WIRE_VERSION, Header, Kind, encode_header

__all__ = ["Handshake"]

log = logging.getLogger(__name__)


def _view(part: Any) -> bytes | memoryview:
    return part.buffer if isinstance(part, zmq.Frame) else part


class Handshake(LinksCore):
    """Open our half-session and accept the peer's (see the module docstring)."""

    #: Set by `Links.leave`: new sessions are refused, live ones finish.
    _leaving: bool = False

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

    def _send_hello(self, peer: Peer, lane: OutLane) -> None:
        try:
            lane.sock.send_multipart(peer.hello, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("cannot send HELLO to %s yet: %s", peer.name, exc)

    def _handle_hello(self, rid: bytes, header: Header, parts: list[Any]) -> None:
        if self._closed:
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
            self._refuse(rid, f"malformed HELLO: {exc}", session)
            return
        if (
            hello.session != session
            or hello.name != header.sender
            or hello.incarnation != header.incarnation
        ):
            self._refuse(rid, "HELLO header and greeting disagree", session)
            return
        key_owner = None
        if self.keystore is not None:
            user_id = parts[0].get("User-Id")  # the key CURVE authenticated
            key_owner = self.keystore.name_for(str(user_id)) if user_id else None
        reason = refusal(
            hello,
            local_name=self.name,
            local_incarnation=self.incarnation,
            local_manager=self.config.manager,
            wire_version=WIRE_VERSION,
            key_owner=key_owner,
            secure=self.keystore is not None,
            local_role=self.config.role,
            local_hidden=self.hidden,
        )
        if reason is not None:
            self._refuse(rid, reason, session)
            return
        peer = self._peers.get(hello.name)
        if (
            self._leaving
            and hello.reply_to is None
            and (peer is None or peer.in_session != session)
        ):
            # Leaving: a new session would be cut by our BYE at once. A
            # dial-back of a connect we started, or a repeated HELLO, is fine.
            self._refuse(rid, f"{self.name} is leaving", session)
            return
        if peer is not None:
            known = peer.spec
            if known is not None and known.incarnation > hello.incarnation:
                self._refuse(rid, f"stale incarnation of {hello.name}", session)
                return
            if known is not None and known.incarnation < hello.incarnation:
                self._teardown(peer, "restarted")
                peer = None
            elif peer.in_session == session:
                self._welcome(rid, session)  # a repeated HELLO (the dialer re-connected)
                return
            elif hello.reply_to is not None:
                if hello.reply_to != peer.out_session:
                    self._refuse(rid, "stale session", session)
                    return
                # The dial-back of our current session (even one we are
                # closing: our BYE will end it in order): it replaces any
                # inbound half we had.
                self._forget_inbound(peer)
            elif peer.in_session is not None or peer.closing:
                # The peer started a new session: whatever we had is over.
                self._teardown(peer, "connection_closed")
                peer = None
        if peer is None:
            if hello.reply_to is not None:
                self._refuse(rid, "stale session", session)
                return
            peer = self._new_peer(hello.name, hello.host, hello.port)
        peer.spec = hello.spec()
        peer.hidden = hello.hidden
        peer.in_session = session
        peer.credit_rid = rid
        peer.last_heard = self._running().time()
        self._sessions[session] = peer
        self._handshakes += 1
        self._welcome(rid, session)
        if hello.hidden:
            assert self._router is not None
            peer.router_lane = OutLane(
                channel="membership",
                index=0,
                slot=0,
                rid=rid,
                sock=self._router,
                monitor=None,
                monotonic=False,
                prefix=[rid],
                up=True,
            )
            peer.out_state = OutState.UP
        elif peer.out_state is OutState.NONE:
            self._open_out(peer, reply_to=session)
        self._maybe_up(peer)

    def _forget_inbound(self, peer: Peer) -> None:
        if peer.in_session is not None:
            self._sessions.pop(peer.in_session, None)
        for rid in peer.in_lanes:
            self._rid_cache.pop(rid, None)
        peer.in_lanes.clear()
        peer.in_session = None

    def _welcome(self, rid: bytes, session: int) -> None:
        header = encode_header(Header(Kind.WELCOME, self.name, self.incarnation, "", "", 0, 0))
        greeting = self._greeting(session, target=None, reply_to=None).to_bytes()
        self._router_send([rid, header, greeting])

    def _refuse(self, rid: bytes, reason: str, session: int) -> None:
        self._refused += 1
        log.warning("%s refused a HELLO: %s", self.name, reason)
        header = encode_header(Header(Kind.REFUSE, self.name, self.incarnation, "", "", 0, 0))
        self._router_send([rid, header, encode_refusal(reason, session)])

    def _router_send(self, frames: list[bytes]) -> bool:
        if self._router is None:
            return False
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the dialer went away, or its pipe is full
            log.debug("%s: ROUTER send failed: %s", self.name, exc)
            return False
        self._recheck_router()
        return True

    def _handle_welcome(self, peer: Peer, payload: list[Any]) -> None:
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
        elif welcome.manager != self.config.manager and not (self.hidden or welcome.hidden):
            # A hidden node (an observer) may watch a cluster of any manager.
            error = f"manager mismatch: {peer.name} runs {welcome.manager}, {self.name} runs {self.config.manager}"
        if error is not None:
            self._teardown(peer, "unreachable", notify=peer.up_reported, error=JoinRefused(error))
            return
        peer.spec = welcome.spec()
        peer.hidden = welcome.hidden
        peer.out_state = OutState.UP
        peer.deadline = 0.0
        self._open_default_lanes(peer)
        for lane in list(peer.lanes.values()):
            self._flush(peer, lane)
        self._maybe_up(peer)

    def _handle_refuse(self, peer: Peer, payload: list[Any]) -> None:
        try:
            reason, session = decode_refusal(_view(payload[0]) if payload else b"")
        except ProtocolError as exc:
            self._reject("protocol_error", peer, exc)
            return
        if session != peer.out_session:
            return
        log.warning("%s: %s refused us: %s", self.name, peer.name, reason)
        self._teardown(peer, "unreachable", notify=peer.up_reported, error=JoinRefused(reason))

    def _maybe_up(self, peer: Peer) -> None:
        spec = peer.spec
        if peer.up_reported or spec is None or self._peers.get(peer.name) is not peer:
            return
        if peer.out_state is OutState.UP or peer.in_session is not None:
            peer.up_reported = True
            peer.counters.sessions += 1
            if not peer.ready.done():
                peer.ready.set_result(spec)
            log.info("%s: link to %s up (hidden=%s)", self.name, spec, peer.hidden)
            try:
                self.handler.on_peer_up(spec, peer.hidden)
            except Exception:
                log.exception("on_peer_up handler failed for %s", spec)

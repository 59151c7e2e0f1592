"""ZAP handler (ZeroMQ RFC 27) that admits only CURVE clients listed in a KeyStore.

Theory of operation
-------------------
A CURVE server socket without a ZAP handler accepts *any* client that knows
the server's public key (measured, reliability.md §1), so every node runs one.
libzmq sends each handshake's ZAP request, over ``inproc://zeromq.zap.01`` of
the socket's context, to whatever is bound there, and completes or fails the
handshake on the reply:

    request: [routing id, b"", b"1.0", request id, domain, address, routing
              id of the client, mechanism, credentials...]
    reply:   [routing id, b"", b"1.0", request id, status, text, user id, metadata]

We bind a ROUTER (not pyzmq's REP), so requests of concurrent handshakes are
answered as they come without a strict request/reply alternation, and drive it
from the node's asyncio loop: ``loop.add_reader`` on the socket's FD, then
drain with NOBLOCK until EAGAIN (the FD is edge-triggered). Each decision is
one dict lookup (`KeyStore.name_for`), so a handshake storm cannot stall the
loop and no thread competes for the GIL. `process_pending` is the same drain,
callable directly by code that has no loop.

Policy: mechanism ``CURVE`` and a key the KeyStore admits -> 200, with the
client's Z85 key as User-Id (readable as ``frame.get("User-Id")`` on every
message it sends). Everything else -> 400: an unlisted key, ``NULL`` or
``PLAIN`` (a socket of this context that asked for ZAP without CURVE), a
malformed request. The KeyStore refreshes itself on a miss, so a key added to
the directory is admitted without a restart; we also refresh it at most every
`refresh_interval` seconds on hits, so a removed key stops new handshakes.

pyzmq's own `zmq.auth` does the same through a REP socket and a thread or an
``await`` per request; we keep its policy shape and a thinner driver.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils import z85

from partisan.transport.keys import KeyStore

__all__ = ["ZAP_ENDPOINT", "AuthDecision", "AuthStatistics", "Authenticator"]

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_VERSION = b"1.0"
_RECENT = 32  # rejections kept for statistics(), newest last


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """One rejected handshake, for diagnostics (who knocks with what)."""

    address: str
    mechanism: str
    public_key: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class AuthStatistics:
    """Counts of ZAP decisions since start; `recent_rejections` is newest last."""

    admitted: int
    rejected_unknown_key: int
    rejected_mechanism: int
    malformed: int
    key_refreshes: int
    recent_rejections: tuple[AuthDecision, ...]

    @property
    def rejected(self) -> int:
        return self.rejected_unknown_key + self.rejected_mechanism + self.malformed


class Authenticator:
    """Answer the ZAP requests of one zmq context from an asyncio loop.

    Create it with the node's context (the same one its CURVE sockets use)
    and its `KeyStore`; call `start()` from inside the running loop before any
    CURVE socket binds, and `stop()` before the context terminates.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        keystore: KeyStore,
        *,
        refresh_interval: float = 1.0,
    ) -> None:
        self.context = context
        self.keystore = keystore
        self.refresh_interval = refresh_interval
        self._socket: zmq.Socket[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_refresh = 0.0
        self._admitted = 0
        self._unknown = 0
        self._mechanism = 0
        self._malformed = 0
        self._recent: collections.deque[AuthDecision] = collections.deque(maxlen=_RECENT)

    @property
    def started(self) -> bool:
        return self._socket is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Bind the ZAP endpoint and answer requests from `loop` (default: the running one).

        Raises `zmq.ZMQError` (EADDRINUSE) if another handler is bound in this
        context. With ``loop=None`` and no running loop, nothing is scheduled:
        the caller drives `process_pending` itself.
        """
        if self._socket is not None:
            raise RuntimeError("Authenticator already started")
        # A plain (non-asyncio) socket even on a zmq.asyncio context: we call it
        # with NOBLOCK from the loop's reader callback and never await it.
        sock: zmq.Socket[bytes] = zmq.Socket(self.context, zmq.ROUTER)
        sock.linger = 0
        try:
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            sock.close()
            raise
        self._socket = sock
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._loop = loop
        if loop is not None:
            loop.add_reader(sock.FD, self.process_pending)
            # Requests may already be queued (the FD only signals edges).
            loop.call_soon(self.process_pending)

    def stop(self) -> None:
        """Unbind and close; handshakes after this fail (no handler answers)."""
        sock, self._socket = self._socket, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.FD)
        self._loop = None
        try:
            # Unbind first: close alone frees the inproc name only when libzmq's
            # reaper gets to it, so a restarted handler could find it taken.
            sock.unbind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            log.debug("ZAP unbind: %s", exc)
        sock.close(linger=0)

    def statistics(self) -> AuthStatistics:
        return AuthStatistics(
            admitted=self._admitted,
            rejected_unknown_key=self._unknown,
            rejected_mechanism=self._mechanism,
            malformed=self._malformed,
            key_refreshes=self.keystore.refreshes,
            recent_rejections=tuple(self._recent),
        )

    def process_pending(self) -> int:
        """Answer every queued ZAP request without blocking; return how many."""
        sock = self._socket
        handled = 0
        while sock is not None:
            try:
                request = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:  # context terminating under us
                log.debug("ZAP socket closed: %s", exc)
                break
            handled += 1
            reply = self.handle_request(request)
            if reply is None:
                continue
            try:
                sock.send_multipart(reply, zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the handshake's pipe went away meanwhile
                log.debug("cannot send ZAP reply: %s", exc)
            sock = self._socket
        return handled

    def handle_request(self, request: list[bytes]) -> list[bytes] | None:
        """Decide one ZAP request (frames as received by the ROUTER); return the reply.

        Pure policy, no I/O besides the KeyStore refresh: None means the request
        is too malformed to answer (no envelope).
        """
        # [routing id, b"", version, request id, domain, address, identity, mechanism, creds...]
        if len(request) < 8 or request[1] != b"":
            self._malformed += 1
            log.warning("malformed ZAP request with %d frames", len(request))
            return None  # no envelope to answer on
        envelope, (version, request_id, _domain, address_raw, _identity, mechanism_raw) = (
            request[:2],
            request[2:8],
        )
        credentials = request[8:]
        address = address_raw.decode("utf-8", "replace")
        mechanism = mechanism_raw.decode("ascii", "replace")
        if version != _VERSION:
            return self._reject(envelope, request_id, address, mechanism, None, "bad ZAP version")
        if mechanism != "CURVE":
            self._mechanism += 1
            return self._reject(
                envelope,
                request_id,
                address,
                mechanism,
                None,
                "mechanism not allowed",
                counted=True,
            )
        if len(credentials) != 1 or len(credentials[0]) != 32:
            return self._reject(envelope, request_id, address, mechanism, None, "bad credentials")
        key = z85.encode(credentials[0]).decode("ascii")
        self._maybe_refresh()
        name = self.keystore.name_for(key)  # refreshes on a miss
        if name is None:
            self._unknown += 1
            return self._reject(
                envelope, request_id, address, mechanism, key, "unknown key", counted=True
            )
        self._admitted += 1
        log.debug("admitted %s (key of %s) from %s", key, name, address)
        return [*envelope, _VERSION, request_id, b"200", b"OK", key.encode("ascii"), b""]

    def _reject(
        self,
        envelope: list[bytes],
        request_id: bytes,
        address: str,
        mechanism: str,
        key: str | None,
        reason: str,
        *,
        counted: bool = False,
    ) -> list[bytes]:
        if not counted:
            self._malformed += 1
        self._recent.append(AuthDecision(address, mechanism, key, reason))
        log.warning(
            "refused %s handshake from %s: %s%s",
            mechanism,
            address,
            reason,
            f" ({key})" if key else "",
        )
        return [*envelope, _VERSION, request_id, b"400", reason.encode("ascii"), b"", b""]

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_refresh >= self.refresh_interval:
            self._last_refresh = now
            self.keystore.refresh()

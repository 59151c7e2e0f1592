"""Sessions: routing ids, the HELLO/WELCOME greeting, handshake checks, sequence checks.

Theory of operation
-------------------
libzmq reconnects silently and loses or delays in-flight messages
(reliability.md §1, §4), so link semantics are ours. A *session* is one
direction of a link: the dialer's DEALERs (one per channel x lane) towards the
peer's ROUTER. It is named by a random 64-bit session id, which every DEALER
of the session carries in its ZeroMQ routing id (``b"P" + session + slot``).
The ROUTER learns the routing id when a connection is made, so every frame
read from the ROUTER says which session and lane it belongs to without a
header field: a frame from a closed session (an old DEALER whose queued frames
libzmq flushed after a silent reconnect) has an unknown session id and is
dropped and counted. Session ids are random, so a peer cannot guess another
peer's session; together with CURVE this makes the routing id a capability.

The handshake: the dialer's first lane (``membership`` lane 0) sends HELLO
(a JSON `Greeting`: name, incarnation, manager, wire version, hidden,
advertised address, role, session, the name it expects to reach and, for a
dial-back, the session it answers). The listener checks it (`refusal`) and
answers WELCOME (its own greeting) or REFUSE (a reason). A non-hidden dialer is
dialled back, so data always flows over the sender's own DEALERs; a hidden
dialer's replies ride the ROUTER, addressed by routing id.

Within a session every lane numbers its DATA frames 1, 2, 3...; the receiver
(`InboundLane`) drops duplicates and treats a gap as a broken session (libzmq
lost frames on a reconnect), which ends the link with PeerDown rather than
delivering a stream with a hole in it.

Greetings are JSON, never pickle: they are read before the peer's identity is
tied to its key.
"""

from __future__ import annotations

import enum
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from partisan.errors import ProtocolError
from partisan.identity import NodeSpec
from partisan.membership.client_server import join_refusal

__all__ = [
    "Greeting",
    "InboundLane",
    "SeqVerdict",
    "decode_refusal",
    "encode_refusal",
    "new_session_id",
    "parse_routing_id",
    "refusal",
    "routing_id",
]

_RID = struct.Struct("!cQH")
_RID_TAG = b"P"  # a routing id must not start with a zero byte (reserved by libzmq)
MAX_GREETING_BYTES = 4096


def new_session_id() -> int:
    """A random, non-zero 64-bit session id."""
    return int.from_bytes(os.urandom(8), "big") or 1


def routing_id(session: int, slot: int) -> bytes:
    """The ZeroMQ routing id of lane `slot` of `session`."""
    return _RID.pack(_RID_TAG, session, slot)


def parse_routing_id(rid: bytes) -> tuple[int, int] | None:
    """Return (session, slot) for one of our routing ids, else None."""
    if len(rid) != _RID.size or rid[:1] != _RID_TAG:
        return None
    _, session, slot = _RID.unpack(rid)
    return session, slot


class SeqVerdict(enum.Enum):
    """What the receiver makes of one lane sequence number."""

    OK = "ok"
    DUPLICATE = "duplicate"
    GAP = "gap"


class InboundLane:
    """Sequence check for one lane of one inbound session."""

    __slots__ = ("expected",)

    def __init__(self) -> None:
        self.expected = 1

    def check(self, seq: int) -> SeqVerdict:
        """Accept `seq` if it is the next one; otherwise say why not."""
        if seq == self.expected:
            self.expected = seq + 1
            return SeqVerdict.OK
        if seq < self.expected:
            return SeqVerdict.DUPLICATE
        return SeqVerdict.GAP


@dataclass(frozen=True, slots=True)
class Greeting:
    """The payload of HELLO (dialer) and WELCOME (listener)."""

    name: str
    incarnation: int
    manager: str
    wire_version: int
    hidden: bool
    host: str
    port: int
    role: str | None
    public_key: str | None
    session: int  # HELLO: the dialer's session; WELCOME: the session accepted
    target: str | None = None  # HELLO: the node name the dialer expects to reach
    reply_to: int | None = None  # HELLO of a dial-back: the session it answers

    def spec(self) -> NodeSpec:
        """The node this greeting announces."""
        return NodeSpec(
            self.name,
            self.host,
            self.port,
            public_key=self.public_key,
            role=self.role,
            incarnation=self.incarnation,
        )

    def to_bytes(self) -> bytes:
        """Encode as compact JSON (fields read directly: `asdict` deep-copies, ~40 us per link)."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> Greeting:
        """Decode a peer's greeting; anything malformed raises `ProtocolError`."""
        raw = _json_object(data, "greeting")
        try:
            greeting = cls(
                name=_field(raw, "name", str),
                incarnation=_field(raw, "incarnation", int),
                manager=_field(raw, "manager", str),
                wire_version=_field(raw, "wire_version", int),
                hidden=_field(raw, "hidden", bool),
                host=_field(raw, "host", str),
                port=_field(raw, "port", int),
                role=_optional(raw, "role", str),
                public_key=_optional(raw, "public_key", str),
                session=_field(raw, "session", int),
                target=_optional(raw, "target", str),
                reply_to=_optional(raw, "reply_to", int),
            )
            greeting.spec()  # validates the name and address
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"bad greeting: {exc}") from None
        if not 0 <= greeting.port <= 65535 or not 0 < greeting.session < 1 << 64:
            raise ProtocolError("bad greeting: port or session out of range")
        return greeting


def refusal(
    hello: Greeting,
    *,
    local_name: str,
    local_incarnation: int,
    local_manager: str,
    wire_version: int,
    key_owner: str | None,
    secure: bool,
    local_role: str | None = None,
    local_hidden: bool = False,
) -> str | None:
    """Why a HELLO must be refused, or None to accept it.

    `key_owner` is the node name the peer's authenticated CURVE key belongs to
    (None when the key is not listed); it is ignored when not `secure`. Under
    the client-server manager two clients may not join each other. A hidden
    peer (a tool, a test, the ``partisan cluster`` observer) is exempt from
    that and from the manager check, as it never enters a view; so is any
    peer when we are hidden ourselves (`local_hidden`).
    """
    if hello.wire_version != wire_version:
        return f"wire version mismatch: {hello.name} speaks {hello.wire_version}, {local_name} speaks {wire_version}"
    if secure and key_owner is None:
        return f"the key {hello.name} presented is not listed on {local_name}"
    if secure and key_owner != hello.name:
        return f"the key presented belongs to {key_owner!r}, not to {hello.name!r}"
    if hello.name == local_name:
        if hello.incarnation == local_incarnation:
            return f"self-join: {local_name} cannot join itself"
        return f"name clash: another node already runs as {local_name!r}"
    if hello.target is not None and hello.target != local_name:
        return (
            f"this address is node {local_name!r}, not {hello.target!r} "
            "(did another node take the address?)"
        )
    if hello.manager != local_manager and not (hello.hidden or local_hidden):
        return f"manager mismatch: {hello.name} runs {hello.manager}, {local_name} runs {local_manager}"
    if local_manager == "client-server" and not hello.hidden:
        return join_refusal(hello.role, local_role)
    return None


def encode_refusal(reason: str, session: int) -> bytes:
    """The payload of REFUSE."""
    return json.dumps({"reason": reason, "session": session}).encode()


def decode_refusal(data: bytes | memoryview) -> tuple[str, int]:
    """Parse a REFUSE payload into (reason, session)."""
    raw = _json_object(data, "refusal")
    try:
        return _field(raw, "reason", str), _field(raw, "session", int)
    except TypeError as exc:
        raise ProtocolError(f"bad refusal: {exc}") from None


def _json_object(data: bytes | memoryview, what: str) -> dict[str, Any]:
    if len(data) > MAX_GREETING_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes, the limit is {MAX_GREETING_BYTES}")
    try:
        raw = json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return raw


def _field(raw: dict[str, Any], name: str, kind: type) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _optional(raw: dict[str, Any], name: str, kind: type) -> Any:
    return None if raw.get(name) is None else _field(raw, name, kind)

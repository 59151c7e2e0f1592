"""The node-to-node actor protocol: envelopes sent to a peer's ``"$runtime"`` destination.

User messages travel with the target actor as the transport destination
(``str(pid)`` or a registered name) and the message itself as the payload.
Everything else — monitors, links, exit signals, calls and replies, remote
spawn, rpc and ping — is one of these frozen dataclasses addressed to
``"$runtime"``. The transport pickles them only after CURVE authentication,
so a peer's bytes are never unpickled unauthenticated.

Ordering: each envelope is sent with the partition key of the actor it is
about (the caller for requests, the dying actor for `DownSig` / `ExitSig`,
the new actor for `SpawnReply`), so it shares a lane with that actor's own
messages: a reply can never overtake the messages sent before it, and a
`DownSig` never overtakes the actor's last messages, as in Erlang.

Code (spawn, rpc) travels pre-encoded in `Shipped` so that a failure to load
it on the receiving node is caught there and reported as `SpawnError` with
the remote traceback, rather than being a dropped frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from partisan.actors.signals import Ref
from partisan.identity import Pid

__all__ = [
    "CallReq",
    "DemonitorReq",
    "DownSig",
    "ExitSig",
    "LinkReq",
    "MonitorReq",
    "PingReply",
    "PingReq",
    "ReplyMsg",
    "RpcReply",
    "RpcReq",
    "Shipped",
    "SpawnReply",
    "SpawnReq",
    "UnlinkReq",
    "ship",
    "unship",
]

#: A target on the receiving node: a Pid or a registered name.
Target = Pid | str


@dataclass(frozen=True, slots=True)
class Shipped:
    """An object encoded with the payload codec (pickle, dill fallback): flags + frames."""

    flags: int
    frames: tuple[bytes, ...]


def ship(obj: object) -> Shipped:
    """Encode `obj` (code and arguments) for `unship` on another node."""
    from partisan.transport import codec

    flags, frames = codec.encode_payload(obj)
    return Shipped(flags, tuple(bytes(f) for f in frames))


def unship(shipped: Shipped) -> Any:
    """Decode what `ship` encoded; raises whatever loading the code raises."""
    from partisan.transport import codec

    return codec.decode_payload(shipped.flags, list(shipped.frames))


@dataclass(frozen=True, slots=True)
class MonitorReq:
    ref: Ref
    watcher: Pid
    target: Target


@dataclass(frozen=True, slots=True)
class DemonitorReq:
    ref: Ref


@dataclass(frozen=True, slots=True)
class DownSig:
    ref: Ref
    pid: Any
    reason: Any


@dataclass(frozen=True, slots=True)
class LinkReq:
    src: Pid
    dst: Pid


@dataclass(frozen=True, slots=True)
class UnlinkReq:
    src: Pid
    dst: Pid


@dataclass(frozen=True, slots=True)
class ExitSig:
    src: Pid
    dst: Pid
    reason: Any
    linked: bool


@dataclass(frozen=True, slots=True)
class CallReq:
    """A call: the receiving runtime monitors the target for the caller, then queues `Call`."""

    ref: Ref
    caller: Pid
    target: Target
    request: Any


@dataclass(frozen=True, slots=True)
class ReplyMsg:
    """A call's reply; `demonitored` says the callee's node already dropped the call's monitor."""

    ref: Ref
    value: Any
    demonitored: bool


@dataclass(frozen=True, slots=True)
class SpawnReq:
    ref: Ref
    caller: Pid
    code: Shipped
    link: bool
    monitor_ref: Ref | None
    name: str | None
    timeout: float | None


@dataclass(frozen=True, slots=True)
class SpawnReply:
    ref: Ref
    pid: Pid | None
    error: str | None = None
    traceback_text: str | None = None


@dataclass(frozen=True, slots=True)
class RpcReq:
    ref: Ref
    code: Shipped


@dataclass(frozen=True, slots=True)
class RpcReply:
    ref: Ref
    ok: bool
    value: Any = None
    error: Shipped | None = None
    error_text: str | None = None
    traceback_text: str | None = None


@dataclass(frozen=True, slots=True)
class PingReq:
    ref: Ref
    target: Target | None


@dataclass(frozen=True, slots=True)
class PingReply:
    ref: Ref
    alive: bool

"""The shapes every membership manager speaks: events in, actions out.

A manager is a pure state machine (STYLE.md habit 1). A driver — the real
node's peer service or the simulator — feeds it `Event`s together with the
current time and carries out the `Action`s it returns. Nothing here does I/O,
reads a clock or touches the global random module.

Peers are identified by `NodeSpec` (name + address + incarnation). Views are
keyed by name; a spec with a higher incarnation replaces an older one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random  # the type of the injected generator; never the global one
from typing import Any, Protocol, runtime_checkable

from partisan.identity import NodeSpec

__all__ = [
    "Action",
    "CancelTimer",
    "Connect",
    "Disconnect",
    "DisconnectReason",
    "Event",
    "Join",
    "Leave",
    "Manager",
    "MembersChanged",
    "PeerDown",
    "PeerUp",
    "Random",
    "Received",
    "Send",
    "SetTimer",
    "TimerFired",
]


# --------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Join:
    """Join the cluster through `contact` (an explicit user or CLI request)."""

    contact: NodeSpec


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the cluster (`node` is None) or remove `node` from it."""

    node: NodeSpec | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """A membership message `msg` arrived from `sender`."""

    sender: NodeSpec
    msg: Any


@dataclass(frozen=True, slots=True)
class PeerUp:
    """A connection (session) to `peer` is established."""

    peer: NodeSpec


@dataclass(frozen=True, slots=True)
class PeerDown:
    """The connection to `peer` is gone: `reason` is the transport's diagnosis.

    Failures: ``"connection_closed"``, ``"heartbeat_timeout"``, ``"restarted"``,
    ``"unreachable"`` (a send or dial failed). Not failures: ``"left"`` (the
    peer said goodbye) and ``"disconnected"`` (both ends agreed to close a
    healthy link, e.g. a temporary one; the peer is still a fine backup).
    """

    peer: NodeSpec
    reason: str = "connection_closed"


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer `name` set by an earlier `SetTimer` is due."""

    name: str


Event = Join | Leave | Received | PeerUp | PeerDown | TimerFired


# -------------------------------------------------------------------- actions


class DisconnectReason(enum.Enum):
    """Why a manager drops a connection; only FAILED / LEFT are failures.

    A healthy peer moved to the passive view is VIEW_CHANGE: the node layer must
    not report NodeDown for it (CONTRACT.md, Failure semantics).
    """

    VIEW_CHANGE = "view_change"
    LEFT = "left"
    FAILED = "failed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Connect:
    """Open (or keep) a connection to `peer`."""

    peer: NodeSpec


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection to `peer` for `reason`."""

    peer: NodeSpec
    reason: DisconnectReason = DisconnectReason.VIEW_CHANGE


@dataclass(frozen=True, slots=True)
class Send:
    """Send membership message `msg` to `peer` on `channel`.

    If the peer is not connected the driver dials it first (HyParView's
    temporary connections, shuffle replies). If the send fails the driver
    reports `PeerDown(peer, "unreachable")`.
    """

    peer: NodeSpec
    msg: Any
    channel: str = "membership"


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerFired(name)` at absolute time `at` (replaces a pending one)."""

    name: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel the pending timer `name`, if any."""

    name: str


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """The manager's view changed; `members` is sorted by name, self included."""

    members: tuple[NodeSpec, ...]


Action = Connect | Disconnect | Send | SetTimer | CancelTimer | MembersChanged


@runtime_checkable
class Manager(Protocol):
    """What every membership manager offers its driver."""

    #: Name used in the HELLO and on the CLI: "full-mesh", "hyparview", ...
    name: str

    def start(self, now: float) -> list[Action]:
        """Begin: the initial timers (and nothing else)."""
        ...

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event at time `now` and return what to do."""
        ...

    def members(self) -> Sequence[NodeSpec]:
        """The manager's view, self included, sorted by name."""
        ...

    def active(self) -> Sequence[NodeSpec]:
        """Peers this node should keep connections to (self excluded)."""
        ...

    def passive(self) -> Sequence[NodeSpec]:
        """Known but unconnected peers (HyParView's passive view; else empty)."""
        ...

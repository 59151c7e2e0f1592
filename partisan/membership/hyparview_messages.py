"""HyParView's wire messages and the checks a receiver applies to them.

Every message is a frozen, slotted dataclass; the sender's identity (and so its
epoch, the incarnation) is not in the message but in `Received.sender`, which
the transport authenticated. A message that fails `check` came from a buggy or
hostile peer: the manager counts it and drops it, it never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from partisan.identity import NodeSpec

__all__ = [
    "MAX_EXCHANGE",
    "DisconnectNotice",
    "ForwardJoin",
    "JoinRequest",
    "LeaveNotice",
    "NeighborNotice",
    "NeighborReply",
    "NeighborRequest",
    "PassiveProbe",
    "Priority",
    "Shuffle",
    "ShuffleReply",
    "check",
]

#: Upper bound on the node lists a peer may send us (ka + kp + 1 is 8 by default).
MAX_EXCHANGE = 256


class Priority(enum.Enum):
    """A neighbor request's priority (paper §4.3).

    HIGH must be accepted (the requester's active view is empty, or it is
    re-establishing a link that failed); LOW only if the receiver has a free slot.
    """

    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A newcomer asks its contact to take it into the overlay."""


@dataclass(frozen=True, slots=True)
class ForwardJoin:
    """A random walk announcing `node`; `ttl` counts down from ARWL."""

    node: NodeSpec
    ttl: int


@dataclass(frozen=True, slots=True)
class NeighborNotice:
    """The sender has put the receiver in its active view; the receiver must follow.

    Sent by a contact and by the end of a forward-join walk, so the newcomer's
    view is symmetric with theirs. A contact also hands the newcomer a sample of
    its views (`nodes`) to seed the newcomer's passive view.
    """

    nodes: tuple[NodeSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class NeighborRequest:
    """Ask the receiver to put the sender in its active view."""

    priority: Priority


@dataclass(frozen=True, slots=True)
class NeighborReply:
    """Answer to a `NeighborRequest`: `accepted` means the sender is now active."""

    accepted: bool


@dataclass(frozen=True, slots=True)
class DisconnectNotice:
    """The sender moved the receiver to its passive view.

    `incarnation` is the receiver's incarnation as the sender knew it, so a
    disconnect meant for a previous life of the receiver is ignored.
    """

    incarnation: int


@dataclass(frozen=True, slots=True)
class LeaveNotice:
    """The sender leaves the cluster: forget it and repair at once."""


@dataclass(frozen=True, slots=True)
class PassiveProbe:
    """Is the receiver, an entry of the sender's passive view, still alive and linked?

    No reply unless the receiver's active view is below ``active_min_size``:
    then it asks the sender with a HIGH `NeighborRequest`. A send that fails
    tells the sender the entry is dead (`PeerDown`), which drops it.
    """


@dataclass(frozen=True, slots=True)
class Shuffle:
    """A random walk carrying `origin`'s sample of its views (`nodes`)."""

    origin: NodeSpec
    nodes: tuple[NodeSpec, ...]
    ttl: int


@dataclass(frozen=True, slots=True)
class ShuffleReply:
    """The walk's last node answers `origin` with as many ids as it got."""

    nodes: tuple[NodeSpec, ...]


def check(msg: Any) -> bool:
    """True when `msg`'s scalar fields have the types the handlers rely on.

    Node lists are only bounded here (this runs on every hop of a walk); their
    entries are type-checked one by one where they are merged (`is_spec`).
    """
    kind = type(msg)
    if kind is Shuffle:
        return (
            type(msg.origin) is NodeSpec
            and type(msg.ttl) is int
            and type(msg.nodes) is tuple
            and len(msg.nodes) <= MAX_EXCHANGE
        )
    if kind is ForwardJoin:
        return type(msg.node) is NodeSpec and type(msg.ttl) is int
    if kind is ShuffleReply:
        return type(msg.nodes) is tuple and len(msg.nodes) <= MAX_EXCHANGE
    if kind is NeighborRequest:
        return type(msg.priority) is Priority
    if kind is NeighborReply:
        return type(msg.accepted) is bool
    if kind is DisconnectNotice:
        return type(msg.incarnation) is int
    if kind is NeighborNotice:
        return type(msg.nodes) is tuple and len(msg.nodes) <= MAX_EXCHANGE
    return kind is JoinRequest or kind is LeaveNotice or kind is PassiveProbe

"""What actors receive from the runtime: `Down`, `Exit`, `NodeUp`, `NodeDown`, and friends.

These are frozen, slotted dataclasses (STYLE.md habit 3) delivered to
mailboxes or to `GenServer.handle_info`, so tests and users compare them with
``==`` and match them with ``receive(match=Down)``.

`Ref` names one monitor, call or timer; it carries the node and incarnation
that made it, so a ref from a restarted node's previous life never collides
with a new one. `From` is the caller handle a `GenServer.handle_call` gets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from partisan.identity import Pid

__all__ = [
    "Call",
    "Cast",
    "Crashed",
    "Down",
    "Exit",
    "From",
    "NoReply",
    "NodeDown",
    "NodeUp",
    "Ref",
    "make_ref",
]

_ref_counter = itertools.count(1)


class Ref(tuple[str, int, int]):
    """A unique reference (Erlang's ``make_ref()``), made on `node` in `incarnation`.

    A tuple subclass, not a dataclass: refs key the runtime's monitor table
    on every call, and tuple hashing and equality run in C (a dataclass's
    generated ``__hash__`` was the largest single cost of a local call).
    """

    __slots__ = ()

    def __new__(cls, node: str, incarnation: int, id: int) -> Ref:
        return tuple.__new__(cls, (node, incarnation, id))

    @property
    def node(self) -> str:
        return self[0]

    @property
    def incarnation(self) -> int:
        return self[1]

    @property
    def id(self) -> int:
        return self[2]

    def __repr__(self) -> str:
        return f"<Ref {self[0]}:{self[1]}:{self[2]}>"

    def __reduce__(self) -> tuple[type[Ref], tuple[str, int, int]]:
        return (Ref, (self[0], self[1], self[2]))


def make_ref(node: str, incarnation: int) -> Ref:
    """A process-wide unique `Ref` for `node`."""
    return Ref(node, incarnation, next(_ref_counter))


@dataclass(frozen=True, slots=True)
class Crashed:
    """The exit reason of an actor that raised: the exception's type name, message, traceback."""

    type: str
    message: str
    traceback_text: str = ""

    def __str__(self) -> str:
        return f"Crashed({self.type}: {self.message})"

    def __repr__(self) -> str:
        return f"Crashed(type={self.type!r}, message={self.message!r})"


@dataclass(frozen=True, slots=True)
class Down:
    """A monitored actor (or name) is gone.

    `reason` is ``"normal"``, ``"noproc"`` (it did not exist, or was of an old
    incarnation), ``"noconnection"`` (its node was lost), ``"killed"``, a
    custom reason given to `exit`, or `Crashed`. `pid` is the monitored Pid,
    or ``(name, node)`` when a name was monitored.
    """

    ref: Ref
    pid: Any
    reason: Any


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit signal from a linked actor (or `exit(pid, reason)`), delivered when trapping exits."""

    pid: Pid
    reason: Any


@dataclass(frozen=True, slots=True)
class NodeUp:
    """A connection to `node` came up (delivered to `monitor_node` subscribers)."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeDown:
    """`node` was lost: ``connection_closed``, ``heartbeat_timeout``, ``left``, ``restarted``.

    A `monitor_node` on a node that is not connected gives ``noconnection`` at once.
    """

    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class From:
    """Who is waiting for a `call` reply: pass it to `reply` / `GenServer.reply`."""

    pid: Pid
    ref: Ref


@dataclass(frozen=True, slots=True)
class Call:
    """A synchronous request in a mailbox; answer it with ``reply(msg.caller, value)``."""

    caller: From
    request: Any


@dataclass(frozen=True, slots=True)
class Cast:
    """An asynchronous request sent by `cast`; a GenServer hands `request` to `handle_cast`."""

    request: Any


class _NoReplyType:
    """The type of `NoReply`: returned from `handle_call` to defer the reply."""

    _instance: _NoReplyType | None = None

    def __new__(cls) -> _NoReplyType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NoReply"

    def __reduce__(self) -> str:
        return "NoReply"


#: Return this from `GenServer.handle_call` to answer later with `self.reply(caller, value)`.
NoReply = _NoReplyType()
"""Return this from `handle_call` to reply later with `reply(caller, value)`."""

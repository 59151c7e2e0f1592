"""The vocabulary of StateMachine (gen_statem): event types, actions, transitions, effects.

All are frozen dataclasses or enum members, so callbacks return transitions
as data and tests compare them with ``==``; see `state_machine_engine` for
what the engine does with them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAST",
    "ENTER",
    "INFO",
    "INTERNAL",
    "POSTPONE",
    "STATE_TIMEOUT",
    "TIMEOUT",
    "Action",
    "Call",
    "CancelTimeout",
    "CancelTimer",
    "Effect",
    "EventKind",
    "EventType",
    "KeepState",
    "NamedTimeout",
    "NextEvent",
    "NextState",
    "Postpone",
    "RepeatState",
    "Reply",
    "SetEventTimeout",
    "SetStateTimeout",
    "SetTimeout",
    "StartTimer",
    "StateMachineError",
    "Stop",
    "Stopped",
    "Transition",
]


class StateMachineError(Exception):
    """A callback returned something the engine cannot carry out (a bug in the machine)."""


# ------------------------------------------------------------------ event types


class EventKind(enum.Enum):
    """The event types that carry no data."""

    CAST = "cast"
    INFO = "info"
    INTERNAL = "internal"
    TIMEOUT = "timeout"  # the event timeout fired
    STATE_TIMEOUT = "state_timeout"
    ENTER = "enter"  # the state-enter call; its content is the old state


CAST = EventKind.CAST
INFO = EventKind.INFO
INTERNAL = EventKind.INTERNAL
TIMEOUT = EventKind.TIMEOUT
STATE_TIMEOUT = EventKind.STATE_TIMEOUT
ENTER = EventKind.ENTER


@dataclass(frozen=True, slots=True)
class Call:
    """Event type of a `call`: reply to `caller` with the `Reply` action."""

    caller: Any


@dataclass(frozen=True, slots=True)
class NamedTimeout:
    """Event type of a generic timeout set with ``SetTimeout(name, ...)``."""

    name: Any


EventType = EventKind | Call | NamedTimeout


# --------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer a call (also an effect: the driver delivers it)."""

    caller: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Postpone:
    """Keep the current event and retry it after the next state change."""


POSTPONE = Postpone()


@dataclass(frozen=True, slots=True)
class NextEvent:
    """Insert an event to be handled before any queued or new one."""

    type: EventType
    content: Any = None


@dataclass(frozen=True, slots=True)
class SetEventTimeout:
    """Fire a `TIMEOUT` event after `after` s unless some event arrives first; None cancels."""

    after: float | None
    content: Any = None


@dataclass(frozen=True, slots=True)
class SetStateTimeout:
    """Fire a `STATE_TIMEOUT` after `after` s unless the state changes first; None cancels."""

    after: float | None
    content: Any = None


@dataclass(frozen=True, slots=True)
class SetTimeout:
    """Start (or replace) generic timeout `name`; fires ``NamedTimeout(name)``; None cancels."""

    name: Any
    after: float | None
    content: Any = None


@dataclass(frozen=True, slots=True)
class CancelTimeout:
    """Cancel generic timeout `name` (or `TIMEOUT` / `STATE_TIMEOUT`)."""

    name: Any


Action = (
    Reply | Postpone | NextEvent | SetEventTimeout | SetStateTimeout | SetTimeout | CancelTimeout
)


# ------------------------------------------------------------------ transitions


def _actions(actions: Iterable[Action] | Action) -> tuple[Action, ...]:
    if isinstance(actions, (Reply, Postpone, NextEvent, SetEventTimeout, SetStateTimeout)):
        return (actions,)
    if isinstance(actions, (SetTimeout, CancelTimeout)):
        return (actions,)
    return tuple(actions)


@dataclass(frozen=True, slots=True, init=False)
class NextState:
    """Go to `state` (a change only if it differs from the current one), then run `actions`."""

    state: Any
    actions: tuple[Action, ...]

    def __init__(self, state: Any, *actions: Action | Iterable[Action]) -> None:
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "actions", tuple(a for x in actions for a in _actions(x)))


@dataclass(frozen=True, slots=True, init=False)
class KeepState:
    """Stay in the current state, run `actions`."""

    actions: tuple[Action, ...]

    def __init__(self, *actions: Action | Iterable[Action]) -> None:
        object.__setattr__(self, "actions", tuple(a for x in actions for a in _actions(x)))


@dataclass(frozen=True, slots=True, init=False)
class RepeatState:
    """Stay, but run the state-enter call again (postponed events are not retried)."""

    actions: tuple[Action, ...]

    def __init__(self, *actions: Action | Iterable[Action]) -> None:
        object.__setattr__(self, "actions", tuple(a for x in actions for a in _actions(x)))


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the machine with `reason` after sending `replies` (OTP's stop_and_reply)."""

    reason: Any = "normal"
    replies: tuple[Reply, ...] = ()


Transition = NextState | KeepState | RepeatState | Stop | None


# --------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Driver: after `after` s, call ``engine.fire(token)``."""

    token: int
    after: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Driver: the timer `token` is no longer wanted (a late fire is harmless)."""

    token: int


@dataclass(frozen=True, slots=True)
class Stopped:
    """The machine stopped with `reason`; the driver runs ``terminate`` and exits."""

    reason: Any


Effect = Reply | StartTimer | CancelTimer | Stopped

"""Typed errors.

Two families (STYLE.md habit 4): errors raised at the call site for our own
misuse, and `ProtocolError` for a peer's bad input, which the transport counts,
logs and drops without ever letting it crash a node.
"""

from __future__ import annotations

__all__ = [
    "AlreadyStarted",
    "BindError",
    "CallExit",
    "CallTimeout",
    "ClusterError",
    "ConfigError",
    "DeliveryError",
    "EncodeError",
    "JoinRefused",
    "NotConnected",
    "Overloaded",
    "PartisanError",
    "ProtocolError",
    "ReceiveTimeout",
    "SpawnError",
    "UserCodeError",
]


class PartisanError(Exception):
    """Base class of every error this library raises on purpose."""


class CallTimeout(PartisanError):
    """A `call`, `ping`, `join` or `spawn` got no answer within its timeout."""


def describe_target(target: object) -> str:
    """How an error names an actor: a Pid, ``'db'``, or ``'db' on node 'b'``."""
    if isinstance(target, tuple) and len(target) == 2:
        return f"{target[0]!r} on node {target[1]!r}"
    return repr(target)


class CallExit(PartisanError):
    """The callee is known dead (or never existed) before it replied.

    `reason` is the Erlang-style exit reason: ``"noproc"``, ``"noconnection"``,
    ``"normal"``, ``"calling_self"``, a custom reason or a `Crashed` record.
    `target` is what was called, when known (it is named in the message).
    """

    def __init__(self, reason: object, target: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.target = target

    def __str__(self) -> str:
        if self.target is None:
            return f"call exited: {self.reason!r}"
        return f"call to {describe_target(self.target)} exited: {self.reason!r}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason, self.target))


class NotConnected(PartisanError):
    """There is no route to the destination node."""


class Overloaded(PartisanError):
    """The peer's outgoing byte budget (`send_buffer_bytes`) is used up."""


class DeliveryError(PartisanError):
    """An acked message will never be acknowledged; `reason` says why.

    ``"restarted"`` or ``"left"`` (the receiving incarnation ended before it
    acknowledged), ``"timeout"`` (no acknowledgement progress within
    `ack_timeout`), ``"closed"`` (this node stopped first).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"acked message not delivered: {reason}")
        self.reason = reason


class JoinRefused(PartisanError):
    """The contact refused the handshake; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SpawnError(PartisanError):
    """Code could not be started (possibly remotely).

    The message is one line; the remote traceback, when there is one, is
    `remote_traceback` and is shown as a note under the local traceback.
    """

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback
        if remote_traceback:
            self.add_note(f"--- remote traceback ---\n{remote_traceback.rstrip()}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.remote_traceback))


class AlreadyStarted(PartisanError, ValueError):
    """A name is already registered: OTP's ``{error, {already_started, Pid}}``.

    `pid` is the actor holding `name`. Raised by ``start(..., name=)``,
    ``spawn(..., name=)`` and `register` (a `ValueError` too, for code that
    catches misuse).
    """

    def __init__(self, name: str, pid: object) -> None:
        super().__init__(f"name {name!r} is already registered to {pid!r}")
        self.name = name
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, self.pid))


class EncodeError(PartisanError, TypeError):
    """A message cannot be serialized (neither pickle nor dill): the message names what."""


class ReceiveTimeout(PartisanError):
    """`receive(timeout=...)` found no matching message in time."""


class ConfigError(PartisanError, ValueError):
    """A configuration value is invalid; the message names field, value and what is allowed."""


class BindError(PartisanError):
    """The node cannot listen on its address (port in use, address not local, ...).

    `errno` is the operating system's error number (e.g. ``errno.EADDRINUSE``).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class UserCodeError(PartisanError):
    """The application's code named on the command line (``--import``, ``--run``) cannot load."""


class ProtocolError(PartisanError):
    """A peer sent bytes that do not decode; counted and dropped, never fatal."""


class ClusterError(PartisanError):
    """A ``partisan cluster`` verb cannot proceed: no cluster in DIR, one already running, an unknown node."""

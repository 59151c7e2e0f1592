"""Typed errors.

Two families (STYLE.md habit 4): errors raised at the call site for our own
misuse, and `ProtocolError` for a peer's bad input, which the transport counts,
logs and drops without ever letting it crash a node.
"""

from __future__ import annotations

__all__ = [
    "BindError",
    "CallExit",
    "CallTimeout",
    "ClusterError",
    "ConfigError",
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


class CallExit(PartisanError):
    """The callee is known dead (or never existed) before it replied.

    `reason` is the Erlang-style exit reason: ``"noproc"``, ``"noconnection"``,
    ``"normal"``, ``"calling_self"``, a custom reason or a `Crashed` record.
    """

    def __init__(self, reason: object) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"call exited: {self.reason!r}"


class NotConnected(PartisanError):
    """There is no route to the destination node."""


class Overloaded(PartisanError):
    """The peer's outgoing byte budget (`send_buffer_bytes`) is used up."""


class JoinRefused(PartisanError):
    """The contact refused the handshake; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SpawnError(PartisanError):
    """Code could not be started (possibly remotely); carries the remote traceback."""

    def __init__(self, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        base = super().__str__()
        if self.remote_traceback:
            return f"{base}\n--- remote traceback ---\n{self.remote_traceback}"
        return base


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

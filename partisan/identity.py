"""Identities shared by every layer: `NodeSpec` (a node incarnation) and `Pid`.

This module is a leaf: it imports nothing from the rest of the package, so the
pure membership code, the transport and the actor runtime can all use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["NodeSpec", "Pid", "parse_address"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid node name {name!r}: use 1-128 letters, digits, '_', '-' or '.'")


def parse_address(text: str) -> tuple[str | None, str, int]:
    """Split ``name@host:port`` or ``host:port`` into (name or None, host, port)."""
    name: str | None = None
    rest = text
    if "@" in text:
        name, rest = text.split("@", 1)
        _check_name(name)
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise ValueError(f"invalid address {text!r}: expected name@host:port or host:port")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid port in {text!r}: {port_text!r} is not an integer") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port in {text!r}: {port} is outside 0..65535")
    return name, host, port


@dataclass(frozen=True, slots=True, order=True)
class NodeSpec:
    """One incarnation of a node: how to reach it and how to authenticate it.

    `host`/`port` are the *advertised* address (what peers dial). The
    incarnation is ``time.time_ns()`` at node start and only grows, so a
    restarted node under the same name is recognisably newer; membership
    protocols use it as their epoch. Equality includes the incarnation.
    """

    name: str
    host: str
    port: int
    public_key: str | None = field(default=None, compare=False)
    role: str | None = field(default=None, compare=False)
    incarnation: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def address(self) -> str:
        """The ``host:port`` peers dial (IPv6 hosts are bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The ZeroMQ endpoint for this node's ROUTER."""
        return f"tcp://{self.address}"

    def __str__(self) -> str:
        return f"{self.name}@{self.address}"

    @classmethod
    def parse(cls, text: str, **extra: object) -> NodeSpec:
        """Parse ``name@host:port``; `extra` fills public_key, role, incarnation."""
        name, host, port = parse_address(text)
        if name is None:
            raise ValueError(f"invalid node spec {text!r}: expected name@host:port")
        return cls(name, host, port, **extra)  # type: ignore[arg-type]  # extra is checked by the dataclass

    def newer_than(self, other: NodeSpec) -> bool:
        """True when this is a later incarnation of the same node name."""
        return self.name == other.name and self.incarnation > other.incarnation


@dataclass(frozen=True, slots=True, order=True)
class Pid:
    """An actor's address: the node name, that node's incarnation and a local id.

    Carrying the incarnation means a Pid of a restarted node's previous life
    can be told apart and its messages dropped (Partisan's remote refs cannot).
    """

    node: str
    incarnation: int
    id: int

    def __str__(self) -> str:
        return f"partisan:pid:{self.node}:{self.incarnation}:{self.id}"

    def __repr__(self) -> str:
        return f"<Pid {self.node}:{self.incarnation}:{self.id}>"

    def __reduce__(self) -> tuple[type[Pid], tuple[str, int, int]]:
        # Pids ride in many messages: this pickles in half the time of the
        # slotted dataclass's default (which calls dataclasses.fields()).
        return (Pid, (self.node, self.incarnation, self.id))

    @classmethod
    def parse(cls, text: str) -> Pid:
        """Invert `str(pid)`."""
        if not text.startswith("partisan:pid:"):
            raise ValueError(f"invalid pid {text!r}: must start with 'partisan:pid:'")
        parts = text[len("partisan:pid:") :].rsplit(":", 2)
        if len(parts) != 3:
            raise ValueError(f"invalid pid {text!r}: expected partisan:pid:<node>:<inc>:<id>")
        node, inc, ident = parts
        _check_name(node)
        try:
            return cls(node, int(inc), int(ident))
        except ValueError:
            raise ValueError(f"invalid pid {text!r}: incarnation and id must be integers") from None

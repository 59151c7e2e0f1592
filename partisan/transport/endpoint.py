"""This node's end of every link: who we are, the loop and sockets, and whether we are leaving.

Every part of `Links` reads this; only `Links` (the facade) writes it: the
identity when it is built, the loop, ZeroMQ context, ROUTER, key store and
advertised spec in `start`, `leaving` in `leave`, `closed` in `close`, and
`handler` when the node puts its peer service in front of the runtime. Keeping
these in one small record, rather than in each part, means no part can miss
that the node is closing or that the ROUTER is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from partisan.config import ChannelSpec, Config
from partisan.identity import NodeSpec
from partisan.transport.keys import KeyStore

if TYPE_CHECKING:
    import zmq

    from partisan.transport.links import LinkHandler

__all__ = ["Endpoint"]


class Endpoint:
    """The shared, facade-written facts of one node's links (see the module docstring)."""

    def __init__(self, config: Config, *, incarnation: int, handler: LinkHandler) -> None:
        self.config = config
        self.name = config.name
        self.incarnation = incarnation
        self.hidden = config.hidden
        self.channels: dict[str, ChannelSpec] = {c.name: c for c in config.all_channels()}
        #: Told about messages, peers up and down; may be replaced after `start`.
        self.handler = handler
        self.loop: asyncio.AbstractEventLoop | None = None
        self.context: zmq.Context[Any] | None = None
        self.router: zmq.Socket[bytes] | None = None
        self.keystore: KeyStore | None = None
        self.spec: NodeSpec | None = None
        #: `Links.leave` ran: new sessions are refused, live ones finish.
        self.leaving = False
        #: `Links.close` ran (or is running): nothing new is sent or scheduled.
        self.closed = False
        #: Fault injection's refusal hook, `(peer name, hidden) -> reason | None`
        #: (partisan/delivery/faults.py); None, the usual case, admits everyone.
        self.admit: Callable[[str, bool], str | None] | None = None

    def running(self) -> asyncio.AbstractEventLoop:
        """The loop `start` ran on; RuntimeError before that."""
        if self.loop is None:
            raise RuntimeError("Links.start() has not run")
        return self.loop

    def our_spec(self) -> NodeSpec:
        """Our advertised spec; RuntimeError before `start`."""
        if self.spec is None:
            raise RuntimeError("Links.start() has not run")
        return self.spec

"""An in-memory stand-in for `partisan.transport.links.Links`: several nodes in one process.

Unit tests of the distributed actor semantics (remote monitors, links, calls,
node loss, restarts) run in milliseconds on one event loop with it, with no
sockets. It implements the same `Links` API and `LinkHandler` callbacks, and
it pushes every payload through the real payload codec, so what cannot
cross a real wire cannot cross this one either. Delivery is asynchronous
(``call_soon`` on the receiver's loop, thread-safe when nodes run on
different threads as with `partisan.blocking`) and FIFO, like a lane.

`MemoryLinks.crash()` simulates kill -9 (peers get ``connection_closed``);
`close()` and `disconnect()` say BYE (peers get ``left``).

Usage::

    net = MemoryNetwork()
    async with Node("a", links_factory=net.factory) as a, Node("b", links_factory=net.factory) as b:
        await a.join("b")
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from partisan.config import Config
from partisan.errors import CallTimeout, JoinRefused, NotConnected
from partisan.identity import NodeSpec
from partisan.transport import codec

__all__ = ["MemoryLinks", "MemoryNetwork"]


class MemoryNetwork:
    """The "wire" shared by the `MemoryLinks` of one test."""

    def __init__(self) -> None:
        self.nodes: dict[str, MemoryLinks] = {}
        self._ports = itertools.count(10_000)
        self.delivered = 0

    def factory(self, config: Config, *, incarnation: int, handler: Any) -> MemoryLinks:
        """Build a `MemoryLinks` (pass as ``Node(links_factory=net.factory)``)."""
        return MemoryLinks(self, config, incarnation=incarnation, handler=handler)


class MemoryLinks:
    """One node's endpoint on a `MemoryNetwork`."""

    def __init__(
        self, network: MemoryNetwork, config: Config, *, incarnation: int, handler: Any
    ) -> None:
        self.network = network
        self.config = config
        self.incarnation = incarnation
        self.handler = handler
        self.sessions: dict[str, MemoryLinks] = {}
        self.spec = NodeSpec(config.name, "memory", 0, incarnation=incarnation)
        self.sent = 0
        self.data_peers: set[str] = set()  # peers sent more than membership this session
        self.closed = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def _on_loop(self, fn: Any, *args: Any) -> None:
        """Run `fn(*args)` soon on this endpoint's loop (nodes may run on different threads)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(fn, *args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    async def start(self) -> NodeSpec:
        self.loop = asyncio.get_running_loop()
        self.spec = NodeSpec(
            self.config.name, "memory", next(self.network._ports), incarnation=self.incarnation
        )
        old = self.network.nodes.get(self.config.name)
        if old is not None and not old.closed:
            old.crash()  # a restarted node replaces its previous incarnation
        self.network.nodes[self.config.name] = self
        return self.spec

    async def connect(self, target: NodeSpec | str, *, timeout: float | None = None) -> NodeSpec:
        name = target.name if isinstance(target, NodeSpec) else target.split("@", 1)[0]
        if name == self.spec.name:
            raise JoinRefused("self-join")
        other = self.network.nodes.get(name)
        if other is None or other.closed:
            raise CallTimeout(f"no answer from {target} (memory network)")
        if name in self.sessions:
            return other.spec
        self.sessions[name] = other
        other.sessions[self.spec.name] = self
        self._on_loop(self.handler.on_peer_up, other.spec, other.config.hidden)
        other._on_loop(other.handler.on_peer_up, self.spec, self.config.hidden)
        await asyncio.sleep(0)  # let both sides see the session, as a HELLO round trip would
        return other.spec

    async def open_all_lanes(self, peer: str, *, timeout: float | None = None) -> None:
        if peer not in self.sessions:
            raise NotConnected(f"no session with {peer!r}")

    def send(
        self,
        peer: str,
        channel: str,
        dest: str,
        payload: object,
        *,
        partition_key: object = None,
        control: bool = False,
    ) -> int:
        other = self.sessions.get(peer)
        if other is None:
            raise NotConnected(f"no session with {peer!r}")
        flags, frames = codec.encode_payload(payload)
        data = (flags, [bytes(f) for f in frames])
        self.sent += 1
        if channel != "membership":
            self.data_peers.add(peer)
        other._on_loop(other._deliver, self, channel, dest, data)
        return sum(len(f) for f in data[1])

    async def send_wait(
        self,
        peer: str,
        channel: str,
        dest: str,
        payload: object,
        *,
        partition_key: object = None,
        timeout: float | None = None,
    ) -> None:
        self.send(peer, channel, dest, payload, partition_key=partition_key)

    def _deliver(self, sender: MemoryLinks, channel: str, dest: str, data: Any) -> None:
        if self.closed or self.sessions.get(sender.spec.name) is not sender:
            return  # the session ended while the frame was in flight
        payload = codec.decode_payload(data[0], data[1])
        self.network.delivered += 1
        self.handler.on_message(sender.spec, channel, dest, payload)

    def disconnect(self, peer: str, *, reason: str = "left") -> None:
        """Close the session with `peer` (it sees `reason`); no callback for us."""
        other = self.sessions.pop(peer, None)
        self.data_peers.discard(peer)
        if other is not None and other.sessions.get(self.spec.name) is self:
            del other.sessions[self.spec.name]
            other.data_peers.discard(self.spec.name)
            other._on_loop(other.handler.on_peer_down, self.spec, reason)

    def crash(self, reason: str = "connection_closed") -> None:
        """Simulate kill -9: every peer sees the session drop with `reason`."""
        self.closed = True
        self.data_peers.clear()
        for name, other in list(self.sessions.items()):
            if other.sessions.get(self.spec.name) is self:
                del other.sessions[self.spec.name]
                other.data_peers.discard(self.spec.name)
                other._on_loop(other.handler.on_peer_down, self.spec, reason)
            del self.sessions[name]
            self.handler.on_peer_down(other.spec, reason)  # the dead side loses them too

    def is_connected(self, peer: str) -> bool:
        return peer in self.sessions

    def carries_data(self, peer: str) -> bool:
        """As `Links.carries_data`: something other than membership was sent to `peer`."""
        return peer in self.data_peers

    def peers(self) -> list[NodeSpec]:
        return [other.spec for other in self.sessions.values()]

    def statistics(self) -> dict[str, Any]:
        return {"peers": len(self.sessions), "sent": self.sent}

    async def close(self, *, flush_timeout: float = 0.0) -> None:
        for peer in list(self.sessions):
            self.disconnect(peer)
        self.closed = True
        if self.network.nodes.get(self.spec.name) is self:
            del self.network.nodes[self.spec.name]

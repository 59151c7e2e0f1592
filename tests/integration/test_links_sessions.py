"""Session state across joins and a graceful leave, with `Links` in one process (real CURVE sockets).

- A connect to a name's new address replaces a stale pending dial of that
  name (after a refused and a timed-out join, the right address works).
- `Links.leave()` (a graceful stop's first step) refuses new sessions and
  keeps the live ones delivering until `close` says BYE (``left``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.errors import CallTimeout, JoinRefused
from partisan.identity import NodeSpec
from partisan.testing import async_wait_until, handshake_deadline
from partisan.transport.links import Links

SETTINGS: dict[str, Any] = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, object]] = []
        self.downs: list[tuple[str, str]] = []

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        self.messages.append((sender.name, payload))

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        pass

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        self.downs.append((peer.name, reason))


@asynccontextmanager
async def started(keys: Path, *names: str, **settings: Any) -> AsyncIterator[list[Links]]:
    links = []
    try:
        for name in names:
            config = Config.load(env={}, name=name, key_dir=str(keys), **{**SETTINGS, **settings})
            link = Links(config, incarnation=time.time_ns(), handler=Recorder())
            await link.start()
            links.append(link)
        yield links
    finally:
        for link in reversed(links):
            await link.close(flush_timeout=1.0)


@pytest.mark.timeout(30)
def test_a_join_to_a_new_address_replaces_a_stale_pending_dial_of_that_name(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("t", "b", "c")

    async def main() -> None:
        async with started(keys, "t", "b", "c", handshake_timeout=5.0) as (t, b, c):
            # Refused: b's address does not hold c's key.
            with pytest.raises(JoinRefused):
                await t.connect(f"c@{b.spec.address}", timeout=2.0)
            # Timed out: a port that accepts TCP and never speaks ZMTP. t's
            # dial of "c" there stays pending until its handshake deadline.
            with socket.socket() as silent:
                silent.bind(("127.0.0.1", 0))
                silent.listen()
                port = silent.getsockname()[1]
                with pytest.raises(CallTimeout):
                    await t.connect(f"c@127.0.0.1:{port}", timeout=0.3)
                # The right address must be dialled, not the pending old one.
                spec = await t.connect(c.spec, timeout=handshake_deadline(t.config) - 1.0)
            assert (spec.name, spec.port) == ("c", c.spec.port)
            assert t.is_connected("c")
            t.send("c", "default", "x", "hello")
            received = c.handler
            assert isinstance(received, Recorder)
            await async_wait_until(lambda: received.messages == [("t", "hello")], 2.0)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_leave_refuses_new_sessions_and_keeps_live_links_until_close(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b", "c")

    async def main() -> None:
        async with started(keys, "a", "b", "c") as (a, b, c):
            await b.connect(a.spec)
            a.leave()
            with pytest.raises(JoinRefused, match="a is leaving"):
                await c.connect(a.spec, timeout=2.0)
            with pytest.raises(JoinRefused, match="a is leaving"):
                await a.connect(c.spec, timeout=2.0)
            # The live link still carries what the leaving node sends, in order,
            # and only then the BYE: b sees every message before "left".
            for i in range(100):
                a.send("b", "default", "x", i)
            await a.close(flush_timeout=2.0)
            received = b.handler
            assert isinstance(received, Recorder)
            await async_wait_until(lambda: received.downs, 2.0)
            assert [m for _, m in received.messages] == list(range(100))
            assert received.downs == [("a", "left")]

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_failed_connection_waits_one_heartbeat_interval_for_the_leaving_peers_bye(
    key_dir: Callable[..., Path],
) -> None:
    """A stopping peer's BYE can trail the close of its other connections.

    Our monitor may report a lane of the link failing before libzmq has read
    the BYE from another connection: the link is reported down only if no BYE
    came within one heartbeat interval, so a graceful stop reads as ``left``.
    """
    keys = key_dir("a", "b", "c")

    async def main() -> None:
        async with started(keys, "a", "b", "c", heartbeat_interval=0.2) as (a, b, c):
            await b.connect(a.spec)
            await c.connect(a.spec)
            await async_wait_until(lambda: a.is_connected("b") and a.is_connected("c"), 2.0)
            seen = a.handler
            assert isinstance(seen, Recorder)
            # A lane to b fails first (as b's ROUTER closing would make it), then b's BYE.
            a._detection.link_lost(a._table.peers["b"], "connection_closed")
            assert a.is_connected("b")  # not yet reported: waiting for a BYE
            await b.close(flush_timeout=1.0)
            await async_wait_until(lambda: seen.downs, 2.0)
            assert seen.downs == [("b", "left")]
            # Without a BYE the failure is reported, with the reason seen at the time.
            a._detection.link_lost(a._table.peers["c"], "connection_closed")
            await async_wait_until(lambda: len(seen.downs) == 2, 2.0)
            assert seen.downs[1] == ("c", "connection_closed")

    asyncio.run(main())

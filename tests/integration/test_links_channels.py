"""Channel semantics with two `Links` in one process (real CURVE sockets on 127.0.0.1).

Monotonic channels keep only the newest queued message per destination, and
`channel_fallback` carries a channel on the default lane while its own lanes
connect, without reordering it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.testing import async_wait_until
from partisan.transport.links import Links


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, Any]] = []

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        self.messages.append((channel, dest, payload))

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        pass

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        pass


async def _pair(keys: Path, **settings: Any) -> tuple[Links, Links, Recorder]:
    received = Recorder()
    a = Links(
        Config.load(env={}, name="a", key_dir=str(keys), **settings),
        incarnation=time.time_ns(),
        handler=Recorder(),
    )
    b = Links(
        Config.load(env={}, name="b", key_dir=str(keys), **settings),
        incarnation=time.time_ns(),
        handler=received,
    )
    await a.start()
    await b.start()
    return a, b, received


@pytest.mark.timeout(30)
def test_monotonic_channel_keeps_only_the_newest_queued_message_per_destination(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> list[tuple[str, str, Any]]:
        a, b, received = await _pair(keys, channels="state:1:monotonic", channel_fallback=False)
        try:
            joining = asyncio.ensure_future(a.connect(str(b.spec)))
            await asyncio.sleep(0)  # the session exists and is handshaking  # ok-sleep
            for i in range(100):  # queued while the lane connects: each replaces the last
                a.send("b", "state", "x", ("x", i))
                a.send("b", "state", "y", ("y", i))
            a.send("b", "default", "z", "after")  # a non-monotonic marker behind them
            await joining
            await async_wait_until(lambda: len(received.messages) >= 3, 5)
            return received.messages
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    messages = asyncio.run(main())
    state = [m for m in messages if m[0] == "state"]
    assert sorted(p for _, _, p in state) == [("x", 99), ("y", 99)]
    assert ("default", "z", "after") in messages


@pytest.mark.timeout(30)
def test_channel_fallback_rides_the_default_lane_without_reordering(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> tuple[list[Any], Any]:
        a, b, received = await _pair(keys, channels="data:4")
        try:
            await a.connect(str(b.spec))
            for i in range(2000):  # the data lanes are not connected yet
                a.send("b", "data", "sink", i, partition_key="k")
                if i == 999:
                    await async_wait_until(lambda: len(received.messages) == 1000, 5)
                    await a.open_all_lanes("b")
                    # Once everything sent is credited, the channel may leave
                    # the default lane without overtaking anything.
                    await async_wait_until(
                        lambda: a.statistics().peer("b").outstanding_bytes == 0,  # type: ignore[union-attr]
                        5,
                    )
            await async_wait_until(lambda: len(received.messages) == 2000, 10)
            return [p for _, _, p in received.messages], a.statistics().peer("b")
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    payloads, stats = asyncio.run(main())
    assert payloads == list(range(2000))
    assert stats is not None
    data = stats.channel("data")
    assert data.messages_out == 2000 and data.lanes_open == 4

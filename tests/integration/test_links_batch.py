"""Coalescing with two `Links` in one process (real CURVE sockets on 127.0.0.1).

A burst sent in one loop turn leaves as BATCH frames and arrives complete, in
order and with every byte accounted; a malformed BATCH from a live session is
counted and dropped while the link keeps serving.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.testing import async_wait_until
from partisan.transport import receive
from partisan.transport.batch import BATCH_PREFIX, split_batch
from partisan.transport.links import Links
from tests.integration.test_links_channels import Recorder, _pair


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The record count of every BATCH frame the receive path splits, in order."""
    sizes: list[int] = []

    def counting(blob: bytes) -> list[bytes]:
        records = split_batch(blob)
        sizes.append(len(records))
        return records

    monkeypatch.setattr(receive, "split_batch", counting)
    return sizes


@pytest.mark.timeout(30)
def test_a_burst_leaves_in_batches_and_arrives_in_order_with_every_byte_accounted(
    key_dir: Callable[..., Path], batches: list[int]
) -> None:
    keys = key_dir("a", "b")

    async def main() -> tuple[list[Any], Any, Any]:
        a, b, received = await _pair(keys)
        try:
            await a.connect(str(b.spec))
            for i in range(5000):
                a.send("b", "default", "sink", ("burst", i))
                if i % 1000 == 999:
                    await asyncio.sleep(0)  # a loop turn: what it queued leaves  # ok-sleep
            await async_wait_until(lambda: len(received.messages) == 5000, 10)
            await async_wait_until(
                lambda: a.statistics().peer("b").outstanding_bytes == 0,  # type: ignore[union-attr]
                5,
            )
            return [m[2] for m in received.messages], a.statistics(), b.statistics()
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    payloads, out, into = asyncio.run(main())
    assert payloads == [("burst", i) for i in range(5000)]
    assert batches and sum(batches) > 4000  # most of the burst rode BATCH frames
    sent = out.peer("b").channel("default")
    got = into.peer("a").channel("default")
    assert sent.messages_out == got.messages_in == 5000
    assert sent.bytes_out == got.bytes_in
    assert not into.rejected


@pytest.mark.timeout(30)
def test_a_burst_to_a_hidden_peer_rides_the_router_in_batches_and_in_order(
    key_dir: Callable[..., Path], batches: list[int]
) -> None:
    keys = key_dir("v", "h")

    async def main() -> list[Any]:
        received = Recorder()
        v = Links(
            Config.load(env={}, name="v", key_dir=str(keys)), incarnation=1, handler=Recorder()
        )
        h = Links(
            Config.load(env={}, name="h", key_dir=str(keys), hidden=True),
            incarnation=2,
            handler=received,
        )
        await v.start()
        await h.start()
        try:
            await h.connect(str(v.spec))  # v never dials a hidden node: it answers on its ROUTER
            await async_wait_until(lambda: v.is_connected("h"), 5)
            for i in range(3000):
                v.send("h", "default", "sink", i)
            await async_wait_until(lambda: len(received.messages) == 3000, 10)
            return [m[2] for m in received.messages]
        finally:
            await h.close(flush_timeout=1.0)
            await v.close(flush_timeout=1.0)

    assert asyncio.run(main()) == list(range(3000))
    assert batches and sum(batches) > 2000


@pytest.mark.timeout(30)
def test_a_malformed_batch_is_counted_and_dropped_and_the_link_keeps_serving(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")
    bad = [
        BATCH_PREFIX,  # no record
        BATCH_PREFIX + struct.pack("!I", 1000) + b"short",  # a length that lies
        BATCH_PREFIX + struct.pack("!I", 30) + b"x" * 30,  # a record that is not DATA
    ]

    async def main() -> tuple[list[Any], Any, bool]:
        a, b, received = await _pair(keys)
        try:
            await a.connect(str(b.spec))
            a.send("b", "default", "sink", "before")
            await async_wait_until(lambda: len(received.messages) == 1, 5)
            lane = a._table.get("b").lanes[("default", 0)]  # type: ignore[union-attr]
            for frame in bad:  # on a's real, authenticated DEALER: a live session's bytes
                lane.sock.send(frame)
            await async_wait_until(
                lambda: b.statistics().rejected.get("protocol_error", 0) == len(bad), 5
            )
            a.send("b", "default", "sink", "after")
            await async_wait_until(lambda: len(received.messages) == 2, 5)
            return [m[2] for m in received.messages], b.statistics(), b.is_connected("a")
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    payloads, stats, connected = asyncio.run(main())
    assert payloads == ["before", "after"]
    assert stats.rejected == {"protocol_error": len(bad)}
    assert stats.peer("a").rejects == len(bad)
    assert connected

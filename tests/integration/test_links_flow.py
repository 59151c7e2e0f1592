"""Flow control with two `Links` in one process: fair waiters, per-channel budgets, withheld credit.

The receiving side stands in for a slow actor by holding what it delivers
against its `InboundGauge` (as a mailbox does) and releasing it later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.errors import Overloaded
from partisan.identity import NodeSpec
from partisan.testing import async_wait_until
from partisan.transport.links import Links

BUDGET = 64 * 1024


class SlowReader:
    """A handler that records messages and, for `held_channels`, holds them like a mailbox."""

    def __init__(self, held_channels: tuple[str, ...] = ()) -> None:
        self.links: Links | None = None
        self.held_channels = held_channels
        self.messages: list[tuple[str, str, Any]] = []
        self.held: list[tuple[Any, int]] = []
        self.downs: list[str] = []

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        self.messages.append((channel, dest, payload))
        gauge = self.links.gauge if self.links is not None else None
        if gauge is not None and channel in self.held_channels and gauge.size:
            self.held.append((gauge.account, gauge.size))
            gauge.hold(gauge.account, gauge.size)
            gauge.size = 0

    def read_all(self) -> None:
        assert self.links is not None
        held, self.held = self.held, []
        for account, size in held:
            self.links.gauge.release(account, size)

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        pass

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        self.downs.append(reason)


async def _links(name: str, keys: Path, handler: SlowReader, **settings: Any) -> Links:
    settings = {"send_buffer_bytes": BUDGET, "channels": "data:1", **settings}
    links = Links(
        Config.load(env={}, name=name, key_dir=str(keys), **settings),
        incarnation=time.time_ns(),
        handler=handler,
    )
    handler.links = links
    await links.start()
    return links


def _payloads(reader: SlowReader, channel: str) -> list[Any]:
    return [p for c, _, p in reader.messages if c == channel]


@pytest.mark.timeout(30)
def test_waiting_senders_go_first_come_first_served_and_plain_sends_do_not_overtake(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        ra, rb = SlowReader(), SlowReader()
        a, b = await _links("a", keys, ra), await _links("b", keys, rb)
        try:
            await a.connect(str(b.spec))
            b.pause_receiving()
            a.send("b", "default", "x", ("first", b"." * (BUDGET // 2)))
            # 1 needs most of the budget, 2 and 3 are small: when a little
            # credit comes back, 2 would fit first; it must wait its turn.
            big = asyncio.ensure_future(
                a.send_wait("b", "default", "x", ("w1", b"." * (BUDGET * 3 // 4)), timeout=10)
            )
            await async_wait_until(
                lambda: a.statistics().peers[0].channel("default").waiting_senders == 1, 5
            )
            small = [
                asyncio.ensure_future(a.send_wait("b", "default", "x", (f"w{i}", b"."), timeout=10))
                for i in (2, 3)
            ]
            await async_wait_until(
                lambda: a.statistics().peers[0].channel("default").waiting_senders == 3, 5
            )
            # A tiny plain send would fit in the budget, but three senders wait.
            with pytest.raises(Overloaded, match="3 senders waiting"):
                a.send("b", "default", "x", ("plain", b"."))
            b.resume_receiving()
            await asyncio.wait_for(asyncio.gather(big, *small), 10)
            a.send("b", "default", "x", ("after", b"."))  # nobody waits any more
            await async_wait_until(lambda: len(rb.messages) == 5, 5)
            assert [p[0] for p in _payloads(rb, "default")] == ["first", "w1", "w2", "w3", "after"]
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_full_data_channel_does_not_stop_default_and_credit_returns_once_read(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        ra, rb = SlowReader(), SlowReader(held_channels=("data",))
        a = await _links("a", keys, ra)
        b = await _links("b", keys, rb, inbound_buffer_bytes=2 * BUDGET)
        try:
            await a.connect(str(b.spec))
            chunk = b"d" * 4096
            sent = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until b's bound and then a's budget are full
                try:
                    a.send("b", "data", "bulk", chunk)
                    sent += 1
                except Overloaded:
                    if b.gauge.over:
                        break
                    await asyncio.sleep(0.005)  # ok-sleep: let credit for the first bytes return
            assert b.gauge.over and b.gauge.held > 2 * BUDGET
            # data is stuck (its messages sit unread), but default flows: ten budgets' worth.
            for i in range(160):
                await a.send_wait("b", "default", "svc", ("ping", i, chunk), timeout=5)
            await async_wait_until(lambda: len(_payloads(rb, "default")) == 160, 5)
            with pytest.raises(Overloaded):
                a.send("b", "data", "bulk", chunk)
            rb.read_all()  # the slow actor catches up: credit is released
            await a.send_wait("b", "data", "bulk", chunk, timeout=5)
            await async_wait_until(lambda: len(_payloads(rb, "data")) == sent + 1, 5)
            assert b.statistics().unread_peak <= 2 * BUDGET + BUDGET + 4096 + 64
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_two_full_nodes_never_wait_for_each_others_credit(key_dir: Callable[..., Path]) -> None:
    """Both over their inbound bound, each sending control over budget to the other: no deadlock.

    Credit for held data is withheld on both sides; the control envelopes
    (never refused) push each side's `unread` past a budget for a moment, but
    what decides the control rule is what the peer *read*, which grows as
    both loops read their sockets: default traffic keeps flowing both ways,
    no link goes down, and once the readers catch up every data sender
    completes.
    """
    keys = key_dir("a", "b")

    async def main() -> None:
        ra, rb = SlowReader(held_channels=("data",)), SlowReader(held_channels=("data",))
        a = await _links("a", keys, ra, inbound_buffer_bytes=BUDGET)
        b = await _links("b", keys, rb, inbound_buffer_bytes=BUDGET)
        try:
            await a.connect(str(b.spec))
            await async_wait_until(lambda: b.is_connected("a"), 5)
            chunk = b"c" * 8192
            for src, dst in ((a, "b"), (b, "a")):
                for _ in range(2 * BUDGET // len(chunk)):
                    src.send(dst, "data", "bulk", chunk, control=True)  # over budget, like replies
            await async_wait_until(lambda: a.gauge.over and b.gauge.over, 5)
            # Replies and default traffic in both directions, far over one budget each.
            for i in range(40):
                a.send("b", "default", "r", ("reply", i, chunk), control=True)
                b.send("a", "default", "r", ("reply", i, chunk), control=True)
            waits = [
                src.send_wait(dst, "default", "svc", ("user", i, chunk), timeout=5)
                for i in range(40)
                for src, dst in ((a, "b"), (b, "a"))
            ]
            await asyncio.wait_for(asyncio.gather(*waits), 10)
            data = [
                asyncio.ensure_future(src.send_wait(dst, "data", "bulk", chunk, timeout=10))
                for src, dst in ((a, "b"), (b, "a"))
            ]
            await asyncio.sleep(0.1)  # ok-sleep: give a wrong credit cycle a chance to show
            assert not any(d.done() for d in data)  # still withheld: nothing was read
            ra.read_all()
            rb.read_all()
            await asyncio.wait_for(asyncio.gather(*data), 10)
            assert ra.downs == [] and rb.downs == []
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_peer_that_does_not_read_our_control_traffic_gets_no_credit_until_it_does(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        ra, rb = SlowReader(), SlowReader()
        a, b = await _links("a", keys, ra), await _links("b", keys, rb)
        try:
            await a.connect(str(b.spec))
            await async_wait_until(lambda: b.is_connected("a"), 5)
            b.pause_receiving()  # b stops reading its sockets, but keeps sending requests
            chunk = b"r" * 8192
            for i in range(3 * BUDGET // len(chunk)):  # a's replies pile up unread at b
                a.send("b", "default", "r", ("reply", i, chunk), control=True)
            sent = 0
            with pytest.raises(Overloaded):
                for _ in range(100):  # b's requests: a withholds their credit
                    b.send("a", "default", "svc", ("request", chunk))
                    sent += 1
                    await asyncio.sleep(0.01)  # ok-sleep: room for a's credit, were it sent
            assert sent <= BUDGET // len(chunk) + 1
            b.resume_receiving()
            await b.send_wait("a", "default", "svc", ("request", chunk), timeout=5)
        finally:
            await a.close(flush_timeout=1.0)
            await b.close(flush_timeout=1.0)

    asyncio.run(main())

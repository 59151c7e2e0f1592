"""Selective acknowledgements: the sender resends only the gaps the receiver reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from partisan.config import ChannelSpec, Config
from partisan.delivery.acked import Ack, Data, Delivery
from partisan.identity import NodeSpec

A = NodeSpec("a", "127.0.0.1", 1, incarnation=1)
B = NodeSpec("b", "127.0.0.1", 2, incarnation=2)


def pair(channel: ChannelSpec) -> tuple[Delivery, Delivery, list[Any], list[Any], list[Any]]:
    config = Config(name="x", channels=(channel,), ack_interval=0.01, ack_interval_max=0.02)
    to_b: list[Any] = []
    to_a: list[Any] = []
    got: list[Any] = []
    a = Delivery(
        config, name="a", incarnation=1,
        transmit=lambda node, ch, env, key: to_b.append(env) or True,
        deliver=lambda sender, ch, dest, payload: None,
    )  # fmt: skip
    b = Delivery(
        config, name="b", incarnation=2,
        transmit=lambda node, ch, env, key: to_a.append(env) or True,
        deliver=lambda sender, ch, dest, payload: got.append(payload),
    )  # fmt: skip
    return a, b, to_b, to_a, got


@pytest.mark.timeout(10)
def test_the_receiver_reports_ranges_and_the_sender_resends_only_the_gaps() -> None:
    async def main() -> None:
        a, b, to_b, to_a, got = pair(ChannelSpec("log", 1, acked=True))
        sent = [a.prepare("b", 2, "log", "sink", n, None) for n in range(1, 11)]
        for data in sent:
            if seq_of(data) not in (2, 5, 6):  # lost on the way
                b.on_data(A, data)
        await asyncio.sleep(0)  # ok-sleep: a yield; acks are flushed on the next loop iteration
        assert to_a == [Ack("log", 0, 1, 1, (3, 4, 7, 10))]
        a.on_ack(B, to_a.pop())
        await asyncio.wait_for(_until(lambda: len(to_b) >= 3), 5)
        assert sorted(seq_of(d) for d in to_b[:3]) == [2, 5, 6]
        for data in to_b[:3]:
            b.on_data(A, data)
        assert got == list(range(1, 11))
        await asyncio.sleep(0)  # ok-sleep: a yield
        a.on_ack(B, to_a[-1])
        assert to_a[-1] == Ack("log", 0, 1, 10, ())
        assert a.statistics().unacked == 0 and a.statistics().retransmitted == 3
        assert b.statistics().duplicates == 0
        a.close()
        b.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_lost_tail_is_probed_then_resent() -> None:
    async def main() -> None:
        a, b, to_b, to_a, got = pair(ChannelSpec("log", 1, acked=True))
        sent = [a.prepare("b", 2, "log", "sink", n, None) for n in range(1, 6)]
        b.on_data(A, sent[0])  # 2..5 lost
        await asyncio.sleep(0)  # ok-sleep: a yield
        a.on_ack(B, to_a.pop())
        await asyncio.wait_for(_until(lambda: bool(to_b)), 5)
        probe = to_b.pop(0)
        assert seq_of(probe) == 5  # the newest, not the whole window
        b.on_data(A, probe)
        await asyncio.sleep(0)  # ok-sleep: a yield
        a.on_ack(B, to_a.pop())
        await asyncio.wait_for(_until(lambda: len(to_b) >= 3), 5)
        assert sorted(seq_of(d) for d in to_b[:3]) == [2, 3, 4]
        for data in to_b[:3]:
            b.on_data(A, data)
        assert got == [1, 2, 3, 4, 5]
        a.close()
        b.close()

    asyncio.run(main())


def seq_of(wire: Any) -> int:
    seq: int = Data._make(wire).seq  # data travels as a plain tuple
    return seq


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)  # ok-sleep: poll interval of a deadline-bound wait

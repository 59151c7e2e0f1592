"""An acked channel's memory is bounded in bytes: `send_buffer_bytes` unacknowledged per peer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from partisan.config import ChannelSpec, Config
from partisan.delivery.acked import Ack, Delivery
from partisan.errors import DeliveryError, Overloaded
from partisan.identity import NodeSpec

B = NodeSpec("b", "127.0.0.1", 2, incarnation=2)
MIB = 1024 * 1024


def sender(budget: int, lanes: int = 1) -> tuple[Delivery, list[Any]]:
    config = Config(
        name="a", channels=(ChannelSpec("log", lanes, acked=True),), send_buffer_bytes=budget
    )
    wire: list[Any] = []
    a = Delivery(
        config, name="a", incarnation=1,
        transmit=lambda node, ch, env, key: wire.append(env) or True,
        deliver=lambda sender, ch, dest, payload: None,
    )  # fmt: skip
    return a, wire


def send(a: Delivery, n: int, size: int, key: Any = None) -> Any:
    data = a.prepare("b", 2, "log", "sink", n, key)
    a.account("b", data, size)  # what the transport reports as its bytes on the wire
    return data


@pytest.mark.timeout(10)
def test_past_the_byte_budget_send_is_refused_until_acks_free_room() -> None:
    async def main() -> None:
        a, _ = sender(4 * MIB)
        for n in range(1, 5):  # 4 x 1 MiB: the last one reaches the budget
            send(a, n, MIB)
        assert a.bytes[("b", "log")] == 4 * MIB
        with pytest.raises(Overloaded, match="bytes unacknowledged"):
            a.prepare("b", 2, "log", "sink", 5, None)
        a.on_ack(B, Ack("log", 0, 1, 2))  # two acknowledged: 2 MiB free
        assert a.bytes[("b", "log")] == 2 * MIB
        send(a, 5, MIB)
        assert a.statistics().unacked == 3
        a.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_the_budget_is_per_channel_across_its_lanes_and_one_message_may_cross_it() -> None:
    async def main() -> None:
        a, _ = sender(3 * MIB, lanes=4)
        keys = [f"k{i}" for i in range(40)]
        send(a, 1, 2 * MIB, keys[0])
        send(a, 2, 2 * MIB, keys[1])  # admitted under the budget: 4 MiB held, one over
        for key in keys[2:]:  # every lane of the channel is now refused
            with pytest.raises(Overloaded):
                a.prepare("b", 2, "log", "sink", 3, key)
        a.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_waiting_sender_gets_room_when_an_ack_arrives_and_an_error_when_the_peer_restarts() -> (
    None
):
    async def main() -> None:
        a, _ = sender(2 * MIB)
        send(a, 1, 2 * MIB)
        room = asyncio.ensure_future(a.room("b", "log", None, timeout=5))
        await asyncio.sleep(0.01)  # ok-sleep: let the waiter block on the full budget
        assert not room.done()
        a.on_ack(B, Ack("log", 0, 1, 1))
        await asyncio.wait_for(room, 2)
        assert ("b", "log") not in a.bytes

        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        data = a.prepare("b", 2, "log", "sink", 2, None, waiter)
        a.account("b", data, 2 * MIB)
        a.peer_gone(NodeSpec("b", "127.0.0.1", 2, incarnation=2), "restarted")
        with pytest.raises(DeliveryError, match="restarted"):
            await waiter
        assert ("b", "log") not in a.bytes  # given up: its bytes are released too
        with pytest.raises(Overloaded, match="no room"):
            send(a, 3, 2 * MIB)
            await a.room("b", "log", None, timeout=0.05)
        a.close()

    asyncio.run(main())

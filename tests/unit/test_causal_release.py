"""Causal channels in-process: a dead incarnation's dependency is released; a full window is Overloaded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from partisan.config import ChannelSpec, Config
from partisan.delivery.acked import Delivery
from partisan.errors import Overloaded
from partisan.identity import NodeSpec

SPECS = {n: NodeSpec(n, "127.0.0.1", i, incarnation=i) for i, n in enumerate("abc", 1)}


class Net:
    """Three `Delivery` objects; what one transmits is kept until `deliver_all`, or dropped."""

    def __init__(self, window: int = 64) -> None:
        config = Config(name="x", channels=(ChannelSpec("log", 1, causal=True),), ack_window=window)
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.got: dict[str, list[Any]] = {n: [] for n in SPECS}
        self.wire: list[tuple[str, str, Any]] = []
        self.nodes = {
            n: Delivery(
                config,
                name=n,
                incarnation=SPECS[n].incarnation,
                transmit=lambda node, ch, env, key, n=n: self.wire.append((n, node, env)) or True,
                deliver=lambda sender, ch, dest, payload, n=n: self.got[n].append(payload),
                record=lambda event, n=n, **f: self.events.append((n, event, f)),
            )
            for n in SPECS
        }

    def send(self, src: str, dst: str, payload: Any) -> None:
        data = self.nodes[src].prepare(dst, SPECS[dst].incarnation, "log", "sink", payload, None)
        self.wire.append((src, dst, data))

    def deliver_all(self, drop: tuple[str, str] | None = None) -> None:
        wire, self.wire = self.wire, []
        for src, dst, env in wire:
            if (src, dst) == drop:
                continue
            node = self.nodes[dst]
            if type(env) is tuple:  # data is a plain tuple; acks are `Ack`
                node.on_data(SPECS[src], env)
            else:
                node.on_ack(SPECS[src], env)

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()


@pytest.mark.timeout(10)
def test_a_dependency_on_an_incarnation_that_left_is_released_with_an_event() -> None:
    async def main() -> None:
        net = Net()
        net.send("a", "c", "a1")  # lost: C never gets it
        net.send("a", "b", "a2")
        net.deliver_all(drop=("a", "c"))
        assert net.got["b"] == ["a2"]
        net.send("b", "c", "b1")  # depends on a1 through a2
        net.deliver_all()
        assert net.got["c"] == [] and net.nodes["c"].statistics().causal_waiting == 1
        net.nodes["c"].peer_gone(SPECS["a"], "left")
        assert net.got["c"] == ["b1"]
        stats = net.nodes["c"].statistics()
        assert (stats.causal_waiting, stats.causal_released) == (0, 1)
        assert ("c", "causal.released") in [(n, e) for n, e, _ in net.events]
        released = next(f for n, e, f in net.events if e == "causal.released")
        assert released["peer"] == "a" and released["peer_incarnation"] == 1
        net.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_restart_seen_as_a_new_hello_releases_the_old_incarnation() -> None:
    async def main() -> None:
        net = Net()
        net.send("a", "c", "a1")
        net.send("a", "b", "a2")
        net.deliver_all(drop=("a", "c"))
        net.send("b", "c", "b1")
        net.deliver_all()
        assert net.got["c"] == []
        net.nodes["c"].peer_up(NodeSpec("a", "127.0.0.1", 1, incarnation=99))
        assert net.got["c"] == ["b1"]
        net.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_what_waits_for_a_dependency_holds_the_senders_window_until_overloaded() -> None:
    async def main() -> None:
        net = Net(window=4)
        net.send("a", "c", "a1")
        net.send("a", "b", "a2")
        net.deliver_all(drop=("a", "c"))
        for i in range(4):
            net.send("b", "c", f"b{i}")
        net.deliver_all()  # C holds all four (not acknowledged: not delivered)
        assert net.nodes["c"].statistics().causal_waiting == 4
        with pytest.raises(Overloaded):
            net.send("b", "c", "b4")
        net.nodes["c"].peer_gone(SPECS["a"], "left")
        await asyncio.sleep(0)  # ok-sleep: a yield; acks go out on the next loop iteration
        net.deliver_all()  # C's acks free B's window
        assert net.got["c"] == ["b0", "b1", "b2", "b3"]
        net.send("b", "c", "b4")
        net.close()

    asyncio.run(main())

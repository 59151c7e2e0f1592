"""`partisan.testing.faults` on a real `Cluster`: partition and heal through the CLI, rules by rpc."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from partisan.testing import Cluster, async_wait_until, faults
from partisan.testing.plugin import partisan_cluster

__all__ = ["partisan_cluster"]  # the fixture, for the test below

FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0, "gossip_interval": 0.2}


@pytest.mark.timeout(60)
def test_partition_heal_and_rules_through_the_helpers(
    partisan_cluster: Callable[..., Cluster],
) -> None:
    cluster = partisan_cluster(3, manager="full-mesh", settings=FAST)

    async def scenario() -> None:
        async with cluster.client() as client:
            await asyncio.to_thread(faults.partition, cluster, ["n1"], ["n2", "n3"])
            listing = await asyncio.to_thread(faults.listing_of, cluster)
            parts = {n: v["partition"] for n, v in listing.items()}
            assert parts == {n: [["n1"], ["n2", "n3"]] for n in ("n1", "n2", "n3")}

            async def n1_alone() -> bool:
                status = await cluster.async_status()
                conns = {n["name"]: set(n["connections"]) for n in status["nodes"]}
                return conns == {"n1": set(), "n2": {"n3"}, "n3": {"n2"}}

            await async_wait_until(n1_alone, 20)
            # The client is hidden: never cut, it still reaches both sides.
            assert await client.rpc("n1", os.getpid) == cluster.node("n1")["os_pid"]
            await asyncio.to_thread(faults.heal, cluster)
            await cluster.async_wait(20)

            await faults.seed(client, "n1", 5)
            rule = await faults.drop(client, "n1", peer="n2", channel="membership")
            listed = await faults.rules(client, "n1")
            assert [(r["id"], r["kind"], r["peer"]) for r in listed["rules"]] == [
                (rule, "drop", "n2")
            ]

            async def gossip_dropped() -> bool:
                return bool((await faults.rules(client, "n1"))["dropped"])

            await async_wait_until(gossip_dropped, 10)
            await faults.clear(client, "n1", rule)
            assert (await faults.rules(client, "n1"))["rules"] == []

    asyncio.run(scenario())
    events = (cluster.dir / "events" / "n1.jsonl").read_text()
    assert events.count('"fault.set"') == 2 and events.count('"fault.clear"') == 2

"""The cluster examples on a real local cluster, with a node killed mid-run.

examples/work_queue.py and examples/replicated_counter.py claim to survive a
node's death; these tests run them exactly as their docstrings say (every
node runs the module's ``main`` through ``cluster up --run``) through
`partisan.testing.Cluster`, kill a node with SIGKILL, and check the claim.
The nodes find the examples through PYTHONPATH (`Cluster`'s `pythonpath`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from partisan import CallExit, NotConnected
from partisan.testing import Cluster, ClusterClient, async_wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COORDINATOR = ("work_queue", "n1")
COUNTER = "counter"


async def _call_when_ready(client: ClusterClient, dest: Any, request: Any) -> Any:
    """Call `dest`, waiting while it is not registered yet (``--run`` runs after ready).

    Only errors that prove the request was not handled are retried (an
    unknown name, no link): retrying a timeout could apply it twice.
    """

    async def attempt() -> tuple[Any] | None:
        try:
            return (await client.call(dest, request),)
        except NotConnected:
            return None
        except CallExit as exc:
            if exc.reason in ("noproc", "noconnection"):
                return None
            raise

    answer = await async_wait_until(attempt, 20, interval=0.05, message=f"{dest} to answer")
    return answer[0]


@pytest.mark.timeout(60)
def test_work_queue_finishes_every_job_when_a_worker_node_is_killed() -> None:
    jobs, seconds = 96, 0.25  # 8 workers: ~3 s of work, so the kill lands mid-run

    async def scenario() -> None:
        async with (
            Cluster(4, run="work_queue:main", pythonpath=[EXAMPLES]) as cluster,
            cluster.client() as client,
        ):
            payloads = [(i, seconds) for i in range(jobs)]
            ids = await _call_when_ready(client, COORDINATOR, ("submit", payloads))

            async def n3_is_busy() -> bool:
                status = await client.call(COORDINATOR, ("status",))
                return status["done"] >= 8 and status["in_flight_by_node"].get("n3", 0) > 0

            await async_wait_until(n3_is_busy, 20, interval=0.05, message="n3 to hold a job")
            await cluster.async_kill("n3")
            last: dict[str, Any] = {}

            async def all_done() -> bool:
                last.update(await client.call(COORDINATOR, ("status",)))
                return bool(last["done"] == jobs)

            await async_wait_until(all_done, 40, interval=0.1, message=lambda: f"all jobs: {last}")
            results = await client.call(COORDINATOR, ("results",))
            assert sorted(results) == ids
            assert all(results[i][0] == i * i for i in ids)
            assert last["requeued"] >= 1, last  # n3's jobs went back to the queue
            assert last["in_flight"] == 0 and last["queued"] == 0
            assert cluster.node("n3")["restarts"] == 1

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_counter_converges_on_every_node_after_a_kill_and_restart() -> None:
    async def scenario() -> None:
        async with (
            Cluster(3, run="replicated_counter:main", pythonpath=[EXAMPLES]) as cluster,
            cluster.client() as client,
        ):
            seen: dict[str, Any] = {}

            async def everyone_sees(total: int) -> bool:
                for node in cluster.names:
                    try:
                        seen[node] = await client.call((COUNTER, node), "value")
                    except (NotConnected, CallExit) as exc:  # n2 restarting
                        seen[node] = repr(exc)
                return all(value == total for value in seen.values())

            for amount, node in enumerate(cluster.names, start=1):
                await _call_when_ready(client, (COUNTER, node), ("incr", amount))
            await async_wait_until(lambda: everyone_sees(6), 20, message=lambda: f"6: {seen}")

            before = cluster.node("n2")
            await cluster.async_kill("n2")
            await cluster.async_wait(30)
            after = cluster.node("n2")
            assert after["incarnation"] != before["incarnation"]
            # The new n2 starts empty and learns every slot, its old one included, by gossip.
            await async_wait_until(lambda: everyone_sees(6), 20, message=lambda: f"6: {seen}")

            await _call_when_ready(client, (COUNTER, "n2"), ("incr", 10))
            await async_wait_until(lambda: everyone_sees(16), 20, message=lambda: f"16: {seen}")
            slots = await client.call((COUNTER, "n1"), "state")
            assert sorted(slot.split(":")[0] for slot in slots) == ["n1", "n2", "n2", "n3"]
            assert f"n2:{after['incarnation']}" in slots

    asyncio.run(scenario())

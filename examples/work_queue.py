"""A work queue over a local cluster: a coordinator on n1, workers pulling jobs on every node.

Every node runs `main` (``--run``): n1 starts the `Coordinator` GenServer
(registered as ``work_queue``) and every node, n1 included, starts
``WORK_QUEUE_WORKERS`` (default 2) `worker` actors. A worker *pulls*: it
calls the coordinator for a job, does it, and hands the result back in the
call that asks for the next one, so a fast node simply does more jobs.

Surviving a dead worker is the point: the coordinator monitors every worker
that took a job. When a worker's node is killed, the monitor fires
(``Down(..., "noconnection")``) and the jobs that worker held go back to the
front of the queue for the others. A job is assigned to one worker at a time,
and a worker that asks again without having received its job (a lost reply)
gets the same job back, so no job is lost or done twice by a live worker.
The queue itself lives on n1: killing n1 loses it (replicating it is another
example: see replicated_counter.py for state that survives its node).

Run it from this directory (nodes import this file from their working
directory, which is where ``up`` runs)::

    partisan cluster up -n 4 --dir /tmp/wq --run work_queue:main --detach
    python work_queue.py --dir /tmp/wq --jobs 200 --seconds 0.2
    partisan cluster kill n3 --dir /tmp/wq      # in another shell, while it runs
    partisan cluster down --dir /tmp/wq

The submitter (a hidden node, invisible to the cluster) prints progress
twice a second, e.g. ``done 61/200  queued 131  in flight 8  requeued 0
by node n1 16, n2 15, n3 15, n4 15``; after the kill, ``requeued`` becomes 2
(n3's two jobs), n3's count stops, then grows again once the daemon has
restarted it, and the run ends with ``all 200 results correct``. The
coordinator logs each re-queue in n1's log (``partisan cluster logs n1``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections import Counter, deque
from typing import Any

import partisan
from partisan import Down, From, GenServer, PartisanError, Pid

NAME = "work_queue"
COORDINATOR_NODE = os.environ.get("WORK_QUEUE_COORDINATOR", "n1")
COORDINATOR = (NAME, COORDINATOR_NODE)
#: How long an idle worker waits before asking again (or after the coordinator was unreachable).
IDLE = 0.1

log = logging.getLogger("work_queue")


class Coordinator(GenServer):
    """Jobs in, results out; ``call(COORDINATOR, request)`` with the requests below.

    ``("submit", payloads)`` -> job ids; ``("pull",)`` -> ``(id, payload)`` or
    None; ``("done", id, result)`` records it and answers like ``pull``;
    ``("status",)`` -> counters; ``("results",)`` -> ``{id: (result, node)}``.
    """

    def init(self) -> None:
        self.queue: deque[tuple[int, Any]] = deque()
        self.assigned: dict[Pid, tuple[int, Any]] = {}  # worker -> the job it holds
        self.watched: set[Pid] = set()
        self.results: dict[int, tuple[Any, str]] = {}
        self.requeued = 0
        self.next_id = 0

    def handle_call(self, request: Any, caller: From) -> Any:
        worker = caller.pid
        match request:
            case ("submit", payloads):
                ids = list(range(self.next_id, self.next_id + len(payloads)))
                self.next_id += len(payloads)
                self.queue.extend(zip(ids, payloads, strict=True))
                return ids
            case ("pull",):
                return self._assign(worker)
            case ("done", job_id, result):
                held = self.assigned.get(worker)
                if held is not None and held[0] == job_id:
                    del self.assigned[worker]
                    self.results.setdefault(job_id, (result, worker.node))
                return self._assign(worker)
            case ("status",):
                return {
                    "queued": len(self.queue),
                    "in_flight": len(self.assigned),
                    "done": len(self.results),
                    "submitted": self.next_id,
                    "requeued": self.requeued,
                    "by_node": dict(Counter(node for _, node in self.results.values())),
                    "in_flight_by_node": dict(Counter(w.node for w in self.assigned)),
                }
            case ("results",):
                return dict(self.results)
        raise ValueError(f"unknown request {request!r}")

    def _assign(self, worker: Pid) -> tuple[int, Any] | None:
        if worker in self.assigned:  # it asks again: the reply carrying its job was lost
            return self.assigned[worker]
        if not self.queue:
            return None
        if worker not in self.watched:  # one monitor per worker, for its whole life
            partisan.monitor(worker)
            self.watched.add(worker)
        job = self.assigned[worker] = self.queue.popleft()
        return job

    def handle_info(self, msg: Any) -> None:
        if isinstance(msg, Down) and msg.pid in self.watched:
            self.watched.discard(msg.pid)
            job = self.assigned.pop(msg.pid, None)
            if job is not None:  # back to the front: it was next in line already
                self.queue.appendleft(job)
                self.requeued += 1
                log.warning("worker %s died (%s): job %d re-queued", msg.pid, msg.reason, job[0])


async def do_job(payload: Any) -> Any:
    """The work itself: square a number, taking `seconds` (a stand-in for real I/O or CPU)."""
    number, seconds = payload
    await asyncio.sleep(seconds)
    return number * number


async def worker() -> None:
    """Pull a job, do it, return the result with the next pull; forever."""
    job: tuple[int, Any] | None = None
    result: Any = None
    while True:
        request = ("pull",) if job is None else ("done", job[0], result)
        try:
            job = await partisan.call(COORDINATOR, request, timeout=10)
        except PartisanError as exc:  # n1 not linked or not started yet: ask again
            log.debug("coordinator unreachable (%r); retrying", exc)
            await asyncio.sleep(IDLE)
            continue  # `job` unchanged: the same request is sent again
        if job is None:
            await asyncio.sleep(IDLE)
            continue
        result = await do_job(job[1])


async def main() -> None:
    """The ``--run`` entry point: the coordinator on n1, workers on every node."""
    if partisan.node() == COORDINATOR_NODE:
        await Coordinator.start(name=NAME)
    for _ in range(int(os.environ.get("WORK_QUEUE_WORKERS", "2"))):
        await partisan.spawn(worker)
    log.info("work queue ready on %s", partisan.node())


# ------------------------------------------------ the submitter (python work_queue.py)


async def submit(directory: str, jobs: int, seconds: float) -> int:
    from partisan.testing.cluster import connect

    async with connect(directory) as client:
        payloads = [(i, seconds) for i in range(jobs)]
        ids = await client.call(COORDINATOR, ("submit", payloads))
        print(f"submitted {len(ids)} jobs ({seconds:g} s each) to the coordinator on n1")
        while True:
            st = await client.call(COORDINATOR, ("status",))
            by_node = ", ".join(f"{n} {c}" for n, c in sorted(st["by_node"].items()))
            print(
                f"  done {st['done']:>4}/{st['submitted']}  queued {st['queued']:>4}  in flight "
                f"{st['in_flight']}  requeued {st['requeued']}  by node {by_node}",
                flush=True,
            )
            if st["done"] >= st["submitted"]:
                break
            await asyncio.sleep(0.5)
        results = await client.call(COORDINATOR, ("results",))
        wrong = [i for i, (n, _) in zip(ids, payloads, strict=True) if results[i][0] != n * n]
        if wrong:
            print(f"{len(wrong)} wrong results: jobs {wrong[:10]}")
            return 1
        print(f"all {len(ids)} results correct; {st['requeued']} job(s) re-queued")
        return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="submit jobs to the work queue and watch them")
    parser.add_argument("--dir", default=".partisan", help="the cluster's directory")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.2, help="how long each job takes")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(submit(args.dir, args.jobs, args.seconds)))

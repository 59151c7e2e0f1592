"""Supervision benchmarks: restart latency of a crashed local child and of a killed node process.

* **local child**: a `Supervisor` (one_for_one) on a local runtime restarts a
  `GenServer` child that crashes in a cast. Latency = the new child's ``init``
  time minus the moment the old one raised (both ``perf_counter`` in one
  process). Baseline, same run: a bare ``spawn`` of the same GenServer
  (spawn call to ``init``). Goal: median <= 5 ms.
* **node process**: a `ProcessSupervisor` runs ``partisan node start``; we
  kill -9 it and time kill -> the new incarnation's ready line. Baseline, same
  run: a bare process that imports the same modules and prints a line
  (spawn -> line). Goal: median <= 1.5 x baseline + 50 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from partisan.actors import api
from partisan.actors.gen_server import GenServer
from partisan.actors.process import set_default_runtime
from partisan.actors.runtime import Runtime
from partisan.supervision import api as sup
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.process_spec import ProcessSpec, ProcessStarted
from partisan.supervision.processes import ProcessSupervisor
from partisan.supervision.supervisor import Supervisor

_NODE_IMPORTS = (
    "import partisan.cli, partisan.commands.node, partisan.node, partisan.transport.links"
)


class _Child(GenServer):
    def init(self, marks: list[float]) -> None:
        marks.append(time.perf_counter())
        self.marks = marks

    def handle_cast(self, request: Any) -> None:
        self.marks.append(-time.perf_counter())  # negative: the crash moment
        raise RuntimeError("benchmark crash")


async def _local(n: int) -> tuple[list[float], list[float]]:
    import logging

    logging.getLogger("partisan").setLevel(logging.CRITICAL)  # n crash tracebacks are noise here
    runtime = Runtime("bench", 1)
    set_default_runtime(runtime, True)
    try:
        baseline = []
        for _ in range(n):
            marks: list[float] = []
            t0 = time.perf_counter()
            pid = await api.spawn(_Child, marks)
            baseline.append(marks[0] - t0)
            api.exit(pid, "kill")
        marks = []
        root = await Supervisor.start(
            SupervisorSpec([ChildSpec("c", _Child, (marks,))], intensity=n + 1, period=3600)
        )
        latencies = []
        for _ in range(n):
            pid = (await sup.which_children(root))[0].pid
            assert pid is not None
            before = len(marks)
            api.cast(pid, "crash")
            while len(marks) < before + 2:
                await asyncio.sleep(0)
            crashed, started = marks[before], marks[before + 1]
            latencies.append(started + crashed)  # crashed is negative
        return latencies, baseline
    finally:
        await runtime.shutdown(5.0)
        set_default_runtime(runtime, False)


def _bare_startup() -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"{_NODE_IMPORTS}; print('{{}}', flush=True)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    took = time.perf_counter() - t0
    proc.wait()
    proc.stdout.close()
    return took


async def _node(n: int) -> tuple[list[float], list[float]]:
    """Interleave restarts with bare start-ups, so both see the same machine load."""
    spec = ProcessSpec(
        "n1",
        [sys.executable, "-m", "partisan", "node", "start", "n1", "--insecure", "--port", "{port}"],
        ready_timeout=30,
    )
    latencies, bare = [], []
    async with ProcessSupervisor([spec], intensity=n + 1, period=3600) as procs:
        for _ in range(n):
            bare.append(_bare_startup())  # blocks the loop briefly; the supervisor is idle
            started = asyncio.get_running_loop().create_future()

            def on_event(event: Any, fut: asyncio.Future[float] = started) -> None:
                if isinstance(event, ProcessStarted) and not fut.done():
                    fut.set_result(time.perf_counter())

            undo = procs.subscribe(on_event)
            t0 = time.perf_counter()
            procs.kill_child("n1")
            latencies.append(await asyncio.wait_for(started, 30) - t0)
            undo()
    return latencies, bare


def run(args: Any) -> list[dict[str, Any]]:
    """Measure both restart latencies; rows per benchmarks/__main__.py."""
    quick = bool(getattr(args, "quick", False))
    local, local_base = asyncio.run(_local(50 if quick else 300))
    n_nodes = 3 if quick else 7
    node, bare = asyncio.run(_node(n_nodes))
    local_ms = statistics.median(local) * 1e3
    local_base_ms = statistics.median(local_base) * 1e3
    node_ms = statistics.median(node) * 1e3
    bare_ms = statistics.median(bare) * 1e3
    node_goal = 1.5 * bare_ms + 50
    return [
        {
            "name": "local child restart latency (median)",
            "value": local_ms,
            "unit": "ms",
            "baseline": local_base_ms,
            "ratio": local_ms / local_base_ms,
            "goal": "<= 5 ms",
            "note": f"p90 {sorted(local)[int(len(local) * 0.9)] * 1e3:.3f} ms; "
            f"baseline: bare spawn+init of the same GenServer; met={local_ms <= 5}",
        },
        {
            "name": "node process restart latency (median)",
            "value": node_ms,
            "unit": "ms",
            "baseline": bare_ms,
            "ratio": node_ms / bare_ms,
            "goal": f"<= 1.5 x baseline + 50 ms = {node_goal:.0f} ms",
            "note": f"kill -9 -> ready line, n={n_nodes}; baseline: bare process importing the "
            f"same modules, spawn -> first line; met={node_ms <= node_goal}",
        },
    ]


if __name__ == "__main__":
    import argparse

    for row in run(argparse.Namespace(quick="--quick" in sys.argv)):
        print(row)

"""``partisan cluster`` benchmarks: what the CLI adds to forming a cluster, and what watching costs.

* **up to converged** (HyParView, 8/16/32/64 nodes): wall time of
  ``partisan cluster up -n N --detach`` (the CLI's own start, keys, the
  daemon, the waves, the convergence wait), beside the same cluster formed by
  plain ``partisan node start`` processes in the same run (n1, then everyone
  else at once joining n1), timed from the first spawn until the same
  observer sees it converged. Both are polled every 0.2 s. Goal: the CLI adds
  <= 0.5 s. Formation speed itself is another issue's.
* **status --json, 64 nodes**: wall time of the whole command (interpreter
  start, joining 64 nodes as a hidden node, one probe round). Goal <= 1 s.
* **top's frame cost, 64 nodes**: CPU of one frame in the viewer process
  (snapshot: probe every node, read the event logs, assess, render the
  table), at the default 1 s refresh. Goal <= 50 ms per frame. And the cost
  the viewer puts on each node: the nodes' CPU seconds over 10 s with a
  viewer polling every second, minus the same 10 s without one, per node and
  second.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.observer import Observer
from partisan.cluster.render import render
from partisan.transport.keys import create_keys

CLI = [sys.executable, "-m", "partisan", "cluster"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=True)


async def _until_converged(cluster: ClusterDir, timeout: float = 120.0) -> None:
    with CliIdentity(cluster) as identity:
        async with Observer(cluster, identity.name) as observer:
            deadline = time.monotonic() + timeout
            while not (await observer.snapshot()).converged:
                if time.monotonic() > deadline:
                    raise TimeoutError("the cluster did not converge")
                await asyncio.sleep(0.2)


def _plain_formation(n: int, root: Path) -> float:
    """Seconds from the first spawn until plain `node start` processes have converged."""
    cluster = ClusterDir(root)
    cluster.make()
    names = [f"n{i}" for i in range(1, n + 1)]
    create_keys(cluster.keys, names)

    def spawn(name: str, join: list[str]) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            "-m",
            "partisan",
            "node",
            "start",
            name,
            "--port",
            "0",
            "--manager",
            "hyparview",
            "--keys",
            str(cluster.keys),
            "--event-log",
            str(cluster.event_log(name)),
        ]
        for contact in join:
            argv += ["--join", contact, "--join-timeout", "10"]
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    t0 = time.perf_counter()
    procs = {"n1": spawn("n1", [])}
    ready = {"n1": json.loads(procs["n1"].stdout.readline())}  # type: ignore[union-attr]
    seed = f"n1@{ready['n1']['address']}"
    procs.update({name: spawn(name, [seed]) for name in names[1:]})
    for name in names[1:]:
        ready[name] = json.loads(procs[name].stdout.readline())  # type: ignore[union-attr]
    try:
        cluster.write_state(
            {
                "version": 1,
                "state": "running",
                "manager": "hyparview",
                "dir": str(root),
                "supervisor_pid": None,
                "configured_links": [],
                "nodes": [
                    {
                        "name": name,
                        "address": ready[name]["address"],
                        "role": None,
                        "os_pid": procs[name].pid,
                        "incarnation": ready[name].get("incarnation"),
                        "log": None,
                        "event_log": str(cluster.event_log(name)),
                        "state": "up",
                        "restarts": 0,
                        "error": None,
                    }
                    for name in names
                ],
            }
        )
        asyncio.run(_until_converged(cluster))
        return time.perf_counter() - t0
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)


def _cli_formation(n: int, root: Path) -> float:
    t0 = time.perf_counter()
    _cli("up", "-n", str(n), "--manager", "hyparview", "--detach", "--dir", str(root))
    return time.perf_counter() - t0


def _node_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def _frames(cluster: ClusterDir, frames: int) -> list[float]:
    """CPU seconds of each viewer frame (snapshot + render), one frame a second."""
    from rich.console import Console

    console = Console(file=open(os.devnull, "w"), width=200)  # noqa: SIM115 - closed with the process
    costs = []
    with CliIdentity(cluster) as identity:
        async with Observer(cluster, identity.name) as observer:
            previous = await observer.snapshot()
            for _ in range(frames):
                began = time.process_time()
                snapshot = await observer.snapshot()
                console.print(render(snapshot, previous))
                costs.append(time.process_time() - began)
                previous = snapshot
                await asyncio.sleep(1.0)
    return costs


def _watch_cost(root: Path, seconds: float) -> tuple[list[float], float]:
    """(frame CPU costs, extra node CPU per node per second caused by the viewer)."""
    cluster = ClusterDir(root)
    pids = [node["os_pid"] for node in cluster.require_state()["nodes"]]
    before = _node_cpu(pids)
    time.sleep(seconds)
    idle = _node_cpu(pids) - before
    before = _node_cpu(pids)
    costs = asyncio.run(_frames(cluster, int(seconds)))
    watched = _node_cpu(pids) - before
    per_node = max(0.0, watched - idle) / len(pids) / seconds
    return costs, per_node


def run(args: Any) -> list[dict[str, Any]]:
    quick = bool(getattr(args, "quick", False))
    sizes = [8, 16] if quick else [8, 16, 32, 64]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="partisan-bench-") as tmp:
        # Warm the page cache and bytecode: neither side's cost.
        _plain_formation(4, Path(tmp) / "warm-up")
        for i, n in enumerate(sizes):
            root = Path(tmp) / f"cli{n}"

            def via_cli(n: int = n, root: Path = root) -> float:
                """Form it through the CLI; measure the viewer on the largest; take it down."""
                try:
                    took = _cli_formation(n, root)
                    if n == sizes[-1]:
                        rows.extend(_watch_rows(root, n, quick))
                    return took
                finally:
                    _cli("down", "--dir", str(root))

            # Alternate which side goes first; never with the other's cluster alive
            # (an idle 64-node cluster alone would slow the other side down).
            if i % 2:
                cli_s = via_cli()
                plain = _plain_formation(n, Path(tmp) / f"plain{n}")
            else:
                plain = _plain_formation(n, Path(tmp) / f"plain{n}")
                cli_s = via_cli()
            added = cli_s - plain
            rows.insert(
                i,
                {
                    "name": f"cluster up to converged, hyparview n={n}",
                    "value": cli_s,
                    "unit": "s",
                    "baseline": plain,
                    "ratio": cli_s / plain,
                    "goal": "CLI adds <= 0.5 s",
                    "note": f"baseline: plain node start processes, same observer; "
                    f"added {added:+.2f} s; met={added <= 0.5}",
                },
            )
    return rows


def _watch_rows(root: Path, n: int, quick: bool) -> list[dict[str, Any]]:
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        _cli("status", "--json", "--dir", str(root))
        walls.append(time.perf_counter() - t0)
    status_s = statistics.median(walls)
    costs, per_node = _watch_cost(root, 5.0 if quick else 10.0)
    frame_ms = statistics.median(costs) * 1e3
    return [
        {
            "name": f"status --json, n={n} (median of 3, whole command)",
            "value": status_s,
            "unit": "s",
            "goal": "<= 1 s",
            "note": f"met={status_s <= 1.0}",
        },
        {
            "name": f"top frame CPU, n={n} (median; snapshot + render)",
            "value": frame_ms,
            "unit": "ms",
            "goal": "<= 50 ms",
            "note": f"max {max(costs) * 1e3:.1f} ms; met={frame_ms <= 50}",
        },
        {
            "name": f"viewer's cost on each node, n={n}",
            "value": per_node * 1e3,
            "unit": "ms CPU/s",
            "note": "node CPU with a 1 s viewer minus without, per node",
        },
    ]


if __name__ == "__main__":
    import argparse

    for row in run(argparse.Namespace(quick="--quick" in sys.argv)):
        print(row)

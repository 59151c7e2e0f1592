"""``partisan.broadcast`` on 16 real node processes (HyParView, CURVE, loopback).

* **latency**: one broadcast from n1 until the ``"bc"`` actor of every node
  has it (polled every 10 ms, so the figure includes up to one poll).
* **throughput**: B broadcasts sent at once from four nodes, until every node
  delivered all of them; broadcasts per second delivered everywhere.
* **RMR** of the throughput phase: payload messages received / (nodes reached
  - 1) - 1 over all nodes (0: each node got each payload once, a tree).

Each node is `partisan.testing.membernode` with default Plumtree timers; the
tree forms during a warm-up of a few broadcasts one at a time, as it would
in a cluster that has been up a while.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from partisan.testing import NodeProcess
from partisan.transport.keys import create_keys

NODES = 16


def _start(name: str, keys: Path, *args: str) -> NodeProcess:
    argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
    return NodeProcess([*argv, "--manager", "hyparview", *args], env=dict(os.environ))


def _everywhere(nodes: Sequence[NodeProcess], tag: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(8) as pool:
        while True:
            counts = list(pool.map(lambda node: node.request("count", tag=tag), nodes))
            if any(c["count"] != c["distinct"] for c in counts):
                raise AssertionError(f"a broadcast was delivered twice: {counts}")
            if all(c["distinct"] >= n for c in counts):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tag}: not everywhere after {timeout} s: {counts}")
            time.sleep(0.01)  # ok-sleep: the poll interval of a deadline-bound wait


def _payload_totals(nodes: Sequence[NodeProcess]) -> tuple[int, int]:
    with ThreadPoolExecutor(8) as pool:
        stats = [s["broadcast"] for s in pool.map(lambda n: n.request("bstats"), nodes)]
    return sum(s["payloads_received"] for s in stats), sum(s["delivered_remote"] for s in stats)


def run(args: Any) -> list[dict[str, Any]]:
    quick = bool(getattr(args, "quick", False))
    total = 500 if quick else 2000
    names = [f"n{i}" for i in range(1, NODES + 1)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="partisan-bench-bc-") as tmp:
        keys = Path(tmp) / "keys"
        create_keys(keys, names)
        n1 = _start("n1", keys)
        nodes = [n1]
        try:
            with ThreadPoolExecutor(8) as pool:
                nodes += list(
                    pool.map(lambda n: _start(n, keys, "--join", str(n1.spec)), names[1:])
                )
            for i in range(5):  # warm-up: the overlay settles and the tree forms
                nodes[i].request("broadcast", count=1, tag=f"warm{i}")
                _everywhere(nodes, f"warm{i}", 1, 30.0)

            latencies = []
            for i in range(5):
                started = time.perf_counter()
                n1.request("broadcast", count=1, tag=f"lat{i}")
                _everywhere(nodes, f"lat{i}", 1, 30.0)
                latencies.append(time.perf_counter() - started)
            rows.append(
                {
                    "name": f"one broadcast reaches all {NODES} nodes (median of 5)",
                    "value": sorted(latencies)[2] * 1000,
                    "unit": "ms",
                    "note": "includes up to one 10 ms poll of every node",
                }
            )

            received0, reached0 = _payload_totals(nodes)
            senders = nodes[:4]
            started = time.perf_counter()
            ids = [s.send_command("broadcast", count=total // 4, tag="tp") for s in senders]
            for sender, ident in zip(senders, ids, strict=True):
                sender.reply(ident)
            _everywhere(nodes, "tp", total, 60.0)
            took = time.perf_counter() - started
            received, reached = _payload_totals(nodes)
            rmr = (received - received0) / (reached - reached0) - 1
            rows.append(
                {
                    "name": f"broadcast throughput, {NODES} nodes, {total} from 4 senders",
                    "value": total / took,
                    "unit": "broadcasts/s everywhere",
                    "note": f"{took:.2f} s until all {NODES} nodes delivered all",
                }
            )
            rows.append(
                {
                    "name": "RMR of the throughput phase",
                    "value": rmr,
                    "unit": "",
                    "goal": "< 1 (flood over active view 5: ~3)",
                }
            )
        finally:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: n.stop(), nodes))
    return rows

"""What the three workloads share; standard library only (it runs in every venv).

A worker module runs in its framework's own interpreter, measures the three
workloads and prints one JSON object (`emit`) as its last line of stdout.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The cast payload, the same for all three frameworks.
PAYLOAD = b"x" * 100
#: Outstanding requests in the pipelined workload: a new call is sent as each reply arrives.
WINDOW = 100


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many operations each workload does (chosen per framework to take a few seconds)."""

    calls: int
    pipelined: int
    casts: int

    def scaled(self, quick: bool) -> Sizes:
        """A tenth of the sizes for a smoke run."""
        if not quick:
            return self
        return Sizes(max(200, self.calls // 10), max(1000, self.pipelined // 10), self.casts // 10)


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank, as benchmarks/actors.py)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_calls(call: Callable[[int], Any], n: int) -> list[float]:
    """Round-trip times of `n` sequential calls, checking each reply."""
    times = []
    clock = time.perf_counter
    for i in range(n):
        started = clock()
        if call(i) != i:
            raise AssertionError(f"call {i}: wrong reply")
        times.append(clock() - started)
    return times


def call_rows(times: list[float]) -> dict[str, float]:
    """p50 and p99 in microseconds."""
    return {
        "call_p50_us": percentile(times, 0.5) * 1e6,
        "call_p99_us": percentile(times, 0.99) * 1e6,
    }


def emit(framework: str, version: str, sizes: Sizes, results: dict[str, Any]) -> None:
    """Print the worker's result as one JSON line (the orchestrator reads the last line)."""
    record = {
        "framework": framework,
        "version": version,
        "python": platform.python_version(),
        "executable": sys.executable,
        "sizes": {"calls": sizes.calls, "pipelined": sizes.pipelined, "casts": sizes.casts},
        "window": WINDOW,
        **results,
    }
    print(json.dumps(record), flush=True)

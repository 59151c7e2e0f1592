"""The workloads on partisan: this process (a hidden node) and a `partisan node start` peer.

Runs in the project's own virtualenv (``python -m benchmarks.peers.on_partisan``),
CURVE on, exactly as ``make bench``'s actor rows (benchmarks/actors.py), whose
GenServer and counting actor it reuses:

* call: ``await partisan.call(echo, i)`` on a GenServer on the peer, sequential;
* pipelined: 100 tasks of this process each calling in a loop, so 100 calls
  are outstanding at any time;
* casts: ``partisan.send(sink, payload)`` to an actor on the peer that counts
  them and sends ``done`` after the last one (the final ack).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import partisan
from benchmarks.actors import Echo, counter
from benchmarks.peers._common import PAYLOAD, WINDOW, Sizes, call_rows, emit

SIZES = Sizes(calls=3000, pipelined=30_000, casts=100_000)


async def _call_rtts(pid: Any, n: int) -> list[float]:
    times = []
    call = partisan.call
    clock = time.perf_counter
    for i in range(n):
        started = clock()
        if await call(pid, i) != i:
            raise AssertionError(f"call {i}: wrong reply")
        times.append(clock() - started)
    return times


async def _pipelined(pid: Any, n: int) -> float:
    per_task = n // WINDOW
    call = partisan.call

    async def caller() -> None:
        for i in range(per_task):
            await call(pid, i, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(WINDOW)))
    return per_task * WINDOW / (time.perf_counter() - started)


async def _casts(n: int) -> float:
    sink = await partisan.spawn(counter, n, partisan.self(), node="peer")
    send = partisan.send
    started = time.perf_counter()
    sent = 0
    while sent < n:
        try:
            send(sink, PAYLOAD)
        except partisan.Overloaded:
            await partisan.send(sink, PAYLOAD, wait=True, timeout=30)
        sent += 1
        if sent % 1000 == 0:
            await asyncio.sleep(0)  # let the transport's writer run
    if await partisan.receive(timeout=120) != "done":
        raise AssertionError("casts: the counter did not ack")
    return n / (time.perf_counter() - started)


async def _run(keys: str, peer_address: str, sizes: Sizes) -> dict[str, Any]:
    async with partisan.Node("bench", key_dir=keys, hidden=True) as node:
        await node.sync_join(f"peer@{peer_address}")
        echo = await Echo.start(node="peer")
        await _call_rtts(echo, 200)  # warm up
        results: dict[str, Any] = call_rows(await _call_rtts(echo, sizes.calls))
        results["pipelined_calls_per_s"] = await _pipelined(echo, sizes.pipelined)
        results["casts_per_s"] = await _casts(sizes.casts)
        drops = node.statistics().drops
        if drops:
            results["drops"] = str(drops)
    return results


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = SIZES.scaled(args.quick)

    import zmq

    from partisan.testing import NodeProcess
    from partisan.transport.keys import create_keys

    logging.getLogger("partisan").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        create_keys(keys, ["bench", "peer"])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "partisan", "node", "start", "peer", "--keys", keys]
        with NodeProcess(argv, env=env) as peer:
            results = asyncio.run(_run(keys, peer.address, sizes))
            results["note"] = (
                f"peer node pid {peer.proc.pid}, this node pid {os.getpid()}; CURVE on"
            )
    results["pyzmq"] = zmq.pyzmq_version()
    results["libzmq"] = zmq.zmq_version()
    emit("partisan", f"{partisan.__version__} ({_git_commit()})", sizes, results)


if __name__ == "__main__":
    main()

"""Distribution benchmarks: the first call to a node without a link, beside a call on an open link.

Connect-on-use (partisan/actors/on_demand.py) makes a call to a known node
without a link dial one: TCP connect, CURVE handshake, HELLO both ways, then
the call. This measures that first call against a call over the open link, in
the same two processes (this one and a ``membernode`` serving an echo actor):
each round closes the link the way a view change does (agreed, so the peer is
*parked*), then times one call that must dial again.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from typing import Any

import partisan


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _first_calls(keys: str, peer_spec: str, rounds: int, warm: int) -> tuple[list, list]:
    async with partisan.Node("bench", key_dir=keys, hidden=True) as node:
        peer = await node.join(peer_spec)
        target = ("echo", peer.name)
        assert node.dist is not None
        on_demand = node.dist.on_demand
        for _ in range(20):
            await partisan.call(target, 0)
        open_link: list[float] = []
        for i in range(warm):
            started = time.perf_counter()
            await partisan.call(target, i)
            open_link.append(time.perf_counter() - started)
        first: list[float] = []
        loop = asyncio.get_running_loop()
        for i in range(rounds):
            on_demand.request_close(peer)
            deadline = loop.time() + 5
            while node.links.is_connected(peer.name):
                assert loop.time() < deadline, "the agreed close did not happen"
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)  # let the peer finish its side of the close
            started = time.perf_counter()
            await partisan.call(target, i)
            first.append(time.perf_counter() - started)
        return open_link, first


def run(args: Any) -> list[dict[str, Any]]:
    """Time first calls (dial + handshake + call) against calls on an open link."""
    import logging

    from partisan.testing import NodeProcess
    from partisan.transport.keys import create_keys

    logging.getLogger("partisan").setLevel(logging.ERROR)
    quick = bool(getattr(args, "quick", False))
    rounds, warm = (10, 200) if quick else (40, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        create_keys(keys, ["bench", "peer"])
        argv = [sys.executable, "-m", "partisan.testing.membernode", "peer", "--keys", keys]
        with NodeProcess(argv) as peer:
            peer.request("serve", name="echo")
            open_link, first = asyncio.run(_first_calls(keys, str(peer.spec), rounds, warm))
    rows = []
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        value = _percentile(first, q) * 1e3
        baseline = _percentile(open_link, q) * 1e3
        rows.append(
            {
                "name": f"first call to a node without a link {label}",
                "value": value,
                "unit": "ms",
                "baseline": baseline,
                "ratio": value / baseline,
                "note": "dial + CURVE handshake + call; baseline: a call on the open link",
            }
        )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    for row in run(parser.parse_args()):
        print(row)

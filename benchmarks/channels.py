"""Channel isolation: `default` calls beside a bulk stream on another channel, or on the same one.

Partisan's reason for named channels: bulk traffic on one channel must not
delay another channel's requests. Two processes (this one, ``bench``, and a
``partisan node start`` peer with a ``data`` channel), CURVE on:

1. capacity: 8 MB messages streamed on ``data`` as fast as the link takes them;
2. idle: p50/p99 of a small `call` on ``default`` with nothing else running;
3. isolated: the same calls while 8 MB messages stream on ``data`` at half the
   measured capacity;
4. shared: the same stream, but on ``default`` — the calls now queue behind it.

Then the same again between two simulated hosts (network namespaces, as in
the chaos suite; root only) whose link is shaped to 400 Mbit/s: on loopback
an 8 MB message is on the wire for ~6 ms, too short for a call queued behind
it to wait long; on a slower link the shared channel's head-of-line wait
shows. Rows of that run say "(400mbit link)".

Goal (issue): isolated p99 <= idle p99 + 5 ms, and >= 10x better than shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import partisan
from partisan import GenServer

CHUNK = b"x" * (8 * 1024 * 1024)


class Echo(GenServer):
    def handle_call(self, request: Any, caller: Any) -> Any:
        return request


async def sink(report_to: Any) -> None:
    """Count the bytes of bulk messages; answer ``("total", n)`` to a ``"report"``."""
    total = 0
    while True:
        msg = await partisan.receive()
        if msg == "report":
            partisan.send(report_to, ("total", total))
        else:
            total += len(msg)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _capacity(target: Any, seconds: float) -> float:
    """Bytes/s the link carries for 8 MB messages on ``data`` (sent, then all received)."""
    started = time.perf_counter()
    sent = 0
    while time.perf_counter() - started < seconds:
        await partisan.send(target, CHUNK, channel="data", wait=True, timeout=30)
        sent += len(CHUNK)
    partisan.send(target, "report", channel="data")
    while True:
        msg = await partisan.receive(timeout=60)
        if isinstance(msg, tuple) and msg[0] == "total" and msg[1] >= sent:
            break
    return sent / (time.perf_counter() - started)


async def _stream(target: Any, channel: str, rate: float, stop: asyncio.Event) -> int:
    """Send 8 MB messages at `rate` bytes/s until `stop`; returns how many."""
    interval = len(CHUNK) / rate
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    count = 0
    while not stop.is_set():
        await partisan.send(target, CHUNK, channel=channel, wait=True, timeout=30)
        count += 1
        next_at += interval
        delay = next_at - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return count


async def _calls(echo: Any, n: int) -> list[float]:
    rtts = []
    for i in range(n):
        started = time.perf_counter()
        await partisan.call(echo, i, timeout=60)
        rtts.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)  # a request every ~10 ms, as a service would see them
    return rtts


async def _under_stream(echo: Any, target: Any, channel: str, rate: float, n: int) -> list[float]:
    stop = asyncio.Event()
    streamer = asyncio.ensure_future(_stream(target, channel, rate, stop))
    await asyncio.sleep(0.5)  # let the stream reach its rate
    try:
        return await _calls(echo, n)
    finally:
        stop.set()
        await streamer


async def _run(
    keys: str, peer: str, quick: bool, label: str = "", **options: Any
) -> list[dict[str, Any]]:
    n = 100 if quick else 300
    node_options = {"key_dir": keys, "hidden": True, "channels": ("data:1",), **options}
    async with partisan.Node("bench", **node_options) as node:
        await node.sync_join(peer)
        echo = await Echo.start(node="peer")
        target = await partisan.spawn(sink, partisan.self(), node="peer")
        await _calls(echo, 20)
        capacity = await _capacity(target, 1.5 if quick else 3.0)
        idle = await _calls(echo, n)
        isolated = await _under_stream(echo, target, "data", capacity / 2, n)
        shared = await _under_stream(echo, target, "default", capacity / 2, n)
    p99 = {
        k: _percentile(v, 0.99) * 1e3
        for k, v in (("idle", idle), ("isolated", isolated), ("shared", shared))
    }
    p50 = {
        k: _percentile(v, 0.5) * 1e3
        for k, v in (("idle", idle), ("isolated", isolated), ("shared", shared))
    }
    return [
        {
            "name": f"link capacity{label}, 8 MB messages on data",
            "value": capacity / 1e6,
            "unit": "MB/s",
        },
        {
            "name": f"default call p99{label}, idle",
            "value": p99["idle"],
            "unit": "ms",
            "note": f"p50 {p50['idle']:.2f} ms",
        },
        {
            "name": f"default call p99{label}, 8 MB stream on data at half capacity",
            "value": p99["isolated"],
            "unit": "ms",
            "baseline": p99["idle"],
            "goal": f"<= {p99['idle'] + 5:.1f} (idle + 5 ms)",
            "note": f"p50 {p50['isolated']:.2f} ms",
        },
        {
            "name": f"default call p99{label}, the same stream on default",
            "value": p99["shared"],
            "unit": "ms",
            "baseline": p99["isolated"],
            "ratio": p99["shared"] / p99["isolated"],
            "goal": ">= 10 (shared / isolated)",
            "note": f"p50 {p50['shared']:.2f} ms",
        },
    ]


#: The shaped link: the bench host's egress (the bulk stream's direction) through a
#: token bucket. 400 Mbit/s puts an 8 MB message on the wire for ~170 ms; a 2 ms
#: queue bound keeps the bulk connection's packets from queueing ahead of a call's
#: for longer than that in the qdisc (TCP backs off instead).
SHAPED_RATE = "400mbit"
SHAPED_QUEUE = "2ms"

_PEER_ARGS = ["--channels", "data:1", "--import", "benchmarks.channels"]


def _peer_argv(keys: str) -> list[str]:
    return [sys.executable, "-m", "partisan", "node", "start", "peer", "--keys", keys, *_PEER_ARGS]


def _with_cwd_on_path() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
    return env


def _shaped(keys: str, quick: bool) -> list[dict[str, Any]]:
    """The same three figures between two simulated hosts over a rate-limited link.

    On loopback an 8 MB message is on the wire for a few ms, so a call that
    queues behind one waits little longer than one that does not; a slower
    link is where a shared channel's head-of-line wait shows. Needs root and
    iproute2 (the chaos suite's simulated hosts); without them, no rows.
    """
    import json

    from partisan.testing.hosts import SimulatedHosts, capability_problem

    if capability_problem() is not None:
        return []
    os.environ.update(_with_cwd_on_path())  # the hosts' processes inherit it
    with SimulatedHosts(2) as hosts:
        here, there = hosts["h1"], hosts["h2"]
        peer = there.start_node("peer", "--keys", keys, *_PEER_ARGS, module="partisan")
        here.run(
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
            "rate", SHAPED_RATE, "burst", "256kb", "latency", SHAPED_QUEUE,
        )  # fmt: skip
        argv = [sys.executable, "-m", "benchmarks.channels", "--inside", keys]
        argv += ["--peer", f"peer@{peer.address}", "--host", here.address]
        argv += ["--quick"] if quick else []
        done = subprocess.run(
            here.exec_argv(argv), capture_output=True, text=True, timeout=600, check=True
        )
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def run(args: Any) -> list[dict[str, Any]]:
    """Run the isolation benchmark against a peer node process: on loopback, then shaped."""
    import logging

    from partisan.testing import NodeProcess
    from partisan.transport.keys import create_keys

    logging.getLogger("partisan").setLevel(logging.ERROR)
    quick = bool(getattr(args, "quick", False))
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        create_keys(keys, ["bench", "peer"])
        with NodeProcess(_peer_argv(keys), env=_with_cwd_on_path()) as peer:
            rows = asyncio.run(_run(keys, f"peer@{peer.address}", quick))
        return rows + _shaped(keys, quick)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--inside", metavar="KEYS", help="(internal) the shaped run's bench side")
    parser.add_argument("--peer")
    parser.add_argument("--host")
    options = parser.parse_args()
    if options.inside:
        label = f" ({SHAPED_RATE} link)"
        rows = asyncio.run(
            _run(options.inside, options.peer, options.quick, label, host=options.host)
        )
        for row in rows:
            print(json.dumps(row), flush=True)
    else:
        for row in run(options):
            print(row)

"""Delivery benchmarks: acked and causal channels beside a plain one; fault injection's cost.

Two processes (this one, ``bench``, and a ``partisan node start`` peer), CURVE
on, channels ``plain:1``, ``log:1:acked`` and ``clog:1:causal``:

1. throughput: 100 B messages sent as fast as the channel takes them (an
   `Overloaded` waits a moment and retries) to a counter actor on the peer,
   until it has them all; the acked channel beside the plain one (goal: >=
   0.5x), the causal one beside the acked one (its overhead per message);
2. latency: p50/p99 round trip of one message out and one back on the same
   channel (an echo actor), nothing else running;
Each pair of processes is pinned to two cores (one each), as placement drift
between runs moves the figures more than the differences measured.

3. fault injection compiled in but unused: the ``actors`` benchmark's remote
   call p50 and cast throughput, each run in a fresh pair of processes, nine
   times with ``PARTISAN_FAULTS=off`` and nine without, alternating (and which
   goes first alternates); medians compared (goal: within 3%).
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
from typing import Any

import partisan

CHANNELS = "plain:1,log:1:acked,clog:1:causal"
PAYLOAD = b"x" * 100


async def counter(expected: int, report_to: Any, channel: str) -> None:
    """Count messages; tell `report_to` once `expected` arrived."""
    seen = 0
    while seen < expected:
        await partisan.receive()
        seen += 1
    partisan.send(report_to, ("done", seen), channel=channel)


async def echo(channel: str) -> None:
    """Send every ``(pid, n)`` back as `n` on `channel`."""
    while True:
        pid, n = await partisan.receive()
        partisan.send(pid, n, channel=channel)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _throughput(channel: str, n: int) -> float:
    me = partisan.self()
    sink = await partisan.spawn(counter, n, me, channel, node="peer")
    send = partisan.send
    started = time.perf_counter()
    sent = 0
    while sent < n:
        try:
            send(sink, PAYLOAD, channel=channel)
            sent += 1
        except partisan.Overloaded:
            await asyncio.sleep(0.001)
        if sent % 500 == 0:
            await asyncio.sleep(0)  # let the transport (and the acks) run
    msg = await partisan.receive(timeout=120)
    assert msg == ("done", n), msg
    return n / (time.perf_counter() - started)


async def _round_trips(channel: str, n: int) -> list[float]:
    me = partisan.self()
    peer_echo = await partisan.spawn(echo, channel, node="peer")
    out = []
    for i in range(n):
        started = time.perf_counter()
        partisan.send(peer_echo, (me, i), channel=channel)
        got = await partisan.receive(timeout=10)
        assert got == i, got
        out.append(time.perf_counter() - started)
    partisan.exit(peer_echo, "kill")
    return out


async def _channels(keys: str, peer_address: str, quick: bool) -> list[dict[str, Any]]:
    n = 5_000 if quick else 30_000
    trips = 300 if quick else 2_000
    async with partisan.Node("bench", key_dir=keys, hidden=True, channels=CHANNELS) as node:
        await node.sync_join(f"peer@{peer_address}")
        rates: dict[str, list[float]] = {"plain": [], "log": [], "clog": []}
        await _throughput("plain", 500)  # warm up
        for _ in range(3):  # interleaved rounds: load drifts, the ratios should not
            for channel in rates:
                rates[channel].append(await _throughput(channel, n // 3))
        rtts = {channel: await _round_trips(channel, trips) for channel in rates}
        delivery = node.dist.delivery if node.dist is not None else None
        stats = delivery.statistics() if delivery is not None else None
    plain, acked, causal = (statistics.median(rates[c]) for c in ("plain", "log", "clog"))
    rows: list[dict[str, Any]] = [
        {"name": "plain channel throughput, 100 B", "value": plain, "unit": "msg/s"},
        {
            "name": "acked channel throughput, 100 B",
            "value": acked,
            "unit": "msg/s",
            "baseline": plain,
            "ratio": acked / plain,
            "goal": ">= 0.5",
            "note": "baseline: the plain channel, same run",
        },
        {
            "name": "causal channel throughput, 100 B",
            "value": causal,
            "unit": "msg/s",
            "baseline": acked,
            "ratio": causal / acked,
            "note": "baseline: the acked channel (causal implies acked)",
        },
        {
            "name": "causal overhead per message",
            "value": (1 / causal - 1 / acked) * 1e6,
            "unit": "us",
            "note": "1/causal - 1/acked throughput (two nodes: dependencies of 1-2 streams)",
        },
    ]
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        base = _percentile(rtts["plain"], q) * 1e3
        for channel, name in (("plain", "plain"), ("log", "acked"), ("clog", "causal")):
            value = _percentile(rtts[channel], q) * 1e3
            row: dict[str, Any] = {
                "name": f"{name} channel round trip {label}",
                "value": value,
                "unit": "ms",
            }
            if channel != "plain":
                row.update(baseline=base, ratio=value / base, note="baseline: the plain channel")
            rows.append(row)
    if stats is not None:
        rows.append(
            {
                "name": "acked-layer retransmissions during the run",
                "value": stats.retransmitted,
                "unit": "msgs",
                "note": f"sent {stats.sent}, lost {stats.lost} (no faults: both should be 0)",
            }
        )
    return rows


def _cast_call_child(quick: bool) -> None:
    """In a child process: the actors benchmark's remote rows, as JSON on stdout."""
    from benchmarks.actors import _remote
    from partisan.testing import NodeProcess
    from partisan.transport.keys import create_keys

    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        create_keys(keys, ["bench", "peer"])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "partisan", "node", "start", "peer", "--keys", keys]
        with NodeProcess(argv, env=env) as peer:
            _pin(peer.proc.pid)
            rows = asyncio.run(_remote(keys, peer.address, quick))
    print(json.dumps({r["name"]: r["value"] for r in rows}))


def _pin(peer_pid: int) -> None:
    """This process on one core, the peer on another: run-to-run placement drift otherwise
    moves call latency by 30-40% (measured), far more than what is being compared."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(peer_pid, {1})
        os.sched_setaffinity(0, {0})


def _fault_overhead(quick: bool, runs: int = 5) -> list[dict[str, Any]]:
    figures: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    for i in range(runs):
        # Alternating, and which goes first alternates too: drift and warm-up hit both alike.
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            env = dict(os.environ)
            env.pop("PARTISAN_FAULTS", None)
            if mode == "off":
                env["PARTISAN_FAULTS"] = "off"
            argv = [sys.executable, "-m", "benchmarks.delivery", "--cast-call"]
            if quick:
                argv.append("--quick")
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"cast/call child failed: {done.stderr[-2000:]}")
            for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                figures[mode].setdefault(name, []).append(value)
    rows = []
    for name, unit in (
        ("remote call round trip p50", "us"),
        ("remote call round trip p99", "us"),
        ("remote cast throughput, 100 B", "msg/s"),
    ):
        on, off = statistics.median(figures["on"][name]), statistics.median(figures["off"][name])
        rows.append(
            {
                "name": f"{name}, fault injection compiled in (unused)",
                "value": on,
                "unit": unit,
                "baseline": off,
                "ratio": on / off,
                "goal": "within 3%" if "p99" not in name else None,
                "note": f"baseline: PARTISAN_FAULTS=off; median of {runs} runs each, alternating",
            }
        )
    return rows


def run(args: Any) -> list[dict[str, Any]]:
    """Acked/causal channel figures beside a plain channel, then fault injection's cost."""
    import logging

    from partisan.testing import NodeProcess
    from partisan.transport.keys import create_keys

    logging.getLogger("partisan").setLevel(logging.ERROR)
    quick = bool(getattr(args, "quick", False))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        create_keys(keys, ["bench", "peer"])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "partisan", "node", "start", "peer", "--keys", keys]
        argv += ["--channels", CHANNELS]
        with NodeProcess(argv, env=env) as peer:
            _pin(peer.proc.pid)
            rows += asyncio.run(_channels(keys, peer.address, quick))
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, range(os.cpu_count() or 1))  # the children choose their own
    rows += _fault_overhead(quick, runs=3 if quick else 9)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cast-call", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.cast_call:
        _cast_call_child(parsed.quick)
    else:
        for result in run(parsed):
            print(result)

"""Membernode commands for the local chaos scenarios: a slow consumer, a crash loop, Pid sends.

Mixed into `membernode.MemberNode` (docs/reliability.md, "Local scenarios").
Each command drives a workload inside the node and answers with what a user
of the node could observe: counters, timings, signals received.

Commands:

* ``whereis`` (name) — the Pid registered as `name` (``str``), or None.
* ``send_to`` (pid, count, tag) — send ``(id, key, node)`` to that exact Pid
  `count` times, recording each send with the Pid's incarnation as
  ``peer_incarnation`` (the history checker's stale-incarnation check).
* ``slow_sink`` (name, delay) — an actor registered as `name` that takes one
  message every `delay` seconds (``asyncio.sleep``: a slow consumer, not a
  blocked loop) and counts messages and payload bytes; ``slow_count`` (name)
  reads the counts.
* ``flood`` (target, name, channel, size, rate, seconds) — send `size`-byte
  payloads to ``(name, target)`` at `rate` bytes/s for `seconds`; a send
  refused with `Overloaded` is counted and retried after a short backoff.
  Answers the sends accepted, the refusals, the longest single ``send`` call.
* ``ticker`` (interval) — an actor that sleeps `interval` in a loop and
  records how late each wake-up is (the event loop's lag); ``lag`` answers
  the ticks, the worst lag since the last ``lag`` (then resets it) and RSS.
* ``crash_loop`` (every, crashes) — a supervisor (intensity `crashes`,
  period 60 s) runs a worker that raises on every `every`-th message; the
  driver monitors and links each worker incarnation, feeds it until it
  crashes, `crashes` + 1 times: the last crash exceeds the intensity and
  the supervisor must escalate to the driver (its parent, linked) once.
  Every `Down` is written with `history.record_down`. Answers the restart
  times (crash to the new worker's start), the `Down`s and `Exit`s seen per
  worker, and the supervisor's exits seen by the parent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import psutil

import partisan
from partisan.actors import api
from partisan.actors.signals import Down, Exit
from partisan.errors import Overloaded, ReceiveTimeout
from partisan.identity import Pid
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.supervisor import Supervisor
from partisan.testing.history import record_down, record_send

__all__ = ["LocalCommands"]

#: How long the crash-loop driver keeps listening for a second Down/Exit of one worker.
_ECHO_WINDOW = 0.3


class LocalCommands:
    """The commands above; `self.node` is the member's `Node`."""

    node: Any
    _slow_counts: Counter[str]
    _ticks: Counter[str]

    async def cmd_whereis(self, name: str) -> dict[str, Any]:
        pid = api.whereis(name)
        return {"pid": None if pid is None else str(pid)}

    async def cmd_send_to(self, pid: str, count: int, tag: str = "p") -> dict[str, Any]:
        dest, me = Pid.parse(pid), api.node()
        key = f"{me}.{tag}"
        for i in range(count):
            msg_id = f"{key}.{i}"
            partisan.send(dest, (msg_id, key, me))
            record_send(msg_id, dest.node, key=key, peer_incarnation=dest.incarnation)
        return {"sent": count}

    # ---------------------------------------------------------------- R9

    async def cmd_slow_sink(self, name: str, delay: float) -> dict[str, Any]:
        counts = self._slow_counts = Counter[str]()

        async def sink() -> None:
            while True:
                msg = await partisan.receive()
                counts["messages"] += 1
                counts["bytes"] += len(msg) if isinstance(msg, bytes) else 0
                await asyncio.sleep(delay)  # the slow consumer's work

        await partisan.spawn(sink, name=name)
        return {}

    async def cmd_slow_count(self, name: str) -> dict[str, Any]:
        return dict(self._slow_counts)

    async def cmd_flood(
        self, target: str, name: str, channel: str, size: int, rate: float, seconds: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        payload = b"x" * size
        sent = refused = 0
        longest = 0.0
        start = loop.time()
        while (now := loop.time()) - start < seconds:
            due = start + sent * size / rate
            # The sender's pacing; behind schedule it still yields once per send, as an
            # actor sharing the loop should.
            await asyncio.sleep(max(0.0, due - now))
            before = time.perf_counter()
            try:
                partisan.send((name, target), payload, channel=channel)
                ok = True
            except Overloaded:
                ok = False
            longest = max(longest, time.perf_counter() - before)  # the call alone
            if ok:
                sent += 1
            else:
                refused += 1
                await asyncio.sleep(0.005)  # the documented answer to Overloaded: back off
        return {"sent": sent, "refused": refused, "longest_send_ms": longest * 1000}

    async def cmd_ticker(self, interval: float = 0.01) -> dict[str, Any]:
        self._ticks = Counter[str]()
        loop = asyncio.get_running_loop()

        async def ticker() -> None:
            while True:
                before = loop.time()
                await asyncio.sleep(interval)
                late = loop.time() - before - interval
                self._ticks["ticks"] += 1
                self._ticks["worst_us"] = max(self._ticks["worst_us"], int(late * 1e6))

        await partisan.spawn(ticker)
        return {}

    async def cmd_lag(self) -> dict[str, Any]:
        ticks, worst = self._ticks["ticks"], self._ticks["worst_us"] / 1000
        self._ticks["worst_us"] = 0
        return {"ticks": ticks, "worst_lag_ms": worst, "rss": psutil.Process().memory_info().rss}

    # ---------------------------------------------------------------- R10

    async def cmd_crash_loop(self, every: int, crashes: int) -> dict[str, Any]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await partisan.spawn(_crash_driver, every, crashes, done)
        return await done


async def _crashy(every: int, marks: dict[str, list[float]]) -> None:
    """A worker that raises on every `every`-th message (and says when it started and crashed)."""
    marks["starts"].append(time.monotonic())
    n = 0
    while True:
        await partisan.receive()
        n += 1
        if n % every == 0:
            marks["crashes"].append(time.monotonic())
            raise RuntimeError(f"planted crash after {n} messages")


async def _crash_driver(every: int, crashes: int, done: asyncio.Future[dict[str, Any]]) -> None:
    try:
        done.set_result(await _crash_loop(every, crashes))
    except Exception as exc:  # the command answers with it instead of hanging
        done.set_exception(exc)


async def _crash_loop(every: int, crashes: int) -> dict[str, Any]:
    api.trap_exit(True)
    marks: dict[str, list[float]] = {"starts": [], "crashes": []}
    worker = ChildSpec("w", _crashy, (every, marks), name="crashy")
    sup = await Supervisor.start_link(SupervisorSpec([worker], intensity=crashes, period=60.0))
    downs: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    sup_exits: list[str] = []
    previous = None
    for _ in range(crashes + 1):
        pid = await _next_worker(previous)
        if pid is None:
            break
        previous = pid
        ref = api.monitor(pid)
        api.link(pid)
        for i in range(every):
            partisan.send(pid, i)
        got_down = got_exit = False
        while not (got_down and got_exit):
            msg = await partisan.receive(timeout=5.0)
            if isinstance(msg, Down) and msg.ref == ref:
                record_down(msg)
                downs[str(pid)] += 1
                got_down = True
            elif isinstance(msg, Exit) and msg.pid == pid:
                exits[str(pid)] += 1
                got_exit = True
            elif isinstance(msg, Exit) and msg.pid == sup:
                sup_exits.append(str(msg.reason))
    # Listen a little longer: a second Down/Exit of any worker, or of the supervisor.
    try:
        while True:
            msg = await partisan.receive(timeout=_ECHO_WINDOW)
            if isinstance(msg, Down):
                record_down(msg)
                downs[str(msg.pid)] += 1
            elif isinstance(msg, Exit) and msg.pid == sup:
                sup_exits.append(str(msg.reason))
            elif isinstance(msg, Exit):
                exits[str(msg.pid)] += 1
    except ReceiveTimeout:
        pass
    starts, crashed = marks["starts"], marks["crashes"]
    restarts = [(starts[i + 1] - crashed[i]) * 1000 for i in range(len(starts) - 1)]
    return {
        "restart_ms": restarts, "crashes": len(crashed), "downs": dict(downs),
        "exits": dict(exits), "sup_exits": sup_exits, "sup_alive": api.is_alive(sup),
    }  # fmt: skip


async def _next_worker(previous: Pid | None) -> Pid | None:
    """The worker registered after `previous` (None once the supervisor stopped restarting)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pid = api.whereis("crashy")
        if pid is not None and pid != previous:
            return pid
        await asyncio.sleep(0.001)  # the restart is in flight: poll the registry
    return None

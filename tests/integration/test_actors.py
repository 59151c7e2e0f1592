"""Actors across real node processes (``partisan node start``) with CURVE on.

The pytest process is itself a Node (hidden, so it never enters a view) that
spawns, calls, monitors and links actors on 1-3 node processes. Code shipped
to them is either a closure (dill by value) or a class of this module, which
the node processes can import because their PYTHONPATH includes this
directory. Every failure deadline is the heartbeat timeout under test + 1 s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import partisan
from partisan import Crashed, Down, Exit, GenServer, NodeDown, NoReply
from partisan.actors.signals import Cast
from partisan.errors import CallExit
from partisan.testing import NodeProcess

HERE = Path(__file__).resolve().parent
SETTINGS = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}
DEADLINE = SETTINGS["heartbeat_timeout"] + 1.0  # failure detection + slack, from the config
NODE_NAMES = ("t", "b", "c", "s")


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    return env


def start_node(name: str, keys: Path, *args: str) -> NodeProcess:
    argv = [sys.executable, "-m", "partisan", "node", "start", name, "--keys", str(keys)]
    for field, value in SETTINGS.items():
        argv += ["--set", f"{field}={value}"]
    return NodeProcess([*argv, *args], env=node_env())


@pytest.fixture
def keys(key_dir: Callable[..., Path]) -> Path:
    return key_dir(*NODE_NAMES)


@pytest.fixture
def cluster(keys: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(name: str, *args: str) -> NodeProcess:
        node = start_node(name, keys, *args)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


def test_node(keys: Path, **options: Any) -> partisan.Node:
    return partisan.Node("t", key_dir=str(keys), hidden=True, **SETTINGS, **options)


test_node.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


class KV(GenServer):
    """A key-value server that can also defer replies (used on the node processes)."""

    def init(self) -> None:
        self.data: dict[Any, Any] = {}
        self.waiting: list[Any] = []

    def handle_call(self, request: Any, caller: partisan.From) -> Any:
        op, *args = request
        if op == "get":
            return self.data.get(args[0])
        if op == "wait":
            self.waiting.append(caller)
            return NoReply
        if op == "wake":
            for waiter in self.waiting:
                self.reply(waiter, "woken")
            return len(self.waiting)
        if op == "where":
            return partisan.node(), partisan.self()
        return None

    def handle_cast(self, request: Any) -> None:
        key, value = request
        self.data[key] = value


async def wait_forever() -> None:
    await partisan.receive(match=lambda m: m == "stop")


async def exit_with(reason: Any) -> None:
    await partisan.receive()
    partisan.exit(partisan.self(), reason)


async def crash_on_message() -> None:
    msg = await partisan.receive()
    raise ValueError(f"bad {msg}")


async def drain_until_marker() -> list[Any]:
    partisan.send(partisan.self(), "marker")
    seen = []
    while (msg := await partisan.receive(timeout=5)) != "marker":
        seen.append(msg)
    return seen


@pytest.mark.timeout(60)
def test_remote_calls_cast_deferred_reply_closure_rpc_and_timers(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b = cluster("b")

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            kv = await KV.start(node="b", name="kv")
            assert await partisan.call(kv, ("where",)) == ("b", kv)
            assert await partisan.call(("kv", "b"), ("where",)) == ("b", kv)
            partisan.cast(("kv", "b"), ("colour", "green"))
            assert await partisan.call(kv, ("get", "colour")) == "green"
            waiter = asyncio.ensure_future(partisan.call(kv, ("wait",)))
            while not await partisan.call(kv, ("wake",)):
                pass  # until the deferred call was queued; each wake is one round trip
            assert await waiter == "woken"
            me, captured = partisan.self(), {"answer": 42}

            async def closure() -> None:
                partisan.send(me, (partisan.node(), captured["answer"]))

            await partisan.spawn(closure, node="b")
            assert await partisan.receive(timeout=5) == ("b", 42)
            assert await partisan.rpc("b", sorted, [3, 1, 2]) == [1, 2, 3]
            assert await partisan.rpc("b", lambda: partisan.node()) == "b"
            fired = partisan.send_after(0.05, kv, Cast(("t", 1)))
            cancelled = partisan.send_after(0.05, kv, Cast(("c", 1)))
            assert partisan.cancel_timer(cancelled) and fired
            partisan.send_after(0.2, me, "later")
            assert await partisan.receive(timeout=5) == "later"
            assert await partisan.call(kv, ("get", "t")) == 1
            assert await partisan.call(kv, ("get", "c")) is None

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_every_down_reason_demonitor_and_flush(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b, c = cluster("b"), cluster("c")

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            await node.join(f"c@{c.address}")
            normal = await partisan.spawn(wait_forever, node="b")
            custom = await partisan.spawn(exit_with, "frop", node="b")
            crash = await partisan.spawn(crash_on_message, node="b")
            for pid in (normal, custom, crash):
                partisan.monitor(pid)
            for pid in (normal, custom, crash):
                partisan.send(pid, "stop")
            downs = {}
            for _ in range(3):
                down = await partisan.receive(match=Down, timeout=5)
                downs[down.pid] = down.reason
            assert downs[normal] == "normal" and downs[custom] == "frop"
            assert isinstance(downs[crash], Crashed) and downs[crash].message == "bad stop"
            assert "crash_on_message" in downs[crash].traceback_text
            ref = partisan.monitor(normal)
            assert await partisan.receive(match=Down, timeout=5) == Down(ref, normal, "noproc")
            # demonitor before the exit: no Down; flush: a queued Down is removed
            quiet = await partisan.spawn(wait_forever, node="b")
            dropped, flushed = partisan.monitor(quiet), partisan.monitor(quiet)
            witness = partisan.monitor(quiet)  # its Down is sent after the flushed one's
            assert partisan.demonitor(dropped)
            partisan.send(quiet, "stop")
            await partisan.receive(
                match=lambda m: isinstance(m, Down) and m.ref == witness, timeout=5
            )
            assert partisan.demonitor(flushed, flush=True) is False  # it had fired: now removed
            assert [m for m in await drain_until_marker() if isinstance(m, Down)] == []
            # noconnection: the node is killed
            on_c = await partisan.spawn(wait_forever, node="c")
            ref = partisan.monitor(on_c)
            started = time.monotonic()
            c.kill()
            down = await partisan.receive(match=Down, timeout=DEADLINE)
            assert down == Down(ref, on_c, "noconnection")
            assert time.monotonic() - started < DEADLINE

    asyncio.run(main())


async def link_and_report(peer: Any, report_to: Any, trap: bool) -> None:
    partisan.trap_exit(trap)
    partisan.link(peer)
    # The link request travels on the lane the ping takes after it: once the
    # peer's node answered, the link is in place there (else a crash that
    # overtakes the request is answered "noproc", rightly).
    assert await partisan.ping(peer)
    partisan.send(report_to, "linked")
    partisan.send(report_to, await partisan.receive(match=Exit))


@pytest.mark.timeout(60)
def test_links_across_nodes(cluster: Callable[..., NodeProcess], keys: Path) -> None:
    b = cluster("b")
    c = cluster("c", "--join", f"b@{b.address}")

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            await node.join(f"c@{c.address}")
            me = partisan.self()
            crasher = await partisan.spawn(crash_on_message, node="b")
            victim = await partisan.spawn(link_and_report, crasher, me, False, node="c")
            await partisan.spawn(link_and_report, crasher, me, True, node="c")
            assert [await partisan.receive(timeout=5) for _ in "12"] == ["linked", "linked"]
            ref = partisan.monitor(victim)
            partisan.send(crasher, "boom")
            down = await partisan.receive(match=Down, timeout=5)
            assert down.ref == ref and isinstance(down.reason, Crashed)
            trapped = await partisan.receive(match=Exit, timeout=5)
            assert trapped.pid == crasher and isinstance(trapped.reason, Crashed)
            # and from this node: a local crash kills a remote linked actor
            local = await partisan.spawn(crash_on_message)
            remote = await partisan.spawn(link_and_report, local, me, False, node="b")
            assert await partisan.receive(timeout=5) == "linked"
            ref = partisan.monitor(remote)
            partisan.send(local, "boom")
            down = await partisan.receive(match=Down, timeout=5)
            assert down.ref == ref and isinstance(down.reason, Crashed)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_kill_9_with_100_pending_calls(cluster: Callable[..., NodeProcess], keys: Path) -> None:
    b = cluster("b")

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            partisan.monitor_node("b")
            servers = [await KV.start(node="b") for _ in range(4)]
            calls = [
                asyncio.ensure_future(partisan.call(servers[i % 4], ("wait",), timeout=30))
                for i in range(100)
            ]
            refs = [partisan.monitor(pid) for pid in servers]
            partisan.link(servers[0])  # the main pseudo-actor traps: an Exit, never a death
            assert await partisan.call(servers[3], ("get", "x")) is None  # all calls are queued
            started = time.monotonic()
            b.kill()
            results = await asyncio.wait_for(
                asyncio.gather(*calls, return_exceptions=True), DEADLINE
            )
            assert time.monotonic() - started < DEADLINE
            assert [type(r).__name__ for r in results] == ["CallExit"] * 100
            assert {r.reason for r in results} == {"noconnection"}  # type: ignore[union-attr]
            seen = await drain_until_marker()
            assert sorted(m.ref for m in seen if isinstance(m, Down)) == sorted(refs)
            assert {m.reason for m in seen if isinstance(m, Down)} == {"noconnection"}
            assert [m for m in seen if isinstance(m, NodeDown)] == [
                NodeDown("b", m.reason) for m in seen if isinstance(m, NodeDown)
            ]
            assert len([m for m in seen if isinstance(m, NodeDown)]) == 1
            assert [m for m in seen if isinstance(m, Exit)] == [Exit(servers[0], "noconnection")]
            assert node.statistics().runtime.monitors == 0  # type: ignore[union-attr]

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_restarted_node_old_pids_dead_new_ones_work(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b = cluster("b")
    port = b.address.rsplit(":", 1)[1]

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            partisan.monitor_node("b")
            old = await KV.start(node="b", name="kv")
            b.kill()
            assert (await partisan.receive(match=NodeDown, timeout=DEADLINE)).node == "b"
            b2 = await asyncio.to_thread(cluster, "b", "--port", port)
            assert b2.incarnation > old.incarnation
            await node.join(f"b@{b2.address}")
            ref = partisan.monitor(old)
            assert await partisan.receive(match=Down, timeout=5) == Down(ref, old, "noproc")
            assert not partisan.is_alive(old) and not await partisan.ping(old)
            before = node.statistics().drops.get("stale_incarnation", 0)
            partisan.send(old, "hello?")
            assert node.statistics().drops["stale_incarnation"] == before + 1
            with pytest.raises(CallExit) as info:
                await partisan.call(old, ("get", "x"))
            assert info.value.reason == "noproc"
            new = await KV.start(node="b", name="kv")
            assert new.incarnation == b2.incarnation
            assert await partisan.call(("kv", "b"), ("where",)) == ("b", new)
            assert partisan.is_alive(new) and await partisan.ping(new)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_hidden_node_not_in_nodes_and_ten_thousand_actors_leave_no_tasks(
    cluster: Callable[..., NodeProcess], keys: Path
) -> None:
    b = cluster("b")
    c = cluster("c", "--join", f"b@{b.address}")

    async def spawn_and_stop(count: int) -> tuple[int, int, int]:
        before = len(asyncio.all_tasks())
        pids = [await partisan.spawn(wait_forever) for _ in range(count)]
        during = len(asyncio.all_tasks())
        last = partisan.monitor(pids[-1])
        for pid in pids:
            partisan.send(pid, "stop")
        await partisan.receive(match=lambda m: isinstance(m, Down) and m.ref == last, timeout=30)
        for _ in range(3):
            await asyncio.sleep(0)  # ok-sleep: let the loop drop finished tasks
        return before, during, len(asyncio.all_tasks())

    async def main() -> None:
        async with test_node(keys) as node:
            await node.join(f"b@{b.address}")
            await node.join(f"c@{c.address}")
            assert node.nodes() == ["b", "c"]
            assert await partisan.rpc("b", partisan.nodes) == ["c"]
            assert await partisan.rpc("c", partisan.members) == ["b", "c"]
            before, during, after = await partisan.rpc("b", spawn_and_stop, 10_000, timeout=60)
            assert during - before == 10_000 and after == before

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_blocking_facade_from_a_plain_script(
    cluster: Callable[..., NodeProcess], keys: Path, tmp_path: Path
) -> None:
    b = cluster("b")
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import partisan
            from partisan import blocking

            async def greeter(to):
                partisan.send(to, ("hello from", partisan.node()))

            with blocking.Node("s", key_dir={str(keys)!r}, hidden=True) as node:
                node.join("b@{b.address}")
                blocking.spawn(greeter, blocking.self(), node="b")
                print(blocking.receive(timeout=5))
                print(blocking.rpc("b", sum, [1, 2, 3]))
                print(node.nodes())
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, env=node_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["('hello from', 'b')", "6", "['b']"]

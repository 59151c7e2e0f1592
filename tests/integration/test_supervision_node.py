"""Supervision on real node processes: the application root and SIGTERM, and a supervised child
on another node that is killed (kill -9) and comes back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import partisan
from partisan.actors.signals import Exit
from partisan.supervision import api as sup
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.process_spec import ProcessSpec, ProcessStarted
from partisan.supervision.processes import ProcessSupervisor
from partisan.testing.plugin import no_leaks  # noqa: F401  # fixture, used via pytestmark

pytestmark = pytest.mark.usefixtures("no_leaks")

HERE = Path(__file__).resolve().parent
HEARTBEAT = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}
#: A lost node is noticed within the heartbeat timeout; allow a second on top (DESIGN.md).
LOSS_DEADLINE = HEARTBEAT["heartbeat_timeout"] + 1.0


_APP = textwrap.dedent(
    """
    import asyncio, json, sys
    import partisan
    from partisan import ChildSpec, SupervisorSpec

    def say(**kw):
        print(json.dumps(kw), flush=True)

    async def worker(name):
        partisan.trap_exit(True)
        say(started=name)
        while True:
            msg = await partisan.receive()
            if isinstance(msg, partisan.Exit) and msg.reason == "shutdown":
                await asyncio.sleep(0.05)  # ok-sleep: a deliberately slow cleanup
                say(stopped=name)
                return

    async def main():
        say(ready=True)
        await asyncio.Event().wait()

    tree = SupervisorSpec([ChildSpec(n, worker, (n,)) for n in ("db", "cache", "web")])
    partisan.run(main, name="app", insecure=True, root=tree)
    say(exited=True)
    """
)


@pytest.mark.timeout(60)
def test_sigterm_stops_the_root_tree_in_reverse_order_and_exits_0(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(_APP)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1].get("ready"):
                break
        assert lines[:3] == [{"started": "db"}, {"started": "cache"}, {"started": "web"}]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        rest = [json.loads(line) for line in out.splitlines()]
        assert rest == [
            {"stopped": "web"},
            {"stopped": "cache"},
            {"stopped": "db"},
            {"exited": True},
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# ------------------------------------------------------------- remote child


async def remote_worker(tag: str) -> None:
    """Runs on node b; imported there from this module (PYTHONPATH), so pickle ships it by name."""
    await partisan.receive()  # runs until killed


async def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)  # ok-sleep: polling interval of a deadline-bounded wait


@pytest.mark.timeout(60)
def test_remote_child_is_restarted_after_its_node_is_killed_and_comes_back() -> None:
    asyncio.run(_remote_child())


async def _remote_child() -> None:
    settings = [f"--set={k}={v}" for k, v in HEARTBEAT.items()]
    node_b = ProcessSpec(
        "b",
        [
            sys.executable,
            "-m",
            "partisan",
            "node",
            "start",
            "b",
            "--insecure",
            "--port",
            "{port}",
            *settings,
        ],
        env={"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])},
        ready_timeout=20,
    )
    started: list[ProcessStarted] = []
    async with ProcessSupervisor([node_b], intensity=3, period=30) as procs:
        procs.subscribe(lambda e: started.append(e) if isinstance(e, ProcessStarted) else None)
        b_addr = procs.which_children()[0].address
        async with partisan.Node("a", insecure=True, **HEARTBEAT) as node:
            await node.join(f"b@{b_addr}")
            tree = SupervisorSpec([ChildSpec("remote", remote_worker, ("x",), node="b")])
            root = await partisan.Supervisor.start_link(tree)
            first = (await sup.which_children(root))[0].pid
            assert first is not None and first.node == "b"
            old_incarnation = first.incarnation

            procs.kill_child("b")  # kill -9 the node that runs the child
            await _wait(lambda: started, 10, "node b restarted by its process supervisor")
            assert started[0].address == b_addr  # same port, new incarnation
            # Until membership drives connections, the restarted node is re-joined explicitly.
            await _wait(lambda: _try_join(node, b_addr), LOSS_DEADLINE + 5, "re-join b")

            async def restarted() -> Any:
                pid = (await sup.which_children(root))[0].pid
                return pid if pid is not None and pid.incarnation != old_incarnation else None

            new = await _wait(restarted, LOSS_DEADLINE + 5, "the child restarted on the new b")
            assert new.node == "b" and partisan.is_alive(new) is not False
            assert await partisan.ping(new)
            # The supervisor itself never gave up.
            with pytest.raises(partisan.ReceiveTimeout):
                await partisan.receive(lambda m: isinstance(m, Exit), timeout=0)
            await partisan.actors.gen_server.stop(root, "shutdown")


async def _try_join(node: partisan.Node, address: str) -> bool:
    try:
        await node.join(f"b@{address}", timeout=1.0)
        return True
    except partisan.PartisanError:
        return False

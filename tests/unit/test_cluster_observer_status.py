"""The observer's pure parts: node status rules, process info, repair clock, event tail, signals.

The observer itself (a hidden node polling real processes) is tested in
``tests/integration/test_cluster_observer.py``; here every rule that turns
what it learnt into a `NodeStatus` runs on plain dicts.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from partisan.cluster.events import EventTail
from partisan.cluster.layout import ClusterDir
from partisan.cluster.observer import Observer
from partisan.cluster.observer_status import (
    ProcessInfo,
    RepairClock,
    node_status,
    process_info,
)
from partisan.cluster.snapshot import NodeState
from partisan.testing import wait_until

RUNNING = ProcessInfo("running", 40_000_000)

#: A child process that only has to exist for a while.
STAND_IN = "import time; time.sleep(60)"  # ok-sleep: the stand-in process itself


def entry(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": "n2",
        "address": "127.0.0.1:5002",
        "role": None,
        "os_pid": 4242,
        "incarnation": 7,
        "state": "up",
        "restarts": 1,
        "error": None,
    }
    record.update(changes)
    return record


REPORT: dict[str, Any] = {
    "name": "n2",
    "address": "127.0.0.1:5002",
    "os_pid": 4242,
    "incarnation": 7,
    "role": None,
    "manager": "hyparview",
    "members": ["n3", "n1", "n2"],
    "active": ["n3", "n1"],
    "passive": [],
    "connections": {"n1": {"membership": 1}, "n3": {"membership": 1, "default": 2}},
    "messages_in": 10,
    "messages_out": 12,
    "actors": 3,
    "max_mailbox": 0,
    "rss": 31_000_000,
    "cpu": 1.5,
}


# ---------------------------------------------------------------- node_status


def test_an_answer_makes_the_node_up_with_its_report() -> None:
    status = node_status(entry(), "hyparview", answer=REPORT, process=RUNNING)
    assert status.state is NodeState.UP and status.alive and status.live
    assert status.error is None and status.restarts == 1  # restarts: the daemon's count
    assert status.members == ("n1", "n2", "n3") and status.active == ("n1", "n3")
    assert status.connections == {"n1": {"membership": 1}, "n3": {"membership": 1, "default": 2}}
    assert status.rss == 31_000_000  # the node's own figure wins over psutil's
    assert (status.messages_in, status.messages_out, status.cpu) == (10, 12, 1.5)
    assert status.os_pid == 4242 and status.incarnation == 7 and status.manager == "hyparview"


def test_the_report_is_the_truth_about_the_process_that_answered() -> None:
    newer = dict(REPORT, incarnation=8, os_pid=5000, address="127.0.0.1:6000", role="server")
    status = node_status(entry(), "client-server", answer=newer, process=RUNNING)
    assert (status.incarnation, status.os_pid, status.address) == (8, 5000, "127.0.0.1:6000")
    assert status.role == "server"


def test_a_malformed_report_is_tolerated() -> None:
    odd = {"members": "n1", "connections": ["n1"], "rss": "lots", "actors": True}
    status = node_status(entry(), "hyparview", answer=odd, process=RUNNING)
    assert status.state is NodeState.UP and status.members == () and status.connections == {}
    assert status.rss == RUNNING.rss and status.actors is None


def test_daemon_down_is_down_with_its_error() -> None:
    status = node_status(
        entry(state="down", error="killed by SIGKILL"), "hyparview", answer=None, process=RUNNING
    )
    assert status.state is NodeState.DOWN and not status.alive
    assert status.error == "killed by SIGKILL" and status.rss is None
    bare = node_status(entry(state="down"), "hyparview", answer=None, process=ProcessInfo())
    assert bare.error == "down"


@pytest.mark.parametrize("changes", [{"state": "starting"}, {"address": None}])
def test_starting_node_is_starting(changes: dict[str, Any]) -> None:
    status = node_status(entry(**changes), "hyparview", answer=None, process=RUNNING)
    assert status.state is NodeState.STARTING and not status.alive and status.error is None


def test_restarting_node_keeps_the_daemons_reason() -> None:
    why = "killed by SIGKILL; restarting"
    status = node_status(
        entry(state="starting", error=why), "hyparview", answer=None, process=RUNNING
    )
    assert status.state is NodeState.STARTING and status.error == why


def test_process_gone_before_the_daemon_noticed_is_down() -> None:
    status = node_status(entry(), "hyparview", answer=None, process=ProcessInfo("gone"))
    assert status.state is NodeState.DOWN and status.error == "process gone"


def test_stopped_process_is_paused_alive_but_not_live() -> None:
    stopped = ProcessInfo("stopped", 30_000_000)
    status = node_status(entry(), "hyparview", answer="timeout", process=stopped)
    assert status.state is NodeState.PAUSED and status.alive and not status.live
    assert status.rss == 30_000_000 and status.error is None


def test_no_answer_is_a_timeout_starting_until_it_once_answered() -> None:
    first = node_status(entry(), "hyparview", answer=None, process=RUNNING)
    assert first.state is NodeState.STARTING and first.error == "timeout" and not first.alive
    assert first.rss == RUNNING.rss  # from psutil, since the node said nothing
    later = node_status(
        entry(), "hyparview", answer="timeout", process=RUNNING, answered_before=True
    )
    assert later.state is NodeState.UP and later.error == "timeout" and not later.live
    refused = node_status(entry(), "hyparview", answer="refused: no key", process=RUNNING)
    assert refused.error == "refused: no key"


# ---------------------------------------------------------------- process_info


def test_process_info_of_this_process_and_of_nothing() -> None:
    me = process_info(os.getpid())
    assert me.state == "running" and me.rss is not None and me.rss > 1_000_000
    assert process_info(None) == ProcessInfo() and process_info(True) == ProcessInfo()
    assert process_info(-3).state == "unknown"
    unused = next(pid for pid in range(4_000_000, 4_100_000) if not psutil.pid_exists(pid))
    assert process_info(unused).state == "gone"


@pytest.mark.timeout(20)
def test_process_info_sees_stopped_and_zombie_processes() -> None:
    child = subprocess.Popen([sys.executable, "-c", STAND_IN])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        wait_until(lambda: process_info(child.pid).state == "stopped", 5, message="stopped")
        os.kill(child.pid, signal.SIGCONT)
        wait_until(lambda: process_info(child.pid).state == "running", 5, message="running")
        child.kill()  # not reaped yet: a zombie, which is gone for us
        wait_until(lambda: process_info(child.pid).state == "gone", 5, message="zombie")
    finally:
        child.kill()
        child.wait(timeout=10)


# ---------------------------------------------------------------- repair clock / event tail


def line(second: float, node: str, event: str, peer: str | None = None) -> str:
    ts = f"2026-12-02T19:00:{second:09.6f}Z"
    return json.dumps({"ts": ts, "node": node, "event": event, "peer": peer}) + "\n"


def test_repair_clock_reads_only_what_the_logs_gained(tmp_path: Path) -> None:
    n1, n2 = tmp_path / "n1.jsonl", tmp_path / "n2.jsonl"
    n1.write_text(line(0, "n1", "node.start") + line(1, "n1", "peer.up", "n2"))
    clock = RepairClock()
    clock.update([n1, n2])  # n2's log does not exist yet
    assert clock.last_repair_s(True) is None  # start-up joins are no repair
    n2.write_text(line(10, "n2", "peer.down", "n3") + line(10.5, "n2", "view.active"))
    with n1.open("a") as out:
        out.write(line(11.25, "n1", "view.active") + '{"ts": "2026-12-02T19:00:1')  # half a line
    clock.update([n1, n2])
    assert clock.last_repair_s(True) == pytest.approx(1.25)
    assert clock.last_repair_s(False) is None  # not converged: still repairing
    with n1.open("a") as out:
        out.write('2.000000Z", "node": "n1", "event": "view.active"}\n')  # the line completed
    clock.update([n1, n2])
    assert clock.last_repair_s(True) == pytest.approx(2.0)


def test_repair_clock_caps_an_episode_at_the_convergence_it_saw(tmp_path: Path) -> None:
    log = tmp_path / "n1.jsonl"
    log.write_text(line(10, "n1", "peer.down", "n3"))
    clock = RepairClock()
    clock.update([log])
    epoch = datetime.fromisoformat("2026-12-02T19:00:10+00:00").timestamp()
    assert clock.last_repair_s(False, now=epoch + 0.2) is None  # seen broken
    with log.open("a") as out:
        out.write(line(10.4, "n1", "view.active") + line(12.0, "n1", "view.active"))
    clock.update([log])
    # Converged at +0.5 s; the churn logged until +2.0 s does not extend the repair.
    assert clock.last_repair_s(True, now=epoch + 0.5) == pytest.approx(0.5)
    assert clock.last_repair_s(True, now=epoch + 5.0) == pytest.approx(0.5)  # stays
    # Without having seen it broken (e.g. a one-shot status), the logs alone decide.
    fresh = RepairClock()
    fresh.update([log])
    assert fresh.last_repair_s(True, now=epoch + 9.0) == pytest.approx(2.0)


def test_event_tail_offsets_new_paths_and_rewrites(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(line(0, "a", "node.start") + "not json\n")
    tail = EventTail([a], from_start=False)
    assert tail.read() == []  # from the end on the first read
    with a.open("a") as out:
        out.write(line(1, "a", "peer.up", "b"))
    assert [r["event"] for r in tail.read()] == ["peer.up"]
    assert tail.read() == []  # nothing new: nothing read
    b.write_text(line(0.5, "b", "node.start"))
    tail.paths = [a, b]  # a log seen for the first time later is read from its start
    assert [r["node"] for r in tail.read()] == ["b"]
    a.write_text(line(2, "a", "node.start") + "{broken\n")  # rewritten (shorter): from its start
    assert [r["ts"][-10:] for r in tail.read()] == ["02.000000Z"]
    assert tail.malformed == 1


def test_snapshot_needs_an_entered_observer(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(Observer(ClusterDir(tmp_path), "cli-1").snapshot())

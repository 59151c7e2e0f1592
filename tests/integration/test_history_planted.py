"""The history checker catches planted violations in the event logs of a real run.

Two real node processes (`partisan.testing.membernode`) write their own event
logs; the test plants one violation of each kind, by the most real mechanism
there is, and the checker must report exactly it (and nothing on the
unplanted history):

* a **duplicate delivery**: the fault injector's ``duplicate`` rule on a plain
  channel delivers each message twice (real deliveries, real records);
* a **stale-incarnation message**: b is killed and restarted under the same
  name; a then sends to b's *old* Pid. The runtime refuses that (counted as
  ``stale_incarnation``), so the checker first reports it lost; we then plant
  its receive by the new incarnation by appending to b's log a copy of one of
  b's real receive records, with the id and incarnation rewritten;
* a **second NodeDown**: a copy of a's real ``signal.nodedown`` record of b's
  old incarnation, appended to a's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import partisan
from partisan.testing import NodeProcess, wait_until
from partisan.testing.history import (
    HistoryReport,
    check_history,
    load_history,
    record_down,
    record_send,
)

#: Fast failure detection so the restart is seen quickly (not a figure under test here).
SETTINGS = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5, "connection_interval": 0.2}
DEADLINE = 20.0


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def run(name: str, keys: Path, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
        argv += ["--manager", "full-mesh", "--event-log", str(tmp_path / f"{name}.jsonl")]
        for field, value in SETTINGS.items():
            argv += ["--set", f"{field}={value}"]
        node = NodeProcess([*argv, *args], env=dict(os.environ))
        started.append(node)
        return node

    yield run
    for node in reversed(started):
        node.stop()


def records(path: Path) -> list[dict[str, Any]]:
    return load_history([path])


def received(path: Path, tag: str) -> int:
    return sum(1 for r in records(path) if r["event"] == "app.receive" and tag in r["id"])


def append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


@pytest.mark.timeout(90)
def test_the_checker_reports_each_planted_violation_and_nothing_else(
    start: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    keys = key_dir("a", "b")
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    b = start("b", keys)
    a = start("a", keys, "--join", str(b.spec))
    b.request("sink")
    old_sink = b.request("whereis", name="sink")["pid"]

    # The unplanted history: 50 messages to b's sink Pid, each stamped with b's incarnation.
    a.request("send_to", pid=old_sink, count=50, tag="clean")
    wait_until(lambda: received(logs[1], "clean") == 50, DEADLINE, message="50 clean receives")
    clean = check_history(load_history(logs))
    assert clean.ok and (clean.sent, clean.received) == (50, 50), clean.violations

    # 1. Duplicate deliveries, by the fault injector on the plain default channel.
    a.request("fault", op="duplicate", args={"peer": "b", "channel": "default"})
    a.request("send_to", pid=old_sink, count=10, tag="dup")
    wait_until(lambda: received(logs[1], "dup") == 20, DEADLINE, message="10 messages twice")
    a.request("fault", op="clear")

    # 2. Restart b under its name; a sends to the old incarnation's Pid.
    b.kill()
    wait_until(
        lambda: any(r["event"] == "signal.nodedown" for r in records(logs[0])),
        DEADLINE,
        message="a's NodeDown of b",
    )
    b2 = start("b", keys, "--join", str(a.spec))
    b2.request("sink")
    wait_until(lambda: "b" in a.request("view")["nodes"], DEADLINE, message="a sees b again")
    a.request("send_to", pid=old_sink, count=1, tag="stale")
    wait_until(
        lambda: a.request("drops")["drops"].get("stale_incarnation", 0) >= 1,
        DEADLINE,
        message="a's runtime refusing the old Pid",
    )
    refused = check_history(load_history(logs))
    assert refused.lost == ("a.stale.0",) and not refused.stale  # the runtime held the line

    # Plant what a runtime that let it through would have logged: b2 receiving it.
    new_life = [r for r in records(logs[1]) if r["event"] == "node.start"][-1]["incarnation"]
    copied = next(r for r in records(logs[1]) if r["event"] == "app.receive")
    append(logs[1], {**copied, "id": "a.stale.0", "key": "a.stale", "incarnation": new_life})

    # 3. A second NodeDown: a's real record of b's first life, copied.
    down = next(r for r in records(logs[0]) if r["event"] == "signal.nodedown")
    append(logs[0], down)

    report: HistoryReport = check_history(load_history(logs))
    assert report.duplicated == tuple(sorted(f"a.dup.{i}" for i in range(10)))
    assert len(report.stale) == 1 and "a.stale.0" in report.stale[0], report.stale
    assert report.signal_violations == ("a: NodeDown of b twice for one incarnation",)
    assert not (report.lost or report.phantom or report.out_of_order), report.violations
    assert len(report.violations) == 12


@pytest.mark.timeout(30)
def test_record_down_and_a_stamped_send_write_what_the_checker_reads(
    key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    seen: list[Any] = []

    async def main() -> None:
        async with partisan.Node("t", key_dir=str(key_dir("t")), event_log=str(path)):

            async def quick() -> None:
                return None

            pid = await partisan.spawn(quick)
            ref = partisan.monitor(pid)
            down = await partisan.receive(lambda m: isinstance(m, partisan.Down) and m.ref == ref)
            record_down(down)
            record_send("m1", "t", peer_incarnation=pid.incarnation)
            seen.extend([pid, ref])

    asyncio.run(main())
    pid, ref = seen
    logged = {r["event"]: r for r in load_history([path])}
    assert logged["signal.down"]["ref"] == list(ref) and logged["signal.down"]["pid"] == str(pid)
    assert logged["app.send"]["peer_incarnation"] == logged["node.start"]["incarnation"]
    assert check_history(logged.values()).violations == ("lost m1",)  # nothing but the send
    twice = check_history([logged["signal.down"], logged["signal.down"]])
    assert twice.signal_violations == (
        f"Down of monitor t:{ref.incarnation}:{ref.id} delivered 2 times",
    )

"""Event logs of real node processes: what survivors wrote about a peer killed with SIGKILL."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, wait_until

FAST = ("--set", "heartbeat_interval=0.1", "--set", "heartbeat_timeout=0.5")
FAST += ("--set", "gossip_interval=0.2", "--set", "connection_interval=0.2")


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path, kind: str, peer: str | None = None) -> list[dict[str, Any]]:
    return [r for r in read(path) if r["event"] == kind and (peer is None or r["peer"] == peer)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("manager", ["full-mesh", "hyparview"])
def test_survivors_log_the_killed_peer_down_and_every_node_logs_its_start(
    manager: str, key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    keys = key_dir("n1", "n2", "n3")
    logs = {name: tmp_path / f"{name}.events.jsonl" for name in ("n1", "n2", "n3")}
    nodes: dict[str, NodeProcess] = {}

    def start(name: str, *join: str) -> NodeProcess:
        args = ["--keys", str(keys), "--manager", manager, "--event-log", str(logs[name])]
        for contact in join:
            args += ["--join", contact]
        nodes[name] = NodeProcess.start(name, *args, *FAST)
        return nodes[name]

    try:
        n1 = start("n1")
        start("n2", str(n1.spec))
        start("n3", str(n1.spec))
        for name in ("n1", "n2"):
            others = {"n1", "n2", "n3"} - {name}
            # peer.join (membership) can precede the link; a peer.down needs a
            # link, so n3 dies only once every survivor has one to it.
            wait_until(
                lambda name=name, others=others: (
                    {r["peer"] for r in events(logs[name], "peer.join")} >= others
                    and {r["peer"] for r in events(logs[name], "peer.up")} >= others
                ),
                10,
                interval=0.05,
                message=f"{name} to log peer.join and peer.up of {others}",
            )
        nodes["n3"].kill()  # SIGKILL: no BYE, no node.stop
        for name in ("n1", "n2"):
            down = wait_until(
                lambda name=name: events(logs[name], "peer.down", "n3"),
                10,
                interval=0.05,
                message=f"{name} to log n3 down",
            )
            assert down[0]["reason"] in ("connection_closed", "heartbeat_timeout")
            assert down[0]["peer_incarnation"] == nodes["n3"].incarnation
        if manager == "hyparview":
            for name in ("n1", "n2"):
                wait_until(
                    lambda name=name: any(
                        "n3" in r["removed"] for r in events(logs[name], "view.active")
                    ),
                    10,
                    interval=0.05,
                    message=f"{name} to drop n3 from its active view",
                )
        nodes["n1"].signal(signal.SIGTERM)
        assert nodes["n1"].proc.wait(timeout=15) == 0
        left = wait_until(lambda: events(logs["n2"], "peer.down", "n1"), 10, interval=0.05)
        assert left[0]["reason"] == "left"
    finally:
        for node in nodes.values():
            node.stop()

    for name, node in nodes.items():
        records = read(logs[name])
        first = records[0]
        assert first["event"] == "node.start" and first["node"] == name
        assert first["address"] == node.address and first["os_pid"] == node.pid
        assert first["incarnation"] == node.incarnation and first["manager"] == manager
        assert all(r["incarnation"] == node.incarnation for r in records)
        monos = [r["mono"] for r in records]
        assert monos == sorted(monos)
    assert events(logs["n1"], "node.stop")[0]["reason"] == "shutdown"
    assert not events(logs["n3"], "node.stop")  # killed: it never wrote one
    ups = {r["peer"]: r["peer_incarnation"] for r in events(logs["n2"], "peer.up")}
    assert ups["n1"] == nodes["n1"].incarnation

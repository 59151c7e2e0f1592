"""A hidden observer watches a cluster of any manager, and asks each node for its `report()`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import partisan
from partisan.cluster.probe import report
from partisan.testing import NodeProcess, async_wait_until

REPORT_KEYS = {
    "name",
    "address",
    "os_pid",
    "incarnation",
    "role",
    "manager",
    "members",
    "active",
    "passive",
    "connections",
    "messages_in",
    "messages_out",
    "actors",
    "max_mailbox",
    "rss",
    "cpu",
}


def _start(name: str, keys: Path, *args: str) -> NodeProcess:
    return NodeProcess.start(name, "--keys", str(keys), "--port", "0", *args)


@pytest.mark.timeout(40)
def test_a_full_mesh_hidden_node_rpcs_a_hyparview_node(key_dir: Callable[..., Path]) -> None:
    keys = key_dir("n1", "obs")
    n1 = _start("n1", keys, "--manager", "hyparview")
    try:

        async def observe() -> int:
            async with partisan.Node("obs", hidden=True, key_dir=str(keys)) as obs:
                assert obs.config.manager == "full-mesh"  # the default: not n1's
                await obs.join(str(n1.spec))
                pid: int = await partisan.rpc("n1", os.getpid)
                return pid

        assert asyncio.run(observe()) == n1.pid
    finally:
        n1.stop()


@pytest.mark.timeout(40)
def test_report_describes_the_node_that_serves_the_rpc(key_dir: Callable[..., Path]) -> None:
    keys = key_dir("n1", "n2", "obs")
    n1 = _start("n1", keys, "--manager", "hyparview")
    n2 = _start("n2", keys, "--manager", "hyparview", "--join", str(n1.spec))
    try:

        async def observe() -> tuple[dict[str, Any], dict[str, Any]]:
            async with partisan.Node("obs", hidden=True, key_dir=str(keys)) as obs:
                await obs.join(str(n1.spec))

                async def linked() -> dict[str, Any] | None:
                    got: dict[str, Any] = await partisan.rpc("n1", report)
                    return got if got["connections"].get("n2") else None

                first = await async_wait_until(linked, 10, interval=0.1, message="n1 to see n2")
                second: dict[str, Any] = await partisan.rpc("n1", report)
                return first, second

        first, second = asyncio.run(observe())
    finally:
        n2.stop()
        n1.stop()
    assert set(second) == REPORT_KEYS
    assert second["name"] == "n1" and second["address"] == n1.address
    assert second["os_pid"] == n1.pid and second["incarnation"] == n1.incarnation
    assert second["manager"] == "hyparview" and second["role"] is None
    assert second["members"] == ["n1", "n2"] and second["active"] == ["n2"]
    assert second["passive"] == []
    # The observer is connected too, but hidden: not listed.
    assert set(second["connections"]) == {"n2"}
    assert second["connections"]["n2"]["membership"] == 1
    assert second["messages_in"] > 0 and second["messages_out"] > 0
    assert second["actors"] >= 0 and second["max_mailbox"] >= 0
    assert second["rss"] > 1_000_000
    # cpu is relative to the previous report in that process: a number from the second on.
    assert isinstance(second["cpu"], float) and second["cpu"] >= 0.0
    assert first["cpu"] is None or isinstance(first["cpu"], float)


@pytest.mark.timeout(20)
def test_report_outside_a_node_says_so() -> None:
    async def main() -> None:
        async with partisan.Node("solo", insecure=True) as node:
            here = await partisan.rpc("solo", report)  # a local rpc runs in place
            assert here["name"] == "solo" and here["members"] == ["solo"]
            assert here["connections"] == {} and here["active"] == []
            assert node.spec is not None and here["address"] == node.spec.address

    asyncio.run(main())
    with pytest.raises(RuntimeError):
        report()

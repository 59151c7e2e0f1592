"""`partisan.testing.Cluster`, the helper users' tests get a real local cluster from.

What it promises and these tests check: exit leaves no process of the
cluster (daemon or node) and removes its temporary directory; `kill` returns
once the process is gone so `wait` then sees the restart; a failed ``up``
raises the CLI's own error with the failing node's log, leaves nothing
running and keeps the directory; the `partisan_cluster` fixture starts one
and takes it down at teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from partisan.testing import Cluster, ClusterCommandError
from partisan.testing.plugin import partisan_cluster

__all__ = ["partisan_cluster"]  # the fixture, for the tests below


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _processes_mentioning(directory: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if str(directory) in cmdline and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid} {cmdline[:120]}")
    return found


@pytest.mark.timeout(40)
def test_exit_stops_every_process_and_removes_the_temporary_directory() -> None:
    with Cluster(2) as cluster:
        directory = cluster.dir
        state = cluster.state()
        pids = [state["supervisor_pid"], *(node["os_pid"] for node in cluster.nodes())]
        assert all(_running(pid) for pid in pids)
        assert [node["state"] for node in cluster.nodes()] == ["up", "up"]
        status = cluster.status()
        assert status["converged"] is True
        assert [node["name"] for node in status["nodes"]] == ["n1", "n2"]
    assert [pid for pid in pids if _running(pid)] == []
    assert not directory.exists()


@pytest.mark.timeout(40)
def test_kill_then_wait_sees_the_new_incarnation(
    partisan_cluster: Callable[..., Cluster],
) -> None:
    cluster = partisan_cluster(3)
    assert cluster.dir.parent.name.startswith("test_kill_then_wait")  # in tmp_path

    async def scenario() -> None:
        async with cluster.client() as client:
            old = cluster.node("n2")
            assert await client.rpc("n2", os.getpid) == old["os_pid"]
            killed = await cluster.async_kill("n2")
            assert killed == old["os_pid"] and not _running(killed)
            await cluster.async_wait(30)
            new = cluster.node("n2")
            assert new["state"] == "up" and new["restarts"] == 1
            assert new["incarnation"] != old["incarnation"]
            # The client reaches the new incarnation (it dials n2 again by itself).
            assert await client.rpc("n2", os.getpid) == new["os_pid"]
            assert (await cluster.async_status())["converged"] is True

    asyncio.run(scenario())


@pytest.mark.timeout(40)
def test_a_failed_up_raises_the_cli_error_with_the_node_log_and_leaves_nothing() -> None:
    cluster = Cluster(2, run="no_such_module_for_partisan:main")
    with pytest.raises(ClusterCommandError) as raised:
        cluster.start()
    try:
        error = raised.value
        first_line = str(error).splitlines()[0]
        assert "partisan cluster up" in first_line and "n1 did not start" in first_line
        assert error.returncode == 1
        assert error.logs, "the failing node's log tail"
        assert "cannot import 'no_such_module_for_partisan'" in error.logs["n1"]
        assert _processes_mentioning(cluster.dir) == []
        assert (cluster.dir / "logs").is_dir()  # kept: the logs explain the failure
    finally:
        shutil.rmtree(cluster.dir, ignore_errors=True)

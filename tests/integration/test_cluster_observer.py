"""The cluster observer against real node processes and a hand-written cluster.json.

The nodes are plain ``partisan node start`` processes (no daemon: another
module's business); each test writes the cluster.json the daemon would, and
rewrites it where the daemon would have noticed something. The observer joins
as the CLI does, under a `CliIdentity` key added while the nodes run. Every
wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.observer import Observer
from partisan.cluster.snapshot import ClusterSnapshot, NodeState
from partisan.testing import NodeProcess, async_wait_until
from partisan.transport.keys import create_keys

#: Overlay changes (joins, a HyParView repair after a kill) settle well within this on two cores.
SETTLE = 20.0
NAMES = ("n1", "n2", "n3")


@pytest.fixture
def cluster(tmp_path: Any) -> ClusterDir:
    """A cluster directory with keys for n1..n4 (n4: a name that never runs)."""
    directory = ClusterDir(tmp_path / "cluster")
    directory.make()
    create_keys(directory.keys, [*NAMES, "n4"])
    return directory


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """Node processes a test started; all stopped at teardown, even paused or killed ones."""
    started: list[NodeProcess] = []
    yield started
    for node in reversed(started):
        node.stop()


def start(
    cluster: ClusterDir, started: list[NodeProcess], name: str, manager: str, *args: str
) -> NodeProcess:
    node = NodeProcess.start(
        name,
        "--keys",
        str(cluster.keys),
        "--port",
        "0",
        "--manager",
        manager,
        "--event-log",
        str(cluster.event_log(name)),
        *args,
    )
    started.append(node)
    return node


def start_three(
    cluster: ClusterDir, started: list[NodeProcess], manager: str = "hyparview"
) -> list[NodeProcess]:
    """n1, then n2 and n3 joining it (client-server: n1 serves, n2 and n3 are clients)."""
    roles = {"n1": "server", "n2": "client", "n3": "client"}

    def role(name: str) -> list[str]:
        return ["--role", roles[name]] if manager == "client-server" else []

    n1 = start(cluster, started, "n1", manager, *role("n1"))
    rest = [
        start(cluster, started, name, manager, "--join", str(n1.spec), *role(name))
        for name in NAMES[1:]
    ]
    write_state(cluster, manager, [n1, *rest], roles=roles if manager == "client-server" else {})
    return [n1, *rest]


def entry(node: NodeProcess, cluster: ClusterDir, **changes: Any) -> dict[str, Any]:
    """The daemon's record of a running node (`changes` override keys)."""
    record: dict[str, Any] = {
        "name": node.name,
        "address": node.address,
        "role": None,
        "os_pid": node.pid,
        "incarnation": node.incarnation,
        "log": str(cluster.node_log(node.name)),
        "event_log": str(cluster.event_log(node.name)),
        "state": "up",
        "restarts": 0,
        "error": None,
    }
    record.update(changes)
    return record


def write_state(
    cluster: ClusterDir,
    manager: str,
    nodes: list[NodeProcess],
    *,
    roles: dict[str, str] | None = None,
    changes: dict[str, dict[str, Any]] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> None:
    """Write cluster.json as the daemon would (atomically), for `nodes` plus `extra` entries."""
    roles, changes = roles or {}, changes or {}
    records = [entry(n, cluster, role=roles.get(n.name), **changes.get(n.name, {})) for n in nodes]
    cluster.write_state(
        {
            "version": 1,
            "state": "running",
            "manager": manager,
            "dir": str(cluster.root),
            "supervisor_pid": os.getpid(),
            "plan": {"n": len(records), "manager": manager},
            "configured_links": [],
            "nodes": records + (extra or []),
        }
    )


def summary(snapshot: ClusterSnapshot) -> str:
    """What a failed wait shows: each node's state, views and error."""
    rows = [
        f"{n.name}: {n.state.value} alive={n.alive} members={n.members} active={n.active} "
        f"conn={sorted(n.connections)} error={n.error}"
        for n in snapshot.nodes
    ]
    return f"converged={snapshot.converged} {snapshot.health}\n  " + "\n  ".join(rows)


async def wait_for(
    observer: Observer, condition: Callable[[ClusterSnapshot], bool], what: str
) -> ClusterSnapshot:
    """Poll snapshots until `condition` holds (deadline `SETTLE`); the failure shows the last one."""
    last: list[ClusterSnapshot] = []

    async def check() -> ClusterSnapshot | None:
        snapshot = await observer.snapshot()
        last[:] = [snapshot]
        return snapshot if condition(snapshot) else None

    found: ClusterSnapshot | None = await async_wait_until(
        check,
        SETTLE,
        interval=0.1,
        message=lambda: f"{what}; last snapshot: {summary(last[0]) if last else 'none'}",
    )
    assert found is not None
    return found


def state_of(snapshot: ClusterSnapshot, name: str) -> NodeState | None:
    status = snapshot.node(name)
    return None if status is None else status.state


def up(snapshot: ClusterSnapshot, *names: str) -> bool:
    return all(state_of(snapshot, n) is NodeState.UP for n in names)


def converged_with(*names: str) -> Callable[[ClusterSnapshot], bool]:
    return lambda s: s.converged and up(s, *names)


# ---------------------------------------------------------------- tests


@pytest.mark.timeout(60)
def test_snapshot_of_three_hyparview_nodes(cluster: ClusterDir, nodes: list[NodeProcess]) -> None:
    started = start_three(cluster, nodes)
    write_state(cluster, "hyparview", started, changes={"n2": {"restarts": 2}})

    async def main() -> tuple[ClusterSnapshot, float]:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                await wait_for(observer, converged_with(*NAMES), "3 converged nodes")
                began = time.perf_counter()
                snapshot = await observer.snapshot()
                return snapshot, time.perf_counter() - began

    snapshot, took = asyncio.run(main())
    assert snapshot.manager == "hyparview" and snapshot.converged, summary(snapshot)
    assert [n.name for n in snapshot.nodes] == list(NAMES)
    for status, process in zip(snapshot.nodes, started, strict=True):
        others = tuple(n for n in NAMES if n != status.name)
        assert status.state is NodeState.UP and status.alive and status.error is None
        assert status.members == NAMES and status.active == others, summary(snapshot)
        assert set(status.connections) == set(others)  # the hidden observer is not listed
        assert status.os_pid == process.pid and status.incarnation == process.incarnation
        assert status.address == process.address and status.manager == "hyparview"
        assert status.rss is not None and status.rss > 1_000_000
        assert status.messages_in is not None and status.messages_in > 0
    assert [n.restarts for n in snapshot.nodes] == [0, 2, 0]  # from cluster.json
    health = snapshot.health
    assert (health.alive, health.dead, health.components) == (3, 0, 1)
    assert health.asymmetric_edges == 0 and health.stale_references == 0
    assert health.last_repair_s is None  # the start-up joins are not a repair
    assert took < 1.0, f"a snapshot of 3 nodes took {took:.3f} s"


@pytest.mark.timeout(60)
def test_paused_node_unconverges_the_cluster_until_it_resumes(
    cluster: ClusterDir, nodes: list[NodeProcess]
) -> None:
    n3_process = start_three(cluster, nodes)[2]

    async def main() -> None:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                await wait_for(observer, converged_with(*NAMES), "3 converged nodes")
                os.kill(n3_process.pid, signal.SIGSTOP)
                began = time.perf_counter()
                paused = await wait_for(
                    observer,
                    lambda s: state_of(s, "n3") is NodeState.PAUSED and not s.converged,
                    "n3 paused, the cluster not converged",
                )
                assert time.perf_counter() - began < 2.0  # psutil sees it: no detection delay
                n3 = paused.node("n3")
                assert n3 is not None and n3.alive and not n3.live and n3.rss is not None
                assert paused.health.alive == 2 and paused.health.dead == 1
                os.kill(n3_process.pid, signal.SIGCONT)
                back = await wait_for(observer, converged_with(*NAMES), "n3 back, converged")
                assert back.health.alive == 3

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_killed_node_is_down_and_the_survivors_repair(
    cluster: ClusterDir, nodes: list[NodeProcess]
) -> None:
    started = start_three(cluster, nodes)
    n3 = started[2]

    async def main() -> None:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                await wait_for(observer, converged_with(*NAMES), "3 converged nodes")
                os.kill(n3.pid, signal.SIGKILL)
                await asyncio.to_thread(n3.kill)  # reap it, as the daemon would
                # Before the daemon notices, psutil already knows the process is gone.
                gone = await observer.snapshot()
                n3_status = gone.node("n3")
                assert n3_status is not None and n3_status.state is NodeState.DOWN
                assert n3_status.error == "process gone" and not n3_status.alive
                write_state(
                    cluster,
                    "hyparview",
                    started,
                    changes={"n3": {"state": "down", "os_pid": None, "error": "killed by SIGKILL"}},
                )
                repaired = await wait_for(
                    observer,
                    lambda s: converged_with("n1", "n2")(s) and s.health.last_repair_s is not None,
                    "n1 and n2 repaired without n3",
                )
                down = repaired.node("n3")
                assert down is not None and down.state is NodeState.DOWN and not down.alive
                assert down.error == "killed by SIGKILL" and down.rss is None
                h = repaired.health
                assert (h.alive, h.dead, h.components, h.stale_references) == (2, 1, 1, 0)
                assert h.last_repair_s is not None and 0.0 <= h.last_repair_s < SETTLE
                for name in ("n1", "n2"):
                    status = repaired.node(name)
                    assert status is not None and "n3" not in status.active

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_listed_node_that_does_not_answer_times_out(
    cluster: ClusterDir, nodes: list[NodeProcess]
) -> None:
    started = start_three(cluster, nodes)
    # n4 "runs" (its pid is this test process) and listens, but never speaks ZMTP: a hung node.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        hung = {
            "name": "n4",
            "address": f"127.0.0.1:{port}",
            "role": None,
            "os_pid": os.getpid(),
            "incarnation": 1,
            "log": str(cluster.node_log("n4")),
            "event_log": str(cluster.event_log("n4")),
            "state": "up",
            "restarts": 0,
            "error": None,
        }
        write_state(cluster, "hyparview", started, extra=[hung])

        async def main() -> list[tuple[ClusterSnapshot, float]]:
            with CliIdentity(cluster) as cli:
                async with Observer(cluster, cli.name, connect_timeout=0.5) as observer:
                    await wait_for(observer, converged_with(*NAMES), "n1..n3 converged")
                    timed = []
                    for _ in range(2):  # the dial is still pending the second time
                        began = time.perf_counter()
                        snapshot = await observer.snapshot()
                        timed.append((snapshot, time.perf_counter() - began))
                    return timed

        timed = asyncio.run(main())
    for snapshot, took in timed:
        n4 = snapshot.node("n4")
        assert n4 is not None and n4.error == "timeout" and not n4.alive
        assert n4.state is NodeState.STARTING  # it never answered
        assert n4.rss is not None  # from psutil: the process is there
        assert took < 0.5 + 0.6, f"snapshot with a hung node took {took:.3f} s"
        # Nobody names n4, so it does not keep n1..n3 from having converged.
        assert snapshot.converged and up(snapshot, *NAMES)
        assert snapshot.health.alive == 3 and snapshot.health.dead == 1


@pytest.mark.timeout(60)
def test_node_that_refuses_our_key_says_so(
    cluster: ClusterDir, nodes: list[NodeProcess], tmp_path: Any
) -> None:
    """A node whose key directory lacks the CLI's key: the error names the refusal, fast."""
    own_keys = tmp_path / "n1-keys"
    shutil.copytree(cluster.keys, own_keys)  # before the CLI key exists: n1 will not know it
    n1 = NodeProcess.start("n1", "--keys", str(own_keys), "--port", "0", "--manager", "hyparview")
    nodes.append(n1)
    write_state(cluster, "hyparview", [n1])

    async def main() -> tuple[ClusterSnapshot, float]:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                await observer.snapshot()
                began = time.perf_counter()
                snapshot = await observer.snapshot()
                return snapshot, time.perf_counter() - began

    snapshot, took = asyncio.run(main())
    status = snapshot.node("n1")
    assert status is not None and not status.alive, summary(snapshot)
    assert status.error is not None and status.error.startswith("refused:"), status.error
    assert took < 1.1


@pytest.mark.timeout(60)
def test_restarted_node_is_observed_at_its_new_incarnation(
    cluster: ClusterDir, nodes: list[NodeProcess]
) -> None:
    started = start_three(cluster, nodes)
    n1, n2, n3 = started

    async def main() -> None:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                await wait_for(observer, converged_with(*NAMES), "3 converged nodes")
                port = n3.address.rsplit(":", 1)[1]
                await asyncio.to_thread(n3.kill)
                # The daemon restarts a node on its old port: same address, new incarnation.
                again = await asyncio.to_thread(
                    start, cluster, nodes, "n3", "hyparview", "--join", str(n1.spec), "--port", port
                )
                assert again.address == n3.address and again.incarnation != n3.incarnation
                write_state(cluster, "hyparview", [n1, n2, again], changes={"n3": {"restarts": 1}})
                back = await wait_for(
                    observer,
                    lambda s: (
                        converged_with(*NAMES)(s)
                        and getattr(s.node("n3"), "incarnation", None) == again.incarnation
                    ),
                    "n3's new incarnation up and converged",
                )
                status = back.node("n3")
                assert status is not None and status.os_pid == again.pid and status.restarts == 1

    asyncio.run(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("manager", ["full-mesh", "client-server"])
def test_other_managers_converge_too(
    cluster: ClusterDir, nodes: list[NodeProcess], manager: str
) -> None:
    start_three(cluster, nodes, manager)

    async def main() -> ClusterSnapshot:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                return await wait_for(observer, converged_with(*NAMES), f"{manager} converged")

    snapshot = asyncio.run(main())
    assert snapshot.manager == manager
    for status in snapshot.nodes:
        assert status.manager == manager and status.active == () and status.passive == ()
    if manager == "full-mesh":
        assert all(s.members == NAMES for s in snapshot.nodes), summary(snapshot)
    else:
        roles = {s.name: s.role for s in snapshot.nodes}
        assert roles == {"n1": "server", "n2": "client", "n3": "client"}
        n1 = snapshot.node("n1")
        assert n1 is not None and n1.members == NAMES
        for name in ("n2", "n3"):
            client = snapshot.node(name)
            assert client is not None and {"n1", name} <= set(client.members)
            assert "n1" in client.connections


@pytest.mark.timeout(30)
def test_cluster_with_every_node_down(cluster: ClusterDir) -> None:
    """No node to ask: the snapshot comes from cluster.json alone, and is not converged."""
    cluster.write_state(
        {
            "version": 1,
            "state": "running",
            "manager": "hyparview",
            "dir": str(cluster.root),
            "supervisor_pid": os.getpid(),
            "plan": {},
            "configured_links": [],
            "nodes": [
                {"name": "n1", "address": None, "state": "starting", "os_pid": None},
                {"name": "n2", "address": "127.0.0.1:9", "state": "down", "error": "exit 1"},
            ],
        }
    )

    async def main() -> ClusterSnapshot:
        with CliIdentity(cluster) as cli:
            async with Observer(cluster, cli.name) as observer:
                return await observer.snapshot()

    snapshot = asyncio.run(main())
    n1, n2 = snapshot.nodes
    assert n1.state is NodeState.STARTING and n1.error is None and not n1.alive
    assert n2.state is NodeState.DOWN and n2.error == "exit 1"
    assert not snapshot.converged and snapshot.health.alive == 0 and snapshot.health.dead == 2

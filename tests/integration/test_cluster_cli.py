"""``partisan cluster`` driven as a user drives it: subprocesses, exit codes, JSON on stdout.

Every command is ``python -m partisan cluster VERB ... --dir DIR`` with DIR
under ``tmp_path``; the tests read only what a user can read (the verbs'
output, DIR/cluster.json, the event logs through ``cluster events``) and ask
psutil and the kernel whether anything is left running. The `cluster`
fixture always runs ``cluster down`` and then SIGKILLs any process of the
cluster it ever saw, so a failing test leaves nothing behind.

Help and usage/exit-code checks that need no running cluster live in
``test_cluster_cli_errors.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from partisan.testing import wait_until

#: Keys every node of ``status --json`` has, always (the contract's schema 1).
NODE_KEYS = {
    "name",
    "address",
    "os_pid",
    "incarnation",
    "alive",
    "role",
    "manager",
    "state",
    "restarts",
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
    "error",
}
HEALTH_KEYS = {
    "alive",
    "dead",
    "components",
    "asymmetric_edges",
    "stale_references",
    "last_repair_s",
}
#: The node default (`Config.heartbeat_timeout`); the contract allows it + 1 s to notice a pause.
HEARTBEAT_TIMEOUT = 2.0
#: Deadline for a (re)started node to come up or an overlay to settle on two busy cores.
SETTLE = 20.0

Status = dict[str, Any]


class ClusterCli:
    """One cluster directory and the ``partisan cluster`` commands run against it.

    Remembers every supervisor pid, node pid and node port it ever saw (in
    cluster.json or ``status --json``) so the test can check that all are
    gone after ``down`` and the fixture can clean up after a failure.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.node_pids: set[int] = set()
        self.supervisor_pids: set[int] = set()
        self.ports: set[int] = set()
        self.background: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "partisan", "cluster", *args, "--dir", str(self.dir)]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.dir.parent,
        )

    def ok(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a verb that must succeed (exit 0, no traceback)."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"cluster {' '.join(args)}: {result.stderr}"
        assert "Traceback" not in result.stderr
        self.state()
        return result

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ok("up", *args, "--detach", "--wait-timeout", "40")

    def wait(self) -> None:
        """``cluster wait``; on a timeout, the failure shows what each node saw."""
        result = self.run("wait", "--timeout", str(SETTLE))
        if result.returncode != 0:
            views = [
                {k: node[k] for k in ("name", "state", "error", "members", "active", "connections")}
                for node in json.loads(self.run("status", "--json").stdout or '{"nodes": []}')[
                    "nodes"
                ]
            ]
            raise AssertionError(f"cluster wait: {result.stderr}\n" + "\n".join(map(str, views)))

    def down(self) -> None:
        self.state()
        self.ok("down")

    def state(self) -> dict[str, Any]:
        """DIR/cluster.json (the daemon writes it atomically); remembers its pids and ports."""
        doc: dict[str, Any] = json.loads((self.dir / "cluster.json").read_text())
        if isinstance(doc.get("supervisor_pid"), int):
            self.supervisor_pids.add(doc["supervisor_pid"])
        for node in doc["nodes"]:
            self._remember(node)
        return doc

    def record(self, name: str) -> dict[str, Any]:
        """The daemon's record of one node."""
        nodes: dict[str, dict[str, Any]] = {n["name"]: n for n in self.state()["nodes"]}
        return nodes[name]

    def status(self) -> Status:
        """``status --json``, checked against schema 1."""
        doc: Status = json.loads(self.ok("status", "--json").stdout)
        check_schema(doc)
        for node in doc["nodes"]:
            self._remember(node)
        return doc

    def graph(self, fmt: str) -> subprocess.CompletedProcess[str]:
        return self.run("graph", "--format", fmt)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.dir.parent,
        )
        self.background.append(proc)
        return proc

    def _remember(self, node: dict[str, Any]) -> None:
        if isinstance(node.get("os_pid"), int):
            self.node_pids.add(node["os_pid"])
        if node.get("address"):
            self.ports.add(int(node["address"].rsplit(":", 1)[1]))

    def leftovers(self) -> list[str]:
        """Every process of this cluster that still runs, described."""
        found = []
        for pid in sorted(self.node_pids | self.supervisor_pids):
            proc = ours(pid, self.dir)
            if proc is not None:
                found.append(f"{pid} {' '.join(proc.cmdline())[:100]}")
        return found

    def assert_nothing_left(self) -> None:
        """No process of the cluster runs and every port it used can be listened on again."""
        assert self.node_pids and self.supervisor_pids and self.ports
        assert self.leftovers() == []
        busy = [port for port in sorted(self.ports) if not port_is_free(port)]
        assert busy == [], f"ports still taken after down: {busy}"
        assert self.state()["state"] == "stopped"
        assert not (self.dir / "supervisor.sock").exists()

    def cleanup(self) -> None:
        """Whatever happened in the test: stop background verbs, ``down``, kill what is left."""
        for proc in self.background:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        stopped = False
        if (self.dir / "cluster.json").exists():
            with contextlib.suppress(Exception):
                stopped = self.state()["state"] == "stopped"
            if not stopped or self.leftovers():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.run("down", timeout=45)
        for pid in sorted(self.node_pids | self.supervisor_pids):
            proc = ours(pid, self.dir)
            if proc is not None:
                with contextlib.suppress(psutil.Error):
                    proc.kill()


def ours(pid: int, directory: Path) -> psutil.Process | None:
    """The live (not zombie) process `pid` if it is part of the cluster in `directory`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if str(directory) not in " ".join(proc.cmdline()):
            return None  # the pid was reused by someone else
        return proc
    except psutil.Error:
        return None


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now.

    SO_REUSEADDR as every server (ZeroMQ included) sets it: connections the
    nodes closed linger in TIME_WAIT on the kernel's side for a minute, which
    is not a process holding the port; a listening socket still is.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterCli]:
    cli = ClusterCli(tmp_path / "cluster")
    try:
        yield cli
    finally:
        cli.cleanup()


# ---------------------------------------------------------------- checks on status --json


def check_schema(doc: Status) -> None:
    assert doc["schema"] == 1
    for key in ("manager", "converged", "health", "nodes"):
        assert key in doc
    assert isinstance(doc["converged"], bool)
    assert set(doc["health"]) >= HEALTH_KEYS, doc["health"]
    for node in doc["nodes"]:
        missing = NODE_KEYS - set(node)
        assert not missing, f"{node.get('name')}: missing {sorted(missing)}"


def nodes_of(doc: Status) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in doc["nodes"]}


def live_names(doc: Status) -> set[str]:
    return {n["name"] for n in doc["nodes"] if n["alive"] and n["state"] == "up"}


def names(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def ring_neighbours(name: str, n: int) -> set[str]:
    i = int(name[1:])
    return {f"n{(i % n) + 1}", f"n{((i - 2) % n) + 1}"}


def check_topology(doc: Status, manager: str, n: int) -> None:
    """The overlay over the live nodes is the one `manager` aims for (see docs/cluster-cli.md)."""
    nodes = nodes_of(doc)
    everyone = set(names(n))
    live = live_names(doc)
    dead = everyone - live
    complete = not dead
    for name in live:
        node = nodes[name]
        members, connected = set(node["members"]), set(node["connections"])
        assert node["manager"] == manager
        if manager == "full-mesh":
            assert members == everyone if complete else members >= live, (name, members)
            assert connected >= live - {name}, (name, connected)
        elif manager == "client-server":
            servers = set(names(min(2, n)))
            assert node["role"] == ("server" if name in servers else "client"), node
            if name in servers:
                assert members == everyone if complete else members >= live, (name, members)
            else:  # the servers and itself, never another client (a dead server may linger)
                assert members <= servers | {name}, (name, members)
                assert members >= (servers & live) | {name}, (name, members)
                assert connected >= servers & live, (name, connected)
        elif manager == "static":
            expected = ring_neighbours(name, n)
            assert connected - dead == expected - dead, (name, connected)
            if complete:
                assert members == expected | {name}, (name, members)
        else:
            assert manager == "hyparview"
            assert node["active"], f"{name} has an empty active view"
            assert not set(node["active"]) & dead, (name, node["active"])
    if manager == "hyparview":
        edges = {(a, b) for a in live for b in nodes[a]["active"]}
        assert all((b, a) in edges for a, b in edges), f"one-way active edges: {edges}"
        reached, frontier = set(), [min(live)]
        while frontier:
            current = frontier.pop()
            if current not in reached:
                reached.add(current)
                frontier.extend(b for a, b in edges if a == current)
        assert reached == live, f"active views not connected: {edges}"
    assert doc["converged"] is True
    assert doc["health"]["alive"] == len(live)
    assert doc["health"]["components"] == 1


def check_graph(cluster: ClusterCli, manager: str, n: int, status: Status) -> None:
    """``graph --format json`` of a converged cluster with every node up: the contract's shape."""
    result = cluster.graph("json")
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    assert set(graph) == {"nodes", "links"}
    assert graph["nodes"] == [
        {"name": node["name"], "alive": True, "role": node["role"]} for node in status["nodes"]
    ]
    for link in graph["links"]:
        assert set(link) == {"source", "target", "kind", "symmetric"}
        assert link["symmetric"] is True, link
        assert link["kind"] == ("active" if manager == "hyparview" else "connection"), link
    pairs = {frozenset((link["source"], link["target"])) for link in graph["links"]}
    assert len(pairs) == len(graph["links"])  # a symmetric edge is listed once
    everyone = names(n)
    if manager == "full-mesh":
        expected = {frozenset((a, b)) for a in everyone for b in everyone if a < b}
    elif manager == "client-server":
        servers = set(names(min(2, n)))
        expected = {frozenset((a, b)) for a in everyone for b in servers if a != b}
    elif manager == "static":
        expected = {frozenset((a, b)) for a in everyone for b in ring_neighbours(a, n)}
    else:  # HyParView: which links depends on the joins; they must span the cluster
        expected = pairs
        reached = {"n1"}
        for _ in everyone:
            reached |= {x for pair in pairs if pair & reached for x in pair}
        assert reached == set(everyone), pairs
    assert pairs == expected


def assert_dead(node: dict[str, Any], *words: str) -> None:
    assert node["state"] == "down" and node["alive"] is False, node
    assert node["os_pid"] is None
    for word in words:
        assert word in (node["error"] or ""), node


# ---------------------------------------------------------------- a whole life per manager


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("manager", "victim"),
    [("full-mesh", "n2"), ("hyparview", "n1"), ("client-server", "n2"), ("static", "n3")],
)
def test_up_wait_status_kill_restart_down(cluster: ClusterCli, manager: str, victim: str) -> None:
    """One 4-node cluster per manager, as the README walks through it, with ``--restart never``.

    The victim is the seed (HyParView), a server (client-server) or a ring node:
    the survivors must converge without it, and it must rejoin after ``restart``.
    """
    n = 4
    up = cluster.up("-n", str(n), "--manager", manager, "--restart", "never")
    assert f"{n} {manager} nodes up and converged" in up.stderr
    cluster.wait()
    before = cluster.status()
    assert before["manager"] == manager
    assert [node["name"] for node in before["nodes"]] == names(n)
    assert all(node["state"] == "up" and node["alive"] for node in before["nodes"]), before
    assert all(node["restarts"] == 0 and node["error"] is None for node in before["nodes"])
    check_topology(before, manager, n)
    check_graph(cluster, manager, n, before)
    old = nodes_of(before)[victim]

    killed = cluster.ok("kill", victim)
    assert f"SIGKILL to {victim}" in killed.stderr
    wait_until(
        lambda: cluster.record(victim)["state"] == "down",
        SETTLE,
        message=lambda: f"the daemon to see {victim} die: {cluster.record(victim)}",
    )
    cluster.wait()  # the rest converge again
    after_kill = cluster.status()
    assert_dead(nodes_of(after_kill)[victim], "killed")
    assert nodes_of(after_kill)[victim]["restarts"] == 0  # --restart never
    assert after_kill["health"]["dead"] == 1
    check_topology(after_kill, manager, n)
    assert ours(old["os_pid"], cluster.dir) is None

    restarted = cluster.ok("restart", victim)
    assert f"{victim} restarted" in restarted.stderr
    cluster.wait()
    after = cluster.status()
    again = nodes_of(after)[victim]
    assert again["state"] == "up" and again["alive"] and again["error"] is None, again
    assert again["incarnation"] != old["incarnation"] and again["os_pid"] != old["os_pid"]
    assert again["address"] == old["address"]  # a new incarnation on its old port
    check_topology(after, manager, n)

    cluster.down()
    cluster.assert_nothing_left()


# ---------------------------------------------------------------- pause, resume, restart on failure


class Stream:
    """``status --watch --json``: one JSON document per line, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.last: Status | None = None
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stdout: Any) -> None:
        for line in stdout:
            self.lines.put(line)

    def until(self, predicate: Callable[[Status], bool], timeout: float, what: str) -> Status:
        """The first snapshot from now on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no status --watch snapshot with {what}; last: {self.last}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            doc: Status = json.loads(line)
            check_schema(doc)
            self.last = doc
            if predicate(doc):
                return doc

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        code = self.proc.wait(timeout=15)
        self._thread.join(timeout=5)
        return code


def peer_down_events(cluster: ClusterCli, peer: str) -> dict[str, float]:
    """``events --json``: for each node, the monotonic time it first logged ``peer.down`` of `peer`."""
    out = cluster.ok("events", "--json").stdout
    seen: dict[str, float] = {}
    for line in out.splitlines():
        record = json.loads(line)
        if record["event"] == "peer.down" and record["peer"] == peer:
            seen.setdefault(record["node"], record["mono"])
    return seen


@pytest.mark.timeout(90)
def test_pause_resume_and_a_crash_restarted_on_failure(cluster: ClusterCli) -> None:
    """SIGSTOP/SIGCONT through the CLI, then SIGKILL under the default ``--restart on-failure``."""
    n = 4
    cluster.up("-n", str(n), "--manager", "hyparview")
    watch = Stream(cluster.popen("status", "--watch", "--json", "--interval", "0.2"))
    start = watch.until(lambda s: s["converged"] and len(live_names(s)) == n, SETTLE, "4 up")
    paused_pid = nodes_of(start)["n3"]["os_pid"]
    peers = {name for name, node in nodes_of(start).items() if "n3" in node["active"]}
    assert peers, start

    # Pause n3. The time of the pause is when the kernel shows it stopped, not when the CLI ran.
    pause = cluster.popen("kill", "n3", "--signal", "STOP")
    process = psutil.Process(paused_pid)
    wait_until(lambda: process.status() == psutil.STATUS_STOPPED, 15, interval=0.002)
    paused_at = time.monotonic()
    _, err = pause.communicate(timeout=30)
    assert pause.returncode == 0 and "SIGSTOP to n3" in err, err

    unconverged = watch.until(lambda s: nodes_of(s)["n3"]["state"] == "paused", 10, "n3 paused")
    assert unconverged["converged"] is False, unconverged  # its peers still point at it
    assert nodes_of(unconverged)["n3"]["alive"] is True  # the process exists, it is stopped
    reported = wait_until(
        lambda: (seen := peer_down_events(cluster, "n3")).keys() >= peers and seen,
        HEARTBEAT_TIMEOUT + 10,
        interval=0.2,
        message=f"peer.down n3 from each of {sorted(peers)}",
    )
    for peer in peers:
        delay = reported[peer] - paused_at
        assert delay <= HEARTBEAT_TIMEOUT + 1.0, f"{peer} saw n3 down after {delay:.2f} s"
    forgotten = watch.until(
        lambda s: not any("n3" in n["active"] or "n3" in n["connections"] for n in s["nodes"]),
        5,
        "no live node pointing at n3",
    )
    assert nodes_of(forgotten)["n3"]["state"] == "paused"
    assert nodes_of(cluster.status())["n3"]["state"] == "paused"  # a one-shot status agrees

    resumed = cluster.ok("kill", "n3", "--signal", "CONT")
    assert "SIGCONT to n3" in resumed.stderr
    back = watch.until(
        lambda s: (
            s["converged"]
            and nodes_of(s)["n3"]["state"] == "up"
            and any("n3" in n["active"] for n in s["nodes"])
        ),
        SETTLE,
        "n3 up again and in someone's active view",
    )
    assert nodes_of(back)["n3"]["os_pid"] == paused_pid  # the same process, resumed
    cluster.wait()
    assert watch.stop() == 0

    # A crash under --restart on-failure: a new incarnation of n3, restarts 1.
    old = nodes_of(cluster.status())["n3"]
    cluster.ok("kill", "n3")
    wait_until(
        lambda: (r := cluster.record("n3"))["state"] == "up" and r["os_pid"] != old["os_pid"],
        SETTLE,
        message=lambda: f"n3 restarted by the daemon: {cluster.record('n3')}",
    )
    cluster.wait()
    after = cluster.status()
    n3 = nodes_of(after)["n3"]
    assert n3["state"] == "up" and n3["alive"] and n3["restarts"] == 1, n3
    assert n3["incarnation"] != old["incarnation"]
    check_topology(after, "hyparview", n)

    # Pictures of the same cluster.
    check_graph(cluster, "hyparview", n, after)
    dot = cluster.graph("dot")
    assert dot.returncode == 0 and dot.stdout.lstrip().startswith(("digraph", "graph"))
    svg = cluster.graph("svg")
    assert svg.returncode == 1 and svg.stdout == ""
    assert len(svg.stderr.splitlines()) == 1 and "graphviz" in svg.stderr.lower(), svg.stderr

    cluster.down()
    cluster.assert_nothing_left()


# ---------------------------------------------------------------- per-node restart limits


@pytest.mark.timeout(90)
def test_restart_limit_leaves_only_the_crashing_nodes_down(cluster: ClusterCli) -> None:
    """``--max-restarts 1``: three nodes killed twice in a row stay down; the other three carry on."""
    cluster.up("-n", "6", "--max-restarts", "1")
    victims, survivors = ["n2", "n4", "n6"], ["n1", "n3", "n5"]
    first = {name: cluster.record(name)["os_pid"] for name in victims}
    for pid in first.values():
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        records = [cluster.record(name) for name in victims]
        return all(r["state"] == "up" and r["os_pid"] not in first.values() for r in records)

    wait_until(restarted, SETTLE, message=lambda: f"restarts: {cluster.state()['nodes']}")
    # Let the peers' links to the new incarnations settle first (well within the 10 s period):
    # a node SIGKILLed within ~30 ms of its restart can stay "up" at a peer for good, a
    # transport bug reported separately, not what this test is about.
    cluster.wait()
    for name in victims:
        assert cluster.record(name)["restarts"] == 1
        os.kill(cluster.record(name)["os_pid"], signal.SIGKILL)
    wait_until(
        lambda: all(cluster.record(name)["state"] == "down" for name in victims),
        SETTLE,
        message=lambda: f"the victims left down: {cluster.state()['nodes']}",
    )
    supervisor = cluster.state()["supervisor_pid"]
    assert ours(supervisor, cluster.dir) is not None, "the daemon died"
    cluster.wait()
    status = nodes_of(cluster.status())
    for name in victims:
        # "killed by SIGKILL; left down after more than 1 restarts in 10 s"
        assert_dead(status[name], "restarts in")
    for name in survivors:
        assert status[name]["state"] == "up" and status[name]["alive"], status[name]
        assert status[name]["restarts"] == 0 and status[name]["os_pid"] is not None
    final = cluster.status()
    check_topology(final, "hyparview", 6)
    assert (final["health"]["alive"], final["health"]["dead"]) == (3, 3)
    assert cluster.state()["state"] == "running"

    cluster.down()
    cluster.assert_nothing_left()


# ---------------------------------------------------------------- a running DIR, a dead daemon


def one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.timeout(90)
def test_refusals_on_a_running_cluster_and_up_after_the_daemon_was_killed(
    cluster: ClusterCli,
) -> None:
    cluster.up("-n", "3", "--manager", "full-mesh")
    first = cluster.state()
    one_line(cluster.run("up", "-n", "3", "--detach"), 1, "already running", str(cluster.dir))
    one_line(cluster.run("kill", "n99"), 1, "n99")
    one_line(cluster.run("restart", "n99"), 1, "n99")
    assert cluster.state()["supervisor_pid"] == first["supervisor_pid"]  # nothing was touched
    cluster.wait()

    # kill -9 the daemon and at once start again in the same DIR, its nodes maybe still running.
    os.kill(first["supervisor_pid"], signal.SIGKILL)
    fresh = cluster.up("-n", "3", "--manager", "full-mesh")
    assert "warning" in fresh.stderr.lower(), fresh.stderr
    old_nodes = [node["os_pid"] for node in first["nodes"]]
    wait_until(  # they exited (the daemon's pipe closed) or `up` killed them as strays
        lambda: all(ours(pid, cluster.dir) is None for pid in old_nodes),
        5,
        message=lambda: f"the old nodes to be gone: {cluster.leftovers()}",
    )
    second = cluster.state()
    assert second["supervisor_pid"] != first["supervisor_pid"]
    assert {node["os_pid"] for node in second["nodes"]}.isdisjoint(old_nodes)
    cluster.wait()
    check_topology(cluster.status(), "full-mesh", 3)

    cluster.down()
    cluster.assert_nothing_left()

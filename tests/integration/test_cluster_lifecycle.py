"""``partisan cluster`` driven as a user drives it: subprocesses, signals, other shells, a terminal.

Every command is a real ``partisan cluster VERB --dir DIR`` process; the test
looks only at what a user can see (exit codes, stdout/stderr, DIR/cluster.json,
the process table, the ports, a tmux screen). What must never happen: a
cluster process outliving the command that is meant to stop it, a port left
bound, a CLI command disturbing another one.

The `cli` fixture remembers every directory and every daemon and node pid it
saw, and at teardown runs ``cluster down`` on each directory and SIGKILLs any
leftover process of this test (checked by command line, pids are reused), so
a failing test leaves nothing behind for the next one.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from partisan.testing import wait_until

PARTISAN = [sys.executable, "-m", "partisan"]
#: Starting a few nodes, a node noticing a dead peer, a daemon stopping its nodes:
#: each takes a second or two here; the deadlines leave room for a loaded 2-core machine.
SETTLE = 30.0
#: A human line of ``cluster events`` (and of the event stream a foreground ``up`` follows).
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} n\d+ \S+")


# ---------------------------------------------------------------- helpers


class Lines:
    """Collects a pipe's lines in a thread, so a test can wait on a long-running command's output."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed at teardown
            for line in self._stream:
                with self._lock:
                    self._lines.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines())

    def close(self) -> None:
        self._thread.join(timeout=5)
        self._stream.close()


class Background:
    """A long-running CLI command (a foreground ``up``, ``status --watch``) and its output."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        self.out = Lines(proc.stdout)
        self.err = Lines(proc.stderr)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self, timeout: float) -> int:
        """Wait for the process to exit; its code."""
        code = self.proc.wait(timeout)
        self.out.close()
        self.err.close()
        return code

    def describe(self) -> str:
        return f"stdout:\n{self.out.text()[-2000:]}\nstderr:\n{self.err.text()[-2000:]}"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """Runs ``partisan cluster`` commands for one test and cleans up after them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.dirs: list[Path] = []
        self.pids: set[int] = set()
        self.background: list[Background] = []

    def new_dir(self, name: str) -> Path:
        directory = self.tmp_path / name
        self.dirs.append(directory)
        return directory

    def run(
        self,
        *args: str,
        directory: Path,
        cwd: Path | None = None,
        timeout: float = 90.0,
        expect: int | None = 0,
    ) -> subprocess.CompletedProcess[str]:
        """``partisan cluster ARGS --dir DIRECTORY``; asserts the exit code unless `expect` is None."""
        argv = [*PARTISAN, "cluster", *args, "--dir", str(directory)]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd or self.tmp_path,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if expect is not None:
            assert done.returncode == expect, (
                f"$ {shlex.join(argv[3:])}\nexit {done.returncode}, expected {expect}\n"
                f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
            )
        return done

    def start(self, *args: str, directory: Path) -> Background:
        """``partisan cluster ARGS --dir DIRECTORY`` in the background, stdout and stderr piped."""
        # A foreground command in a terminal has SIGINT at its default; a child of a
        # non-interactive shell's background job may inherit it ignored.
        ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        proc = subprocess.Popen(
            [*PARTISAN, "cluster", *args, "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp_path,
            preexec_fn=_default_sigint if ignored else None,
        )
        background = Background(proc)
        self.background.append(background)
        return background

    def state(self, directory: Path) -> dict[str, Any]:
        """DIR/cluster.json (remembering its pids for the cleanup)."""
        doc: dict[str, Any] = json.loads((directory / "cluster.json").read_text())
        self.pids.update(_cluster_pids(doc))
        return doc

    def all_up(self, directory: Path, n: int) -> dict[str, Any] | None:
        """cluster.json once the daemon records `n` nodes up, else None."""
        try:
            doc = self.state(directory)
        except (FileNotFoundError, ValueError):
            return None  # not written yet
        nodes = doc.get("nodes", [])
        if len(nodes) == n and all(node["state"] == "up" and node["os_pid"] for node in nodes):
            return doc
        return None

    def cleanup(self) -> None:
        for background in self.background:
            if background.proc.poll() is None:
                background.proc.kill()
            background.finish(timeout=10)
        for directory in self.dirs:
            if (directory / "cluster.json").exists():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.run("down", "--timeout", "20", directory=directory, expect=None)
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if str(self.tmp_path) in " ".join(proc.cmdline()):
                    proc.kill()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()


def _cluster_pids(doc: dict[str, Any]) -> set[int]:
    pids = {node["os_pid"] for node in doc.get("nodes", []) if node.get("os_pid")}
    if doc.get("supervisor_pid"):
        pids.add(doc["supervisor_pid"])
    return pids


def _ports(doc: dict[str, Any]) -> list[int]:
    return [int(node["address"].rsplit(":", 1)[1]) for node in doc["nodes"]]


def _alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _living(pids: Iterable[int]) -> list[str]:
    described = []
    for pid in sorted(pids):
        if _alive(pid):
            with contextlib.suppress(psutil.Error):
                described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:150]}")
    return described


def _port_free(port: int, cluster_pids: set[int]) -> bool:
    """Nothing of the cluster holds `port`: a new server can bind it (as ZeroMQ does, SO_REUSEADDR).

    The node ports were ephemeral: if the bind fails because another program
    on this machine has since been given the port, the cluster still freed it.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
            return True
        except OSError:
            pass
    holders = {
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.pid is not None
    }
    return bool(holders) and not holders & cluster_pids


def _assert_nothing_left(doc: dict[str, Any], directory: Path) -> None:
    """No process of the cluster `doc` described is alive, its ports are free, DIR says stopped.

    And every node stopped on its SIGTERM: none had to be killed (a node stops in
    milliseconds; the daemon waits 5 s before SIGKILL).
    """
    log = (directory / "logs" / "supervisor.log").read_text()
    assert "ignored SIGTERM" not in log, log[-2000:]
    pids = _cluster_pids(doc)
    assert not _living(pids), f"cluster processes still alive: {_living(pids)}"
    busy = [port for port in _ports(doc) if not _port_free(port, pids)]
    assert not busy, f"node ports still bound: {busy}"
    assert json.loads((directory / "cluster.json").read_text())["state"] == "stopped"
    assert not (directory / "supervisor.sock").exists()


def _events(cli: Cli, directory: Path) -> list[dict[str, Any]]:
    out = cli.run("events", "--json", directory=directory).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(r, dict) and {"ts", "node", "event"} <= r.keys() for r in records)
    return records


def _ts(record: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromisoformat(record["ts"])


# ---------------------------------------------------------------- 1. Ctrl-C / SIGTERM


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_foreground_up_stops_every_process_on_ctrl_c_or_sigterm(
    cli: Cli, sig: signal.Signals
) -> None:
    directory = cli.new_dir("cluster")
    up = cli.start("up", "-n", "3", directory=directory)
    wait_until(
        lambda: cli.all_up(directory, 3), SETTLE, message=lambda: f"3 nodes up\n{up.describe()}"
    )
    # stdout is a pipe: a plain status, then the event stream (old events first); the
    # signal comes while the user watches the stream, as it would from a terminal.
    wait_until(
        lambda: "3/3 up" in up.out.text() and any(EVENT_LINE.match(x) for x in up.out.lines()),
        SETTLE,
        message=lambda: f"the status and the event stream\n{up.describe()}",
    )
    doc = cli.state(directory)
    # The daemon has its own session: a terminal's Ctrl-C reaches only `up`, which stops it.
    assert os.getpgid(doc["supervisor_pid"]) != os.getpgid(up.pid)

    up.proc.send_signal(sig)
    code = up.finish(timeout=SETTLE)

    assert code in (0, 130), up.describe()
    assert "stopping the cluster" in up.err.text()
    assert "Traceback" not in up.err.text()
    # `up` returns once nothing of the cluster runs: no waiting here.
    _assert_nothing_left(doc, directory)


# ---------------------------------------------------------------- 2. kill -9 of the daemon


@pytest.mark.timeout(120)
def test_nodes_exit_when_their_daemon_is_killed_and_the_dir_is_reusable(
    cli: Cli, tmp_path: Path
) -> None:
    directory = cli.new_dir("cluster")
    cli.run("up", "-n", "3", "--detach", directory=directory)
    doc = cli.state(directory)
    nodes = {node["os_pid"] for node in doc["nodes"]}

    os.kill(doc["supervisor_pid"], signal.SIGKILL)
    # Nobody stops the nodes: they exit because the daemon's end of their stdin closed.
    wait_until(lambda: not _living(nodes), 10.0, message=lambda: f"nodes to exit: {_living(nodes)}")
    pids = _cluster_pids(doc)
    busy = [port for port in _ports(doc) if not _port_free(port, pids)]
    assert not busy, f"node ports still bound: {busy}"
    status = cli.run("status", directory=directory, expect=1)
    assert "not running" in status.stderr

    again = cli.run("up", "-n", "3", "--detach", directory=directory)
    assert "warning" in again.stderr and "died" in again.stderr, again.stderr
    second = cli.state(directory)
    assert second["supervisor_pid"] != doc["supervisor_pid"]
    assert cli.all_up(directory, 3)
    assert "3/3 up" in cli.run("status", directory=directory).stdout

    # `down` from another shell: another working directory, DIR given as an absolute path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    down = cli.run("down", directory=directory.resolve(), cwd=elsewhere)
    assert "stopped the cluster" in down.stderr
    _assert_nothing_left(second, directory)
    assert not _living(pids)


# ---------------------------------------------------------------- 3. kill -9 of a foreground up


@pytest.mark.timeout(90)
def test_attached_daemon_stops_the_cluster_when_up_is_killed(cli: Cli) -> None:
    directory = cli.new_dir("cluster")
    up = cli.start("up", "-n", "3", directory=directory)
    wait_until(
        lambda: cli.all_up(directory, 3) and "3/3 up" in up.out.text(),
        SETTLE,
        message=lambda: f"3 nodes up and the status\n{up.describe()}",
    )
    doc = cli.state(directory)

    up.proc.kill()
    assert up.finish(timeout=10) == -signal.SIGKILL

    # The daemon sees its stdin close, stops every node (SIGTERM, SIGKILL after 5 s), then exits.
    pids = _cluster_pids(doc)
    wait_until(
        lambda: not _living(pids), SETTLE, message=lambda: f"the cluster to stop: {_living(pids)}"
    )
    wait_until(
        lambda: cli.state(directory)["state"] == "stopped", 5.0, message="cluster.json: stopped"
    )
    _assert_nothing_left(doc, directory)


# ---------------------------------------------------------------- 4. events and logs


@pytest.mark.timeout(90)
def test_events_and_logs_after_a_kill(cli: Cli) -> None:
    directory = cli.new_dir("cluster")
    cli.run("up", "-n", "4", "--restart", "never", "--detach", directory=directory)
    before = json.loads(cli.run("status", "--json", directory=directory).stdout)
    assert before["converged"], before["health"]
    active = {node["name"]: set(node["active"]) for node in before["nodes"]}
    neighbours = {name for name, view in active.items() if "n2" in view}
    assert neighbours, active
    killed_at = datetime.datetime.now(datetime.UTC)

    cli.run("kill", "n2", directory=directory)

    def peer_down_everywhere() -> list[dict[str, Any]] | None:
        records = _events(cli, directory)
        seen = {
            r["node"]
            for r in records
            if r["event"] == "peer.down" and r.get("peer") == "n2" and _ts(r) >= killed_at
        }
        return records if neighbours <= seen else None

    records = wait_until(
        peer_down_everywhere,
        SETTLE,
        interval=0.3,
        message=lambda: f"peer.down n2 on {sorted(neighbours)}: {_events(cli, directory)[-20:]}",
    )
    for name in sorted(neighbours):
        index, down = next(
            (i, r)
            for i, r in enumerate(records)
            if r["node"] == name and r["event"] == "peer.down" and r.get("peer") == "n2"
        )
        assert down["reason"], f"peer.down without a reason on {name}: {down}"
        assert _ts(down) >= killed_at
        # ... followed by the active view dropping n2 (later in the timeline).
        assert any(
            r["node"] == name
            and r["event"] == "view.active"
            and "n2" in r.get("removed", [])
            and _ts(r) >= _ts(down)
            for r in records[index + 1 :]
        ), f"no view.active -n2 on {name} after {down}"
    # --restart never: n2 stays down.
    n2 = next(node for node in cli.state(directory)["nodes"] if node["name"] == "n2")
    assert n2["state"] == "down" and n2["restarts"] == 0, n2

    human = cli.run("events", directory=directory).stdout.splitlines()
    assert human and all(EVENT_LINE.match(line) for line in human), human[:5]
    assert not any(line.startswith("{") for line in human)
    assert any(re.search(r" peer\.down n2 \(.+\)$", line) for line in human)

    tail = cli.run("logs", "-n", "2", directory=directory).stdout.splitlines()
    prefixes = [re.match(r"^(n\d+) +\| ", line) for line in tail]
    assert tail and all(prefixes), tail
    names = [m.group(1) for m in prefixes if m]
    assert set(names) == {"n1", "n2", "n3", "n4"}, tail
    assert all(names.count(name) <= 2 for name in set(names)), tail

    only_n1 = cli.run("logs", "n1", directory=directory).stdout.splitlines()
    assert only_n1 and all(line.startswith("n1 | ") for line in only_n1), only_n1[:5]

    unknown = cli.run("logs", "nX", directory=directory, expect=1)
    assert unknown.stdout == ""
    assert "nX" in unknown.stderr and "Traceback" not in unknown.stderr


# ---------------------------------------------------------------- 5. top in a terminal

_ROW = re.compile(
    r"^(?P<name>n\d+)\s+(?P<address>\S+:\d+)\s+(?P<pid>\d+|-)\s+\S+\s+(?P<restarts>\d+)\s+"
    r"\S*\s*(?P<state>up|down|starting|paused)\b"
)


def _rows(screen: str) -> dict[str, dict[str, str]]:
    return {m["name"]: m.groupdict() for m in map(_ROW.match, screen.splitlines()) if m}


@pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (make test-tools installs it): top needs a real terminal",
)
@pytest.mark.timeout(120)
def test_top_in_a_terminal_kills_the_selected_node_and_sees_it_restarted(cli: Cli) -> None:
    directory = cli.new_dir("cluster")
    cli.run("up", "-n", "8", "--detach", directory=directory)
    names = [f"n{i}" for i in range(1, 9)]
    server = f"partisan-test-{os.getpid()}"
    tmux = ["tmux", "-L", server]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    command = shlex.join([*PARTISAN, "cluster", "top", "--dir", str(directory)])

    def screen(*flags: str) -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", *flags, "-t", "top"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def keys(*pressed: str) -> None:
        subprocess.run([*tmux, "send-keys", "-t", "top", *pressed], check=True, timeout=10)

    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "top", "-x", "200", "-y", "50", command],
            check=True,
            env=env,
            timeout=10,
        )
        wait_until(
            lambda: (
                "8/8 up" in screen() and sorted(_rows(screen()), key=lambda n: int(n[1:])) == names
            ),
            SETTLE,
            interval=0.2,
            message=lambda: f"8 node rows and 8/8 up on screen:\n{screen()}",
        )
        victim = _rows(screen())["n3"]

        # The cursor starts on n1; j moves it down. The selected row is in reverse video.
        keys("j", "j")
        wait_until(
            lambda: re.search(r"\x1b\[7m(\x1b\[[0-9;]*m)*n3 ", screen("-e")),
            10.0,
            interval=0.1,
            message=lambda: f"n3 selected:\n{screen('-e')}",
        )
        keys("x")
        wait_until(
            lambda: "kill n3" in screen(),
            10.0,
            interval=0.1,
            message=lambda: f"the kill reported:\n{screen()}",
        )

        # on-failure (the default) restarts it: a new pid, one restart, up again.
        def restarted() -> bool:
            row = _rows(screen()).get("n3")
            return bool(
                row
                and row["state"] == "up"
                and row["restarts"] == "1"
                and row["pid"] not in ("-", victim["pid"])
            )

        wait_until(restarted, SETTLE, interval=0.2, message=lambda: f"n3 restarted:\n{screen()}")
        wait_until(
            lambda: "8/8 up" in screen(),
            SETTLE,
            interval=0.2,
            message=lambda: f"8/8 up again:\n{screen()}",
        )
        doc = cli.state(directory)
        n3 = next(node for node in doc["nodes"] if node["name"] == "n3")
        assert n3["restarts"] == 1 and str(n3["os_pid"]) != victim["pid"]

        keys("q")

        def session_gone() -> bool:
            has = subprocess.run([*tmux, "has-session", "-t", "top"], capture_output=True)
            return has.returncode != 0

        wait_until(session_gone, 15.0, interval=0.1, message="top to quit and its session to end")
        assert not list((directory / "keys" / "public_keys").glob("cli-*"))
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)
        # tmux leaves its socket file behind.
        tmpdir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp")
        (tmpdir / f"tmux-{os.getuid()}" / server).unlink(missing_ok=True)


# ---------------------------------------------------------------- 6. concurrent CLI commands


@pytest.mark.timeout(90)
def test_concurrent_cli_commands_do_not_disturb_each_other(cli: Cli) -> None:
    directory = cli.new_dir("cluster")
    cli.run("up", "-n", "3", "--detach", directory=directory)
    watch = cli.start("status", "--watch", "--json", "--interval", "0.3", directory=directory)
    wait_until(
        lambda: watch.out.lines(),
        SETTLE,
        interval=0.1,
        message=lambda: f"the first snapshot\n{watch.describe()}",
    )
    n3 = next(node for node in cli.state(directory)["nodes"] if node["name"] == "n3")

    verbs = (["kill", "n3"], ["status", "--json"], ["graph", "--format", "json"])
    others = [cli.start(*args, directory=directory) for args in verbs]
    for args, other in zip(verbs, others, strict=True):
        code = other.finish(timeout=60)
        assert code == 0, f"{args}: exit {code}\n{other.describe()}"
    status = json.loads(others[1].out.text())
    assert [node["name"] for node in status["nodes"]] == ["n1", "n2", "n3"]
    graph = json.loads(others[2].out.text())
    assert {node["name"] for node in graph["nodes"]} == {"n1", "n2", "n3"}

    # The watcher kept going and saw n3 come back (a new incarnation it had to dial again).
    def watcher_sees_n3_back() -> bool:
        last = json.loads(watch.out.lines()[-1])
        node = next(node for node in last["nodes"] if node["name"] == "n3")
        return (
            last["converged"]
            and node["state"] == "up"
            and node["alive"]
            and node["restarts"] == 1
            and node["os_pid"] != n3["os_pid"]
        )

    wait_until(
        watcher_sees_n3_back,
        SETTLE,
        interval=0.2,
        message=lambda: f"the watcher to see n3 restarted\n{watch.describe()}",
    )
    assert watch.proc.poll() is None, watch.describe()

    watch.proc.send_signal(signal.SIGINT)
    assert watch.finish(timeout=SETTLE) == 0, watch.describe()
    assert "Traceback" not in watch.err.text()
    leftover = sorted(p.name for p in (directory / "keys" / "public_keys").glob("cli-*"))
    assert not leftover, f"CLI keys left behind: {leftover}"

"""A real local cluster for a test: `Cluster` drives ``partisan cluster``, `connect` reaches it.

Unit tests of an application can run its actors on one in-process node;
what they cannot show is the application on N real node processes that die,
restart under a new incarnation and rejoin. `Cluster` gives a test exactly
what a user gets from the CLI, by running the CLI itself
(``python -m partisan cluster up --detach`` with ``sys.executable``), so a
test exercises the same daemon, restart policy and convergence check as
``partisan cluster up`` in a shell::

    with Cluster(4, manager="hyparview", imports=["myapp"], run="myapp:main") as cluster:
        cluster.kill("n3")           # SIGKILL; returns once that process is gone
        cluster.wait(30)             # `cluster wait`: restarted and converged again

    async with Cluster(3, run="myapp:main") as cluster:   # the same, from asyncio
        async with cluster.client() as client:           # a hidden node joined to n1..n3
            assert await client.call(("myapp", "n2"), "ping") == "pong"
            await cluster.async_kill("n2")

Every verb is a subprocess, so a blocking method (`kill`, `wait`, ...) holds
the calling thread for a CLI run (~0.3 s, or until its condition); in a
coroutine use its ``async_`` twin (`async_kill`, `async_wait`, ...), which
runs it in a thread: a client node on that loop must keep answering
heartbeats meanwhile.

Why each choice:

* The cluster directory is a fresh temporary directory unless `directory` is
  given. A temporary one is removed at exit when all went well and *kept*
  when something failed (``up`` failed, the test body raised, or processes
  were left): the node logs are what explains the failure, and the
  exception gets a note naming the directory. A given `directory` is never
  removed (with pytest's ``tmp_path`` pytest keeps it for you).
* Exit runs ``cluster down`` and then asserts that nothing of this cluster
  runs: every pid seen in cluster.json plus any process whose command line is
  this cluster's daemon or one of its nodes (a node restarted while nobody
  read cluster.json is found too). Leftovers are killed, then reported as an
  AssertionError: a test that leaks a cluster must fail, and must not make
  the next test fail instead.
* ``up`` returns once converged (``--detach``); if it fails, the cluster is
  taken down and `ClusterCommandError` carries the CLI's one-line error and
  the tail of each failing node's log (or of the daemon's).
* `kill` waits until the signalled process is gone (KILL/TERM) or stopped
  (STOP), so a `wait` right after it cannot see the cluster "converged"
  before the failure was even noticed.
* `connect` (and `Cluster.client`) start a *hidden* `partisan.Node` with its
  own key in DIR/keys (nodes admit new keys without a restart, as for the
  CLI's own ``cli-<pid>`` identity): hidden, it is in nobody's membership
  view, so the test does not change the overlay it observes.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from partisan.errors import ClusterError
from partisan.testing import cluster_processes as procs
from partisan.testing.cluster_client import ClusterClient, connect
from partisan.testing.cluster_processes import ClusterCommandError

__all__ = ["Cluster", "ClusterClient", "ClusterCommandError", "connect"]

#: Seconds a CLI verb may take beyond its own timeout (interpreter start, observer join).
CLI_SLACK = 30.0
#: Lines of a node's log quoted in an error.
LOG_TAIL = 20


class Cluster:
    """N local node processes under the cluster daemon, for the duration of a test.

    `n`, `manager`, `imports` (``--import``, repeatable), `run`
    (``--run MODULE:FUNCTION``) and `settings` (``--set field=value`` for
    every node) are ``cluster up``'s; `up_args` adds any other ``up`` flag.
    `cwd` is where ``up`` runs, which is also the nodes' working directory
    and first entry of their ``sys.path`` (default: the current directory);
    `pythonpath` entries are prepended to the nodes' ``PYTHONPATH`` (for an
    application module that is not in `cwd`); `env` adds variables.
    `timeout` bounds ``up`` (``--wait-timeout``).
    """

    def __init__(
        self,
        n: int = 3,
        *,
        manager: str = "hyparview",
        imports: Iterable[str] = (),
        run: str | None = None,
        settings: Mapping[str, object] | None = None,
        directory: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        env: Mapping[str, str] | None = None,
        up_args: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> None:
        self.n = n
        self.manager = manager
        self.imports = list(imports)
        self.run = run
        self.settings = dict(settings or {})
        self.up_args = list(up_args)
        self.timeout = timeout
        self.names: tuple[str, ...] = tuple(f"n{i}" for i in range(1, n + 1))
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self._given_dir = directory is not None
        self._dir: Path | None = Path(directory).resolve() if directory is not None else None
        environment = dict(os.environ)
        environment.update(env or {})
        extra = [str(Path(p).resolve()) for p in pythonpath]
        if extra:
            old = environment.get("PYTHONPATH")
            environment["PYTHONPATH"] = os.pathsep.join([*extra, *([old] if old else [])])
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self._env = environment
        self._seen_pids: set[int] = set()
        self._running = False
        self._failed = False

    # ------------------------------------------------------------ lifecycle

    @property
    def dir(self) -> Path:
        """The cluster directory (``--dir``): cluster.json, keys/, logs/, events/."""
        if self._dir is None:
            raise RuntimeError("the cluster is not started: use `with Cluster(...)` or start()")
        return self._dir

    def start(self) -> Cluster:
        """Run ``cluster up --detach``: returns once every node is up and the overlay converged."""
        if self._running:
            raise RuntimeError(f"the cluster in {self._dir} is already running")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="partisan-cluster-")).resolve()
        else:
            self._dir.mkdir(parents=True, exist_ok=True)
        argv = ["-n", str(self.n), "--manager", self.manager, "--detach"]
        argv += ["--wait-timeout", f"{self.timeout:g}"]
        for module in self.imports:
            argv += ["--import", module]
        if self.run is not None:
            argv += ["--run", self.run]
        for field, value in self.settings.items():
            argv += ["--set", f"{field}={value}"]
        argv += self.up_args
        self._running = True  # from here on a daemon may exist: close() must run
        atexit.register(self._close_at_exit)
        try:
            self.cli("up", *argv, timeout=self.timeout + CLI_SLACK)
        except BaseException as exc:
            self._failed = True
            try:
                self.close()
            except AssertionError as leftover:
                exc.add_note(str(leftover))
            raise
        self.nodes()  # remember the first pids
        return self

    def close(self) -> None:
        """Run ``cluster down`` and assert nothing of this cluster runs (idempotent).

        Leftover processes are killed, then reported (AssertionError). The
        temporary directory is removed unless something failed.
        """
        if not self._running:
            return
        self._running = False
        atexit.unregister(self._close_at_exit)
        problems: list[str] = []
        with contextlib.suppress(OSError, ValueError):
            self.nodes()  # the latest pids, for the leftover check
        if (self.dir / "cluster.json").exists():  # else `up` failed before creating anything
            try:
                self.cli("down", "--timeout", "30", timeout=30 + CLI_SLACK)
            except ClusterError as exc:
                problems.append(f"cluster down failed: {exc}")
        left = self._leftovers(grace=5.0)
        if left:
            for proc in left:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            problems.append(
                "processes of the cluster were still running after `cluster down` (killed now): "
                + "; ".join(procs.describe(p) for p in left)
            )
        if problems:
            self._failed = True
            raise AssertionError(f"{' / '.join(problems)} (cluster directory kept: {self.dir})")
        if not self._given_dir and not self._failed:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(e)

    async def __aenter__(self) -> Cluster:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self._exit, e)

    def _exit(self, error: BaseException | None) -> None:
        if error is None:
            self.close()
            return
        self._failed = True  # keep the logs that explain `error`
        try:
            self.close()
        except AssertionError as leftover:
            error.add_note(str(leftover))
        if self._dir is not None:
            error.add_note(f"cluster directory kept: {self._dir} (node logs in {self._dir}/logs)")

    # ------------------------------------------------------------ the CLI

    def cli(self, verb: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``python -m partisan cluster VERB ARGS --dir DIR``; `ClusterCommandError` if it fails."""
        argv = [sys.executable, "-m", "partisan", "cluster", verb, *args, "--dir", str(self.dir)]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=self.cwd,
                env=self._env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = procs.text(exc.stderr)
            raise ClusterCommandError(
                f"`partisan cluster {verb}` did not finish within {timeout:g} s: {procs.one_line(stderr)}",
                argv=argv,
                stderr=stderr,
                logs=self._failing_logs(),
            ) from None
        if done.returncode != 0:
            raise ClusterCommandError(
                f"`partisan cluster {verb}` exited with {done.returncode}: {procs.one_line(done.stderr)}",
                argv=argv,
                returncode=done.returncode,
                stderr=done.stderr,
                logs=self._failing_logs() if verb in ("up", "wait", "start", "restart") else {},
            )
        return done

    def state(self) -> dict[str, Any]:
        """DIR/cluster.json, the daemon's record of the cluster."""
        doc = json.loads((self.dir / "cluster.json").read_text())
        for entry in doc.get("nodes", []):
            pid = entry.get("os_pid")
            if isinstance(pid, int):
                self._seen_pids.add(pid)
        supervisor = doc.get("supervisor_pid")
        if isinstance(supervisor, int):
            self._seen_pids.add(supervisor)
        return dict(doc)

    def nodes(self) -> list[dict[str, Any]]:
        """cluster.json's node entries: name, address, os_pid, incarnation, state, restarts, error."""
        return list(self.state()["nodes"])

    def node(self, name: str) -> dict[str, Any]:
        """The cluster.json entry of node `name` (KeyError if there is none)."""
        for entry in self.nodes():
            if entry.get("name") == name:
                return entry
        raise KeyError(f"no node {name!r} in {self.dir} (nodes: {', '.join(self.names)})")

    def status(self) -> dict[str, Any]:
        """``cluster status --json``: every node's state and report, health, ``converged``."""
        answer: dict[str, Any] = json.loads(self.cli("status", "--json").stdout)
        return answer

    def wait(self, timeout: float = 30.0) -> None:
        """``cluster wait``: return once converged; `ClusterCommandError` (with why) at `timeout`."""
        self.cli("wait", "--timeout", f"{timeout:g}", timeout=timeout + CLI_SLACK)

    def kill(self, name: str, signal: str = "KILL", *, timeout: float = 10.0) -> int:
        """``cluster kill NAME --signal SIG``; returns the signalled pid once the signal took effect.

        KILL and TERM: that process is gone (the daemon then restarts the node
        unless ``--restart never``); STOP: it is stopped; CONT: it runs again.
        """
        sig = signal.upper()
        before = self.node(name).get("os_pid")
        done = self.cli("kill", name, "--signal", sig)
        pid = procs.pid_in(done.stderr) or before
        if not isinstance(pid, int):
            return -1
        self._seen_pids.add(pid)
        deadline = time.monotonic() + timeout
        while not procs.took_effect(pid, sig):
            if time.monotonic() > deadline:
                raise ClusterCommandError(f"{name} (os pid {pid}) ignored SIG{sig} for {timeout} s")
            time.sleep(0.02)
        return pid

    def restart(self, name: str) -> None:
        """``cluster restart NAME``: returns once the new incarnation is up."""
        self.cli("restart", name)
        self.nodes()

    def stop_node(self, name: str) -> None:
        """``cluster stop NAME``: the node stays down until `start_node`."""
        self.cli("stop", name)

    def start_node(self, name: str) -> None:
        """``cluster start NAME``: start a node that is down."""
        self.cli("start", name)
        self.nodes()

    def log(self, name: str, lines: int = LOG_TAIL) -> str:
        """The last `lines` lines of a node's log (``supervisor`` for the daemon's)."""
        return procs.tail(self.dir / "logs" / f"{name}.log", lines)

    # ------------------------------------------------------------ async twins

    async def async_kill(self, name: str, signal: str = "KILL", *, timeout: float = 10.0) -> int:
        """`kill`, without blocking the event loop."""
        return await asyncio.to_thread(self.kill, name, signal, timeout=timeout)

    async def async_restart(self, name: str) -> None:
        """`restart`, without blocking the event loop."""
        await asyncio.to_thread(self.restart, name)

    async def async_wait(self, timeout: float = 30.0) -> None:
        """`wait`, without blocking the event loop."""
        await asyncio.to_thread(self.wait, timeout)

    async def async_status(self) -> dict[str, Any]:
        """`status`, without blocking the event loop."""
        return await asyncio.to_thread(self.status)

    def client(self, **node_options: Any) -> contextlib.AbstractAsyncContextManager[ClusterClient]:
        """``async with cluster.client() as client``: a hidden node joined to every node."""
        return connect(self.dir, **node_options)

    # ------------------------------------------------------------ internals

    def _failing_logs(self) -> dict[str, str]:
        """The tails of the logs of nodes that are not up (else of the daemon's log)."""
        logs: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            for entry in self.nodes():
                if entry.get("state") != "up" or entry.get("error"):
                    logs[entry["name"]] = procs.tail(Path(entry["log"]), LOG_TAIL)
        if not logs:
            tail = procs.tail(self.dir / "logs" / "supervisor.log", LOG_TAIL)
            if tail:
                logs["supervisor"] = tail
        return logs

    def _leftovers(self, grace: float) -> list[psutil.Process]:
        """This cluster's processes still running, after up to `grace` s for them to exit."""
        deadline = time.monotonic() + grace
        while True:
            left = [p for p in self._candidates() if procs.alive(p)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def _candidates(self) -> list[psutil.Process]:
        root = str(self.dir)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid == os.getpid() or not procs.is_cluster_process(cmdline, root):
                continue
            found[proc.pid] = proc
        for pid in self._seen_pids - set(found):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if procs.is_cluster_process(proc.cmdline(), root):  # not a reused pid
                    found[pid] = proc
        return list(found.values())

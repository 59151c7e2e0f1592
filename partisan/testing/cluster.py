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
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from partisan.errors import ClusterError

__all__ = ["Cluster", "ClusterClient", "ClusterCommandError", "connect"]

#: Seconds a CLI verb may take beyond its own timeout (interpreter start, observer join).
CLI_SLACK = 30.0
#: Lines of a node's log quoted in an error.
LOG_TAIL = 20

_clients = itertools.count(1)


class ClusterCommandError(ClusterError):
    """A ``partisan cluster`` verb failed: its one-line error, plus the logs that explain it.

    `argv`, `returncode` and `stderr` are the CLI run's; `logs` maps a node
    name (or ``"supervisor"``) to the tail of its log.
    """

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        stderr: str = "",
        logs: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.logs = dict(logs or {})
        text = message
        for name, tail in self.logs.items():
            text += f"\n--- last lines of {name}'s log ---\n{tail}"
        super().__init__(text)


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
                + "; ".join(_describe(p) for p in left)
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
            stderr = _text(exc.stderr)
            raise ClusterCommandError(
                f"`partisan cluster {verb}` did not finish within {timeout:g} s: {_one_line(stderr)}",
                argv=argv,
                stderr=stderr,
                logs=self._failing_logs(),
            ) from None
        if done.returncode != 0:
            raise ClusterCommandError(
                f"`partisan cluster {verb}` exited with {done.returncode}: {_one_line(done.stderr)}",
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
        pid = _pid_in(done.stderr) or before
        if not isinstance(pid, int):
            return -1
        self._seen_pids.add(pid)
        deadline = time.monotonic() + timeout
        while not _took_effect(pid, sig):
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
        return _tail(self.dir / "logs" / f"{name}.log", lines)

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
                    logs[entry["name"]] = _tail(Path(entry["log"]), LOG_TAIL)
        if not logs:
            tail = _tail(self.dir / "logs" / "supervisor.log", LOG_TAIL)
            if tail:
                logs["supervisor"] = tail
        return logs

    def _leftovers(self, grace: float) -> list[psutil.Process]:
        """This cluster's processes still running, after up to `grace` s for them to exit."""
        deadline = time.monotonic() + grace
        while True:
            left = [p for p in self._candidates() if _alive(p)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def _candidates(self) -> list[psutil.Process]:
        root = str(self.dir)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.pid == os.getpid() or not _is_cluster_process(cmdline, root):
                continue
            found[proc.pid] = proc
        for pid in self._seen_pids - set(found):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if _is_cluster_process(proc.cmdline(), root):  # not a reused pid
                    found[pid] = proc
        return list(found.values())


class ClusterClient:
    """A hidden `partisan.Node` joined to a running cluster: reach its actors from a test.

    `node` is the `partisan.Node` (the current node of this task, so
    ``partisan.call``/``cast``/``rpc`` work directly once `connect` linked the
    target). `call` and `rpc` link to the target's node first, so they also
    work right after a node restarted.
    """

    def __init__(self, directory: Path, node: Any) -> None:
        self.dir = directory
        self.node = node

    @property
    def name(self) -> str:
        return str(self.node.name)

    def entries(self) -> dict[str, dict[str, Any]]:
        """cluster.json's node entries by name (state, address, incarnation, ...)."""
        doc = json.loads((self.dir / "cluster.json").read_text())
        return {e["name"]: e for e in doc.get("nodes", []) if isinstance(e, dict) and "name" in e}

    async def connect(self, names: Iterable[str] | None = None, *, timeout: float = 15.0) -> None:
        """Link to `names` (default: every node not down), each at its current incarnation.

        Waits for nodes that are not up yet (cluster.json says ``starting``:
        e.g. being restarted) and dials again a node that restarted, since
        the link to its previous incarnation is dead; `ClusterCommandError`
        naming the unreachable ones at `timeout`. By default a node that is
        down (stopped, or past its restart limit) is skipped: waiting for it
        would only delay the error to the first call that needs it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wanted = None if names is None else list(names)
        errors: dict[str, str] = {}
        while True:
            entries = self.entries()
            missing: list[tuple[str, str]] = []
            linked = {spec.name: spec for spec in self.node.links.peers()}
            for name in wanted if wanted is not None else list(entries):
                entry = entries.get(name)
                if entry is None:
                    raise ClusterCommandError(f"no node {name!r} in {self.dir}")
                address, incarnation = entry.get("address"), entry.get("incarnation")
                if wanted is None and entry.get("state") == "down":
                    continue
                if entry.get("state") != "up" or not address:
                    errors[name] = f"state {entry.get('state')}"
                    missing.append((name, ""))
                    continue
                spec = linked.get(name)
                if spec is not None and (incarnation is None or spec.incarnation >= incarnation):
                    continue
                if spec is not None:  # a link to the previous incarnation
                    await self.node.leave(name)
                missing.append((name, f"{name}@{address}"))
            if not missing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                why = ", ".join(f"{n} ({errors.get(n, 'not linked')})" for n, _ in missing)
                raise ClusterCommandError(f"{self.name} could not reach {why} in {timeout:g} s")
            dials = [(n, c) for n, c in missing if c]
            results = await asyncio.gather(
                *(self.node.join(c, timeout=min(remaining, 5.0)) for _, c in dials),
                return_exceptions=True,
            )
            for (name, _), result in zip(dials, results, strict=True):
                if isinstance(result, BaseException):
                    errors[name] = f"{type(result).__name__}: {result}"
            if len(dials) < len(missing) or any(isinstance(r, BaseException) for r in results):
                await asyncio.sleep(0.1)

    async def call(self, dest: Any, request: Any, *, timeout: float | None = 5.0) -> Any:
        """``partisan.call(dest, request)``, linking to `dest`'s node first if needed."""
        import partisan

        await self._reach(_node_of(dest))
        with self.node.as_current():
            return await partisan.call(dest, request, timeout=timeout)

    async def rpc(self, node: str, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """``partisan.rpc(node, fn, *args)``, linking to `node` first if needed."""
        import partisan

        await self._reach(node)
        with self.node.as_current():
            return await partisan.rpc(node, fn, *args, timeout=timeout)

    def cast(self, dest: Any, request: Any) -> None:
        """``partisan.cast(dest, request)`` (the node must be linked: see `connect`)."""
        import partisan

        with self.node.as_current():
            partisan.cast(dest, request)

    async def _reach(self, name: str) -> None:
        """Link to `name` unless linked to its current incarnation (it may have restarted)."""
        if name != self.name:
            await self.connect([name])


@contextlib.asynccontextmanager
async def connect(
    directory: str | os.PathLike[str], *, timeout: float = 15.0, **node_options: Any
) -> AsyncIterator[ClusterClient]:
    """A `ClusterClient` for the cluster in `directory`, linked to its nodes; stopped on exit.

    Creates a key ``client-<pid>-<k>`` in DIR/keys (removed on exit);
    `node_options` go to `partisan.Node` (e.g. ``heartbeat_timeout``).
    """
    import partisan
    from partisan.transport.keys import add_key, public_key_path, secret_key_path

    root = Path(directory).resolve()
    keys = root / "keys"
    name = f"client-{os.getpid()}-{next(_clients)}"
    add_key(keys, name)
    try:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **node_options}
        async with partisan.Node(name, hidden=True, key_dir=str(keys), **options) as node:
            client = ClusterClient(root, node)
            await client.connect(timeout=timeout)
            yield client
    finally:
        for path in (public_key_path(keys, name), secret_key_path(keys, name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# ---------------------------------------------------------------- helpers


def _node_of(dest: Any) -> str:
    if isinstance(dest, tuple) and len(dest) == 2:
        return str(dest[1])
    return str(dest.node)


def _is_cluster_process(cmdline: Sequence[str], root: str) -> bool:
    """True for this cluster's daemon (``--dir ROOT``) or one of its nodes (``--keys ROOT/keys``)."""
    from partisan.cluster.layout import DAEMON_MODULE

    if DAEMON_MODULE in cmdline:
        return root in cmdline
    return "partisan" in cmdline and "node" in cmdline and str(Path(root) / "keys") in cmdline


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _took_effect(pid: int, sig: str) -> bool:
    try:
        proc = psutil.Process(pid)
        status = proc.status()
    except psutil.NoSuchProcess:
        return sig in ("KILL", "TERM")
    if sig in ("KILL", "TERM"):
        return status == psutil.STATUS_ZOMBIE
    stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    return stopped if sig == "STOP" else not stopped


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return str(proc.pid)


def _pid_in(stderr: str) -> int | None:
    """The pid in ``kill``'s "sent SIGKILL to n2 (os pid 123)"."""
    marker = "(os pid "
    start = stderr.rfind(marker)
    if start < 0:
        return None
    digits = stderr[start + len(marker) :].split(")", 1)[0]
    return int(digits) if digits.isdigit() else None


def _one_line(stderr: str) -> str:
    """The CLI's error line: the last ``error`` line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "(no output)"


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data

"""Where a local cluster keeps its state: the cluster directory (``--dir``, default ``.partisan``).

Every ``partisan cluster`` verb works from any shell because everything it
needs is a file under DIR::

    DIR/cluster.json        the daemon's record of the cluster (rewritten atomically)
    DIR/keys/               CURVE keys: one per node, one per running CLI command
    DIR/logs/NAME.log       each node's log (stderr); DIR/logs/supervisor.log the daemon's
    DIR/events/NAME.jsonl   each node's event log
    DIR/supervisor.sock     the daemon's control socket (JSON lines)

`cluster.json` holds the contract's keys (``version, manager, dir,
supervisor_pid, nodes: [{name, address, role, os_pid, incarnation, log,
event_log}]``) and, for the CLI's own use, ``state`` (``running`` or
``stopped``), ``plan`` (what ``up`` was asked for), ``configured_links``
and per node ``state``, ``restarts`` and ``error``.

A daemon counts as running only if its pid is alive *and* that process is a
cluster daemon for this DIR (pids are reused). A dead daemon's leftovers
(socket, stray nodes, a ``running`` state) are what `clean_dead_daemon` removes.

The CLI's identity: each CLI command that talks to nodes joins as a hidden
node named ``cli-<pid>`` with its own key in DIR/keys (nodes admit new keys
without a restart), so a ``top`` in one terminal and a ``kill`` in another
never collide; `CliIdentity` removes the key when the command ends and
removes keys of CLI processes that died without doing so.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: reading a cluster directory does not import
# the key store (zmq). None closes an import cycle (tests/unit/test_imports.py).
import contextlib
import json
import os
import signal
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from partisan.errors import ClusterError

__all__ = ["DAEMON_MODULE", "DEFAULT_DIR", "CliIdentity", "ClusterDir"]

DEFAULT_DIR = ".partisan"
#: The module the daemon runs as (``python -m``); how we recognise its process.
DAEMON_MODULE = "partisan.cluster.daemon"
#: cluster.json's ``version``.
FORMAT_VERSION = 1
CLI_PREFIX = "cli-"


class ClusterDir:
    """Paths and state files of one cluster directory."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        self.root = Path(root).expanduser().resolve()

    # ----------------------------------------------------------------- paths

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def node_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def event_log(self, name: str) -> Path:
        return self.events / f"{name}.jsonl"

    def make(self) -> None:
        """Create DIR and its subdirectories (keys stay private: 0700)."""
        for path in (self.root, self.logs, self.events):
            path.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- state

    def read_state(self) -> dict[str, Any] | None:
        """cluster.json as a dict, or None if there is none; ClusterError if unreadable."""
        try:
            text = self.state_file.read_bytes()  # json.loads decodes (bad UTF-8: ValueError)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ClusterError(f"cannot read {self.state_file}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except ValueError:
            raise ClusterError(f"{self.state_file} is not valid JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
            raise ClusterError(f"{self.state_file} is not a cluster file")
        return doc

    def write_state(self, doc: dict[str, Any]) -> None:
        """Replace cluster.json atomically (readers never see half a file)."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".cluster.", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def require_state(self) -> dict[str, Any]:
        """cluster.json, or ClusterError(no cluster in DIR)."""
        doc = self.read_state()
        if doc is None:
            raise ClusterError(
                f"no cluster in {self.root} (start one with: partisan cluster up --dir {self.root})"
            )
        return doc

    # ---------------------------------------------------------------- daemon

    def daemon_alive(self, doc: dict[str, Any] | None = None) -> bool:
        """True if cluster.json names a live daemon process serving this DIR."""
        doc = self.read_state() if doc is None else doc
        if doc is None or doc.get("state") == "stopped":
            return False
        pid = doc.get("supervisor_pid")
        return isinstance(pid, int) and is_daemon(pid, self.root)

    def require_running(self) -> dict[str, Any]:
        """cluster.json of a running cluster, or ClusterError saying why not."""
        doc = self.require_state()
        if not self.daemon_alive(doc):
            raise ClusterError(
                f"the cluster in {self.root} is not running (start it with: partisan cluster up)"
            )
        return doc

    def clean_dead_daemon(self, doc: dict[str, Any]) -> list[str]:
        """Remove what a dead daemon left behind; returns what was done, for a warning.

        Nodes exit by themselves when the daemon's pipe closes; one that has
        not yet (or ignores it) and is still this cluster's node gets SIGKILL.
        """
        done: list[str] = []
        for node in doc.get("nodes", []):
            pid = node.get("os_pid")
            if isinstance(pid, int) and _is_node_of(pid, node.get("name"), self.keys):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"killed stray node {node.get('name')} (os pid {pid})")
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
            done.append("removed a stale control socket")
        doc = dict(doc, state="stopped")
        self.write_state(doc)
        return done


def is_daemon(pid: int, root: Path) -> bool:
    """True if `pid` is a live cluster daemon for directory `root`."""
    cmdline = _cmdline(pid)
    return DAEMON_MODULE in cmdline and str(root) in cmdline


def _is_node_of(pid: int, name: object, keys: Path) -> bool:
    cmdline = _cmdline(pid)
    return isinstance(name, str) and name in cmdline and str(keys) in cmdline


def _cmdline(pid: int) -> list[str]:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return []
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


class CliIdentity:
    """The hidden node name and key one CLI command uses; a context manager.

    Entering creates DIR/keys for ``cli-<pid>`` (and removes keys left by CLI
    processes that are gone); leaving removes this command's key.
    """

    def __init__(self, cluster: ClusterDir) -> None:
        self.cluster = cluster
        self.name = f"{CLI_PREFIX}{os.getpid()}"

    def __enter__(self) -> CliIdentity:
        from partisan.transport.keys import add_key, public_key_path, secret_key_path

        self._remove_stale()
        for path in (
            public_key_path(self.cluster.keys, self.name),
            secret_key_path(self.cluster.keys, self.name),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a key from an earlier process that had our pid
        add_key(self.cluster.keys, self.name)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._remove(self.name)

    def _remove(self, name: str) -> None:
        from partisan.transport.keys import public_key_path, secret_key_path

        for path in (
            public_key_path(self.cluster.keys, name),
            secret_key_path(self.cluster.keys, name),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _remove_stale(self) -> None:
        public = self.cluster.keys / "public_keys"
        if not public.is_dir():
            return
        for path in public.iterdir():
            stem = path.name.split(".", 1)[0]
            if not stem.startswith(CLI_PREFIX):
                continue
            pid_text = stem[len(CLI_PREFIX) :]
            if pid_text.isdigit() and not psutil.pid_exists(int(pid_text)):
                self._remove(stem)

"""Bring a cluster directory up and down: the steps ``cluster up`` and ``cluster down`` share.

`prepare` refuses a DIR whose cluster still runs (one line), cleans up after a
daemon that died (returned as warnings), creates missing keys, clears the
previous run's logs and event logs (they would mix two clusters' histories
and falsify the repair time), and writes the initial cluster.json with the
plan. `launch_daemon` starts the daemon in its own session (a terminal's
Ctrl-C or Ctrl-Z reaches only the CLI). `stop_cluster` asks the daemon to
stop, falls back to SIGTERM and finally SIGKILL, and leaves DIR marked
stopped with no socket: nothing is left running.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: the daemon imports the key store (zmq) only
# when it makes keys. None closes an import cycle (tests/unit/test_imports.py).
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from partisan.cluster import control
from partisan.cluster import plan as plans
from partisan.cluster.layout import DAEMON_MODULE, FORMAT_VERSION, ClusterDir, is_daemon
from partisan.errors import ClusterError

__all__ = ["launch_daemon", "prepare", "stop_cluster"]


def prepare(cluster: ClusterDir, plan: plans.ClusterPlan) -> list[str]:
    """Make DIR ready for a new cluster of `plan`; returns warnings for the user."""
    from partisan.transport.keys import create_keys, public_key_path

    warnings: list[str] = []
    doc = cluster.read_state()
    if doc is not None and cluster.daemon_alive(doc):
        raise ClusterError(
            f"a cluster is already running in {cluster.root} (supervisor pid "
            f"{doc.get('supervisor_pid')}); stop it with: partisan cluster down --dir {cluster.root}"
        )
    if doc is not None and doc.get("state") != "stopped":
        done = cluster.clean_dead_daemon(doc)
        warnings.append(
            f"the previous cluster's supervisor in {cluster.root} died; cleaned up"
            + (f" ({'; '.join(done)})" if done else "")
        )
    cluster.make()
    for folder, pattern in ((cluster.logs, "*.log"), (cluster.events, "*.jsonl")):
        for old in folder.glob(pattern):
            old.unlink()
    names = plans.node_names(plan)
    missing = [n for n in names if not public_key_path(cluster.keys, n).exists()]
    if missing:
        create_keys(cluster.keys, missing)
    cluster.write_state(
        {
            "version": FORMAT_VERSION,
            "state": "starting",
            "manager": plan.manager,
            "dir": str(cluster.root),
            "supervisor_pid": None,
            "plan": plan.to_json(),
            "configured_links": [list(p) for p in plans.configured_links(plan)],
            "nodes": [],
        }
    )
    return warnings


def launch_daemon(cluster: ClusterDir, *, attached: bool) -> subprocess.Popen[bytes]:
    """Start the cluster daemon; attached, it stops when this process goes away."""
    argv = [sys.executable, "-m", DAEMON_MODULE, "--dir", str(cluster.root)]
    if attached:
        argv.append("--attached")
    with open(cluster.supervisor_log, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if attached else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=cluster.root,
            start_new_session=True,
            close_fds=True,
        )


def wait_for_daemon(cluster: ClusterDir, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until the daemon answers on its socket; ClusterError if it died or stayed silent."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ClusterError(f"the cluster supervisor exited at start: {last_line(cluster)}")
        if cluster.socket.exists():
            with contextlib.suppress(ClusterError):
                control.request(cluster.socket, "ping", timeout=1.0)
                return
        if time.monotonic() > deadline:
            raise ClusterError(f"the cluster supervisor did not answer within {timeout:g} s")
        time.sleep(0.05)


def _gone(pid: int, cluster: ClusterDir, timeout: float) -> bool:
    """Wait until `pid` is no longer a live daemon of `cluster` (an exited, unreaped one counts
    as gone: its reaper may be an init that never reaps); False at the timeout."""
    deadline = time.monotonic() + timeout
    while is_daemon(pid, cluster.root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def last_line(cluster: ClusterDir) -> str:
    """The last line of the daemon's log (why it failed), or a pointer to it."""
    try:
        lines = cluster.supervisor_log.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else f"see {cluster.supervisor_log}"


def stop_cluster(cluster: ClusterDir, doc: dict[str, Any], *, timeout: float = 30.0) -> None:
    """Stop the cluster's daemon and every node; returns once nothing of it runs."""
    pid = doc.get("supervisor_pid")
    if not isinstance(pid, int) or not is_daemon(pid, cluster.root):
        cluster.clean_dead_daemon(doc)
        return
    try:
        control.request(cluster.socket, "down", timeout=timeout)
    except ClusterError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if not _gone(pid, cluster, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # its nodes exit as their stdin pipes close
        _gone(pid, cluster, 5.0)
    latest = cluster.read_state() or doc
    if latest.get("state") != "stopped":
        cluster.clean_dead_daemon(latest)

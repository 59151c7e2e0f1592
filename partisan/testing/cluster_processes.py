"""Process and output helpers of `partisan.testing.cluster`: which processes are a cluster's, and the CLI's words.

Kept apart so `Cluster` reads as the user's API; only `ClusterCommandError` is
public (re-exported by `partisan.testing.cluster`).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: the leak checks do not import the cluster
# CLI. None closes an import cycle (tests/unit/test_imports.py).
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from partisan.errors import ClusterError


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


def is_cluster_process(cmdline: Sequence[str], root: str) -> bool:
    """True for this cluster's daemon (``--dir ROOT``) or one of its nodes (``--keys ROOT/keys``)."""
    from partisan.cluster.layout import DAEMON_MODULE

    if DAEMON_MODULE in cmdline:
        return root in cmdline
    return "partisan" in cmdline and "node" in cmdline and str(Path(root) / "keys") in cmdline


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def took_effect(pid: int, sig: str) -> bool:
    try:
        proc = psutil.Process(pid)
        status = proc.status()
    except psutil.NoSuchProcess:
        return sig in ("KILL", "TERM")
    if sig in ("KILL", "TERM"):
        return status == psutil.STATUS_ZOMBIE
    stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    return stopped if sig == "STOP" else not stopped


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return str(proc.pid)


def pid_in(stderr: str) -> int | None:
    """The pid in ``kill``'s "sent SIGKILL to n2 (os pid 123)"."""
    marker = "(os pid "
    start = stderr.rfind(marker)
    if start < 0:
        return None
    digits = stderr[start + len(marker) :].split(")", 1)[0]
    return int(digits) if digits.isdigit() else None


def one_line(stderr: str) -> str:
    """The CLI's error line: the last ``error`` line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "(no output)"


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data

"""Leak checks: child processes, file descriptors and sockets a test left behind.

A test that leaks a node process slows every later test and may hold a port;
one that leaks sockets or descriptors eventually makes an unrelated test fail
with EMFILE. `Snapshot.take()` before, `Snapshot.leaks_since(before)` after
(which waits a little for asynchronous cleanup to finish) names what is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = ["Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What this process owns at one moment."""

    children: frozenset[int]
    fds: int
    sockets: frozenset[tuple[str, str]]

    @classmethod
    def take(cls) -> Snapshot:
        me = psutil.Process()
        children = frozenset(p.pid for p in me.children(recursive=True) if _alive(p))
        sockets = frozenset(
            (_addr(c.laddr), _addr(c.raddr)) for c in me.net_connections(kind="inet")
        )
        return cls(children, me.num_fds(), sockets)

    def leaks_since(self, before: Snapshot, *, grace: float = 3.0, fd_slack: int = 0) -> list[str]:
        """What exists now and did not in `before`, after up to `grace` s for cleanup."""
        deadline = time.monotonic() + grace
        now = self
        while True:
            problems = now._compare(before, fd_slack)
            if not problems or time.monotonic() >= deadline:
                return problems
            time.sleep(0.05)
            now = Snapshot.take()

    def _compare(self, before: Snapshot, fd_slack: int) -> list[str]:
        problems = []
        extra_children = self.children - before.children
        if extra_children:
            described = []
            for pid in sorted(extra_children):
                try:
                    described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
                except psutil.Error:
                    described.append(str(pid))
            problems.append("child processes still running: " + "; ".join(described))
        extra_sockets = self.sockets - before.sockets
        if extra_sockets:
            problems.append(
                "sockets still open: "
                + ", ".join(f"{local}->{remote or '-'}" for local, remote in sorted(extra_sockets))
            )
        if self.fds > before.fds + fd_slack:
            problems.append(f"file descriptors: {before.fds} before, {self.fds} after")
        return problems


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _addr(addr: Any) -> str:
    if not addr:
        return ""
    return f"{addr[0]}:{addr[1]}"

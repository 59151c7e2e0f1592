"""The pure half of the cluster observer: one `NodeStatus` from what the observer learnt.

`partisan.cluster.observer` gathers, per node, its cluster.json entry (the
daemon's record), its `probe.report` answer (or why there is none) and what
the OS says about its process (`process_info`); `node_status` turns the three
into the `NodeStatus` every view renders. `RepairClock` keeps the event-log
side (`Health.last_repair_s`) incremental. Nothing here touches a socket, so
every rule is tested on plain dicts.

How a node's state is decided (`node_status`, pure and unit-tested):

* cluster.json says ``down`` → DOWN, with the daemon's error; ``starting`` →
  STARTING, with the daemon's error if it is a restart (not probed: it may
  not listen yet);
* its process is gone (or a zombie) though cluster.json says ``up`` → DOWN,
  error ``"process gone"`` (the daemon has not noticed yet);
* its process is stopped (SIGSTOP) → PAUSED with ``alive=True``: the process
  exists and will answer once continued, and `NodeStatus.live` already
  excludes PAUSED, so a paused node counts as dead for convergence as the
  contract requires. A paused node is not asked (it cannot answer);
* it answered → UP with its report;
* it did not answer in time while its process runs → ``error="timeout"``,
  ``alive=False``; state UP if this incarnation answered before (a hung or
  overloaded node), STARTING if it never did (still booting). When the
  observer knows better than "timeout" the error says so: ``"refused: ..."``
  (the node would not take our key) or ``"report failed: ..."`` (it ran
  `probe.report` and that raised, e.g. another partisan version).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil

from partisan.cluster.events import EventTail, repair_episode, repair_point
from partisan.cluster.snapshot import NodeState, NodeStatus

__all__ = ["ProcessInfo", "RepairClock", "as_int", "node_status", "process_info"]


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """What the OS says about a node's process: ``running``, ``stopped``, ``gone`` or ``unknown``."""

    state: str = "unknown"
    rss: int | None = None


def process_info(pid: object) -> ProcessInfo:
    """The OS's view of process `pid` (``unknown`` when there is no pid or we may not look)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return ProcessInfo()
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            status = proc.status()
            if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
                return ProcessInfo("gone")
            rss = int(proc.memory_info().rss)
    except psutil.NoSuchProcess:  # ZombieProcess included
        return ProcessInfo("gone")
    except (psutil.AccessDenied, OSError):
        return ProcessInfo()
    stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    return ProcessInfo("stopped" if stopped else "running", rss)


def as_int(value: object) -> int | None:
    """`value` if it is an int (not a bool), else None: cluster.json and reports are untrusted JSON."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(value: object) -> tuple[str, ...]:
    return tuple(sorted(str(v) for v in value)) if isinstance(value, list | tuple) else ()


def node_status(
    entry: Mapping[str, Any],
    manager: str,
    *,
    answer: Mapping[str, Any] | str | None,
    process: ProcessInfo,
    answered_before: bool = False,
) -> NodeStatus:
    """One node's status from its cluster.json `entry`, its rpc `answer` and its `process`.

    `answer` is the node's report, or why there is none (``"timeout"``, or
    e.g. ``"refused: ..."`` when the node would not take our key); None
    means the same as ``"timeout"``. See the module docstring for the rules;
    `answered_before` says whether this incarnation answered an earlier poll
    (UP vs STARTING when it did not answer this one).
    """
    base = NodeStatus(
        name=str(entry["name"]),
        address=entry.get("address"),
        os_pid=as_int(entry.get("os_pid")),
        incarnation=as_int(entry.get("incarnation")),
        role=entry.get("role"),
        manager=manager,
        restarts=as_int(entry.get("restarts")) or 0,
        rss=process.rss,
    )
    daemon_state = entry.get("state")
    if daemon_state == "down":
        return replace(base, state=NodeState.DOWN, error=entry.get("error") or "down", rss=None)
    if daemon_state != "up" or not base.address:  # e.g. "killed by SIGKILL; restarting"
        return replace(base, state=NodeState.STARTING, error=entry.get("error"))
    if process.state == "gone":
        return replace(base, state=NodeState.DOWN, error="process gone", rss=None)
    if process.state == "stopped":
        return replace(base, state=NodeState.PAUSED, alive=True)
    if not isinstance(answer, Mapping):
        state = NodeState.UP if answered_before else NodeState.STARTING
        return replace(base, state=state, error=answer or "timeout")
    connections = answer.get("connections")
    return replace(
        base,
        address=answer.get("address") or base.address,
        os_pid=as_int(answer.get("os_pid")) or base.os_pid,
        incarnation=as_int(answer.get("incarnation")) or base.incarnation,
        alive=True,
        role=answer.get("role", base.role),
        manager=answer.get("manager") or manager,
        state=NodeState.UP,
        members=_names(answer.get("members")),
        active=_names(answer.get("active")),
        passive=_names(answer.get("passive")),
        connections={
            str(peer): {str(ch): int(n) for ch, n in lanes.items()}
            for peer, lanes in (connections if isinstance(connections, dict) else {}).items()
            if isinstance(lanes, dict)
        },
        messages_in=as_int(answer.get("messages_in")),
        messages_out=as_int(answer.get("messages_out")),
        actors=as_int(answer.get("actors")),
        max_mailbox=as_int(answer.get("max_mailbox")),
        rss=as_int(answer.get("rss")) or process.rss,
        cpu=answer.get("cpu"),
    )


class RepairClock:
    """`Health.last_repair_s` from the event logs, read incrementally.

    Only topology records are kept, parsed once into `repair_point` tuples
    (at most `keep`, the newest) and kept in time order; the latest episode
    is recomputed only when one arrived (a poll that found nothing new costs
    a ``stat`` per log). Re-parsing every kept timestamp each poll cost the
    live view ~40 ms a frame at 64 nodes.

    From the logs alone an episode ends at its last topology event, and the
    view churn that follows a repair (HyParView rebalancing over-full views)
    keeps extending it. So when this observer *saw* the failure (a snapshot
    not converged after it) it also caps the episode at the first converged
    snapshot after that: the contract's "from the first ``peer.down`` to the
    next converged snapshot". Passing `now` (the snapshot's time) enables it.
    """

    def __init__(self, keep: int = 20_000) -> None:
        self.tail = EventTail([])
        self.keep = keep
        self._points: list[tuple[float, bool]] = []
        self._episode: tuple[float, float] | None = None
        self._broken_since: float | None = None  # episode start we saw unconverged
        self._converged_at: dict[float, float] = {}  # episode start -> first converged after

    def update(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Read what the logs at `paths` gained (the set of logs may change between calls)."""
        self.tail.paths = [Path(p) for p in paths]
        fresh = [p for p in map(repair_point, self.tail.read()) if p is not None]
        if fresh:
            for point in fresh:
                bisect.insort(self._points, point)
            del self._points[: max(0, len(self._points) - self.keep)]
            self._episode = repair_episode(self._points)

    def last_repair_s(self, converged: bool, now: float | None = None) -> float | None:
        """The latest repair's duration, or None (none yet, or one in progress: not converged)."""
        if self._episode is None:
            return None
        start, end = self._episode
        if not converged:
            if now is not None and now >= start:
                self._broken_since = start
            return None
        if now is not None and self._broken_since == start:
            self._converged_at.setdefault(start, now)
        return min(end, self._converged_at.get(start, end)) - start

"""What one node reports to the ``partisan cluster`` observer, computed on the node itself.

The observer (a hidden node) calls ``await partisan.rpc(name, report)`` on
every node about once a second while the live view is open; `rpc` pickles
this module function by reference, so the node runs its own copy of `report`
and answers a plain dict (no partisan classes: the observer may be another
version). Everything here is a snapshot of counters the node keeps anyway;
nothing walks more than the node's peers, channels and actors once.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: the probe runs inside a node; the CLI that
# ships it does not import the runtime. None closes an import cycle (tests/unit/test_imports.py).
import logging
import os
import resource
import sys
import time
from typing import Any

__all__ = ["report"]

logger = logging.getLogger(__name__)

#: (monotonic time, user+system CPU seconds) at the previous `report()` call.
_last_cpu: tuple[float, float] | None = None


def report() -> dict[str, Any]:
    """This node's status for the observer (see `partisan.cluster.snapshot.NodeStatus`).

    Keys: ``name, address, os_pid, incarnation, role, manager, members,
    active, passive, connections, messages_in, messages_out, actors,
    max_mailbox, rss, cpu``. Must run inside a started `partisan.Node` (an
    rpc does); raises RuntimeError otherwise.
    """
    from partisan.actors.process import current
    from partisan.node import node_of

    runtime = current().runtime
    node = node_of(runtime)
    if node is None or node.spec is None:
        raise RuntimeError(f"report(): no running Node owns runtime {runtime.node!r}")
    config = node.config
    service = node.peer_service
    manager = service.manager if service is not None else None
    if config.manager != "hyparview":
        manager = None  # only HyParView has active/passive views worth showing
    connections, messages_in, messages_out = _links(node.links)
    actors, max_mailbox = _actors(runtime)
    return {
        "name": node.name,
        "address": node.spec.address,
        "os_pid": os.getpid(),
        "incarnation": node.incarnation,
        "role": config.role,
        "manager": config.manager,
        "members": sorted(node.members()),
        "active": [] if manager is None else sorted(s.name for s in manager.active()),
        "passive": [] if manager is None else sorted(s.name for s in manager.passive()),
        "connections": connections,
        "messages_in": messages_in,
        "messages_out": messages_out,
        "actors": actors,
        "max_mailbox": max_mailbox,
        "rss": rss_bytes(),
        "cpu": cpu_percent(),
    }


def _links(links: Any) -> tuple[dict[str, dict[str, int]], int, int]:
    """Open lanes per channel of each connected non-hidden peer, and message totals."""
    connections: dict[str, dict[str, int]] = {}
    messages_in = messages_out = 0
    if links is None:
        return connections, 0, 0
    try:
        stats = links.statistics()
    except Exception:  # a report must never fail for want of statistics
        logger.exception("links.statistics() failed")
        return connections, 0, 0
    for peer in stats.peers:
        for channel in peer.channels:
            messages_in += channel.messages_in
            messages_out += channel.messages_out
        if peer.connected and not peer.hidden:
            connections[peer.name] = {c.channel: c.lanes_open for c in peer.channels}
    return connections, messages_in, messages_out


def _actors(runtime: Any) -> tuple[int, int]:
    """(actors, deepest mailbox); one pass over the processes, no sort."""
    deepest = 0
    for process in runtime.processes.values():
        depth = len(process)
        if depth > deepest:
            deepest = depth
    return max(0, len(runtime.processes) - 1), deepest  # the main pseudo-actor is not one


def rss_bytes() -> int | None:
    """Resident set size of this process in bytes (None if unknown)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak, not current
    except (OSError, ValueError):
        return None
    return int(peak if sys.platform == "darwin" else peak * 1024)


def cpu_percent() -> float | None:
    """Percent of one core used since the previous call in this process (None the first time)."""
    global _last_cpu
    times = os.times()
    now, used = time.monotonic(), times.user + times.system
    previous, _last_cpu = _last_cpu, (now, used)
    if previous is None or now <= previous[0]:
        return None
    return round(100.0 * (used - previous[1]) / (now - previous[0]), 1)

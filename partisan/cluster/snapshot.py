"""The records a cluster view renders: one `NodeStatus` per node, one `ClusterSnapshot` per poll.

These are the shared shapes of the cluster tools: the observer builds them,
``cluster status --json`` prints them (`snapshot_to_json`), the live view,
``cluster graph`` and ``cluster wait`` read them, and tests build them by
hand. All are frozen; every field of the JSON document is always present
(``None`` / ``null`` when unknown), so a script never meets a missing key.

The JSON document (schema 1)::

    {"schema": 1, "manager": "hyparview", "converged": true, "taken_at": 1764700000.1,
     "health": {"alive": 8, "dead": 0, "components": 1, "asymmetric_edges": 0,
                "stale_references": 0, "last_repair_s": 0.61},
     "nodes": [{"name": "n1", "address": "127.0.0.1:40001", "os_pid": 1234,
                "incarnation": 17647..., "alive": true, "role": null,
                "manager": "hyparview", "state": "up", "restarts": 0,
                "members": ["n1", "n2", ...], "active": ["n2", ...], "passive": [...],
                "connections": {"n2": {"default": 1, "membership": 1}},
                "messages_in": 120, "messages_out": 118, "actors": 3,
                "max_mailbox": 0, "rss": 31000000, "cpu": 1.5, "error": null}, ...]}
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "SCHEMA",
    "ClusterSnapshot",
    "Health",
    "NodeState",
    "NodeStatus",
    "name_order",
    "node_from_json",
    "node_to_json",
    "snapshot_from_json",
    "snapshot_to_json",
    "sorted_names",
]

#: Version of the ``status --json`` document.
SCHEMA = 1


class NodeState(enum.Enum):
    """Where a node of the cluster is in its life, as the CLI shows it."""

    STARTING = "starting"  # its process is starting, or it did not answer yet
    UP = "up"  # it answered the last poll
    PAUSED = "paused"  # its process is stopped (SIGSTOP); counts as dead for convergence
    DOWN = "down"  # no process (killed, stopped, past its restart limit)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as the observer saw it in one poll.

    Name lists are sorted; `members` includes the node itself; `active` and
    `passive` are empty where the manager has no such view (or the node is
    dead). `connections` maps each connected non-hidden peer to
    ``{channel: open lanes}``. `messages_in`/`messages_out` are cumulative
    for this incarnation; `cpu` is percent of one core since the node's
    previous report; `rss` is bytes. `error` is ``"timeout"`` when the node
    did not answer in time, else why it is down (``None`` when up).
    """

    name: str
    address: str | None = None
    os_pid: int | None = None
    incarnation: int | None = None
    alive: bool = False
    role: str | None = None
    manager: str | None = None
    state: NodeState = NodeState.DOWN
    restarts: int = 0
    members: tuple[str, ...] = ()
    active: tuple[str, ...] = ()
    passive: tuple[str, ...] = ()
    connections: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    messages_in: int | None = None
    messages_out: int | None = None
    actors: int | None = None
    max_mailbox: int | None = None
    rss: int | None = None
    cpu: float | None = None
    error: str | None = None

    @property
    def live(self) -> bool:
        """Counts as live for convergence: alive and not paused."""
        return self.alive and self.state is not NodeState.PAUSED

    def neighbours(self, manager: str | None = None) -> tuple[str, ...]:
        """The peers this node points at in the overlay graph.

        HyParView: its active view. Every other manager: its connected peers.
        """
        if (manager or self.manager) == "hyparview":
            return self.active
        return tuple(sorted(self.connections))


@dataclass(frozen=True, slots=True)
class Health:
    """The header of a snapshot: how healthy the overlay is.

    `components` counts connected components of the overlay graph over live
    nodes (1 is healthy; 0 when nothing is live); `asymmetric_edges` counts
    one-way edges between live nodes; `stale_references` counts references
    from live nodes to dead ones (in views or connections); `last_repair_s`
    is how long the latest repair took (from the first ``peer.down`` of the
    latest failure to convergence), ``None`` if there was none or it is still
    in progress.
    """

    alive: int = 0
    dead: int = 0
    components: int = 0
    asymmetric_edges: int = 0
    stale_references: int = 0
    last_repair_s: float | None = None


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Every node of a cluster at one moment (`taken_at`, wall-clock seconds)."""

    manager: str
    nodes: tuple[NodeStatus, ...]
    converged: bool = False
    health: Health = field(default_factory=Health)
    taken_at: float = 0.0
    #: Static clusters only: the configured (undirected) links, as sorted name pairs.
    configured_links: tuple[tuple[str, str], ...] = ()

    def node(self, name: str) -> NodeStatus | None:
        """The status of node `name`, if it is part of the cluster."""
        for status in self.nodes:
            if status.name == name:
                return status
        return None

    def with_health(self, converged: bool, health: Health) -> ClusterSnapshot:
        """A copy with the assessment filled in."""
        return replace(self, converged=converged, health=health)


# ---------------------------------------------------------------- JSON


def node_to_json(status: NodeStatus) -> dict[str, Any]:
    """The ``status --json`` object of one node (every key present)."""
    return {
        "name": status.name,
        "address": status.address,
        "os_pid": status.os_pid,
        "incarnation": status.incarnation,
        "alive": status.alive,
        "role": status.role,
        "manager": status.manager,
        "state": status.state.value,
        "restarts": status.restarts,
        "members": sorted(status.members),
        "active": sorted(status.active),
        "passive": sorted(status.passive),
        "connections": {
            peer: dict(sorted(channels.items()))
            for peer, channels in sorted(status.connections.items())
        },
        "messages_in": status.messages_in,
        "messages_out": status.messages_out,
        "actors": status.actors,
        "max_mailbox": status.max_mailbox,
        "rss": status.rss,
        "cpu": status.cpu,
        "error": status.error,
    }


def snapshot_to_json(snapshot: ClusterSnapshot) -> dict[str, Any]:
    """The ``status --json`` document (schema 1)."""
    h = snapshot.health
    return {
        "schema": SCHEMA,
        "manager": snapshot.manager,
        "converged": snapshot.converged,
        "taken_at": snapshot.taken_at,
        "health": {
            "alive": h.alive,
            "dead": h.dead,
            "components": h.components,
            "asymmetric_edges": h.asymmetric_edges,
            "stale_references": h.stale_references,
            "last_repair_s": h.last_repair_s,
        },
        "configured_links": [list(pair) for pair in snapshot.configured_links],
        "nodes": [node_to_json(n) for n in snapshot.nodes],
    }


def _names(value: Any) -> tuple[str, ...]:
    return tuple(sorted(str(v) for v in value or ()))


def node_from_json(obj: Mapping[str, Any]) -> NodeStatus:
    """Invert `node_to_json` (for tests and stored snapshots)."""
    return NodeStatus(
        name=obj["name"],
        address=obj.get("address"),
        os_pid=obj.get("os_pid"),
        incarnation=obj.get("incarnation"),
        alive=bool(obj.get("alive")),
        role=obj.get("role"),
        manager=obj.get("manager"),
        state=NodeState(obj.get("state", "down")),
        restarts=int(obj.get("restarts") or 0),
        members=_names(obj.get("members")),
        active=_names(obj.get("active")),
        passive=_names(obj.get("passive")),
        connections={
            str(peer): {str(ch): int(n) for ch, n in channels.items()}
            for peer, channels in (obj.get("connections") or {}).items()
        },
        messages_in=obj.get("messages_in"),
        messages_out=obj.get("messages_out"),
        actors=obj.get("actors"),
        max_mailbox=obj.get("max_mailbox"),
        rss=obj.get("rss"),
        cpu=obj.get("cpu"),
        error=obj.get("error"),
    )


def snapshot_from_json(obj: Mapping[str, Any]) -> ClusterSnapshot:
    """Invert `snapshot_to_json`."""
    h = obj.get("health") or {}
    return ClusterSnapshot(
        manager=obj["manager"],
        nodes=tuple(node_from_json(n) for n in obj.get("nodes", ())),
        converged=bool(obj.get("converged")),
        health=Health(
            alive=int(h.get("alive", 0)),
            dead=int(h.get("dead", 0)),
            components=int(h.get("components", 0)),
            asymmetric_edges=int(h.get("asymmetric_edges", 0)),
            stale_references=int(h.get("stale_references", 0)),
            last_repair_s=h.get("last_repair_s"),
        ),
        taken_at=float(obj.get("taken_at") or 0.0),
        configured_links=tuple((str(a), str(b)) for a, b in (obj.get("configured_links") or ())),
    )


def sorted_names(names: Sequence[str]) -> tuple[str, ...]:
    """Names in display order: ``n2`` before ``n10`` (numeric suffixes compare as numbers)."""
    return tuple(sorted(names, key=name_order))


def name_order(name: str) -> tuple[str, int, str]:
    """Sort key that puts ``n2`` before ``n10``."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return (stem, int(digits) if digits else -1, name)

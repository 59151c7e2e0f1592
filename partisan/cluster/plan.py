"""What ``partisan cluster up`` was asked for, and the pure rules that follow from it.

`ClusterPlan` is the user's request (manager, size, roles, topology, the
application to load, restart policy). From it, without any I/O:

* `node_names` and `role_of`: nodes are ``n1..nN``; under client-server
  ``n1..nK`` are servers (``--servers``, default ``min(2, n)``);
* `configured_links`: a static cluster's undirected links for ``--topology``
  (``ring``: each node and its successor; ``star``: n1 and every other node;
  ``full``: every pair);
* `start_waves`: the order of the first start. Every node joins peers that
  are already up, so a node can only start once its contacts serve. Nodes
  with no dependency between them start together: full mesh and HyParView
  start n1, then everyone else at once (they join n1); client-server starts
  n1, then the other servers, then every client (clients join every server);
  static colours the topology graph greedily, so no two neighbours share a
  wave, and a node joins its neighbours of earlier waves — a ring starts in
  2 or 3 waves instead of n.
* `contacts`: whom a node joins when it (re)starts, given who is up now.

A node's restart uses the same `contacts` rule against the nodes running at
that moment, so a restarted seed rejoins the cluster rather than starting a
cluster of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "MANAGERS",
    "TOPOLOGIES",
    "ClusterPlan",
    "configured_links",
    "contacts",
    "node_names",
    "role_of",
    "start_waves",
]

MANAGERS = ("full-mesh", "hyparview", "client-server", "static")
TOPOLOGIES = ("ring", "star", "full")
RESTART_POLICIES = ("on-failure", "never")


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """A local cluster as ``cluster up`` was asked to run it (stored in cluster.json)."""

    n: int
    manager: str = "hyparview"
    servers: int | None = None
    topology: str = "ring"
    channels: str | None = None
    parallelism: int | None = None
    restart: str = "on-failure"
    max_restarts: int = 5
    restart_period: float = 10.0
    imports: tuple[str, ...] = ()
    run: str | None = None
    settings: tuple[str, ...] = ()  # FIELD=VALUE, passed to every node as --set
    host: str = "127.0.0.1"
    join_timeout: float = 10.0
    #: Where nodes run (the directory ``up`` ran in), so ``--import``/``--run`` find the user's modules.
    cwd: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"-n: invalid value {self.n!r}; expected a number of nodes >= 1")
        if self.manager not in MANAGERS:
            raise ValueError(
                f"--manager: invalid value {self.manager!r}; expected one of {', '.join(MANAGERS)}"
            )
        if self.topology not in TOPOLOGIES:
            raise ValueError(
                f"--topology: invalid value {self.topology!r}; expected one of {', '.join(TOPOLOGIES)}"
            )
        if self.restart not in RESTART_POLICIES:
            raise ValueError(
                f"--restart: invalid value {self.restart!r}; expected on-failure or never"
            )
        if self.max_restarts < 0:
            raise ValueError(f"--max-restarts: invalid value {self.max_restarts!r}; expected >= 0")
        if self.servers is not None and not 1 <= self.servers <= self.n:
            raise ValueError(f"--servers: invalid value {self.servers!r}; expected 1..{self.n}")

    @property
    def server_count(self) -> int:
        """How many servers a client-server cluster has (0 for other managers)."""
        if self.manager != "client-server":
            return 0
        return self.servers if self.servers is not None else min(2, self.n)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["imports"] = list(self.imports)
        data["settings"] = list(self.settings)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterPlan:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["imports"] = tuple(kwargs.get("imports", ()))
        kwargs["settings"] = tuple(kwargs.get("settings", ()))
        return cls(**kwargs)


def node_names(plan: ClusterPlan) -> list[str]:
    """``n1..nN``."""
    return [f"n{i}" for i in range(1, plan.n + 1)]


def role_of(plan: ClusterPlan, name: str) -> str | None:
    """``server``/``client`` under client-server, else None."""
    if plan.manager != "client-server":
        return None
    return "server" if _index(name) <= plan.server_count else "client"


def configured_links(plan: ClusterPlan) -> list[tuple[str, str]]:
    """A static cluster's links as sorted (a, b) pairs; empty for other managers."""
    if plan.manager != "static" or plan.n < 2:
        return []
    names = node_names(plan)
    pairs: set[tuple[str, str]] = set()
    if plan.topology == "ring":
        for i, name in enumerate(names):
            pairs.add(_pair(name, names[(i + 1) % len(names)]))
    elif plan.topology == "star":
        pairs.update(_pair(names[0], other) for other in names[1:])
    else:
        pairs.update(_pair(a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    pairs.discard((names[0], names[0]))
    return sorted(pairs, key=lambda p: (_index(p[0]), _index(p[1])))


def start_waves(plan: ClusterPlan) -> list[list[str]]:
    """Groups of nodes to start together, in order (see the module docstring)."""
    names = node_names(plan)
    if plan.manager in ("full-mesh", "hyparview"):
        return [names[:1], names[1:]] if len(names) > 1 else [names]
    if plan.manager == "client-server":
        k = plan.server_count
        waves = [names[:1], names[1:k], names[k:]]
        return [w for w in waves if w]
    colour: dict[str, int] = {}
    neighbours = _neighbours(plan)
    for name in names:
        used = {colour[m] for m in neighbours.get(name, ()) if m in colour}
        colour[name] = next(c for c in range(len(names) + 1) if c not in used)
    waves_by_colour: dict[int, list[str]] = {}
    for name in names:
        waves_by_colour.setdefault(colour[name], []).append(name)
    return [waves_by_colour[c] for c in sorted(waves_by_colour)]


def contacts(plan: ClusterPlan, name: str, up: Collection[str]) -> list[str]:
    """Whom `name` joins when it starts while the nodes in `up` serve (`name` excluded).

    Full mesh and HyParView: one contact, the first node up in name order
    (gossip and the overlay do the rest). Client-server: a server joins the
    servers that are up; a client joins every server that is up. Static: the
    configured neighbours that are up (static joins are symmetric, so either
    end may make the link).
    """
    others = [n for n in node_names(plan) if n != name and n in up]
    if plan.manager in ("full-mesh", "hyparview"):
        return others[:1]
    if plan.manager == "client-server":
        return [n for n in others if role_of(plan, n) == "server"]
    neighbours = _neighbours(plan).get(name, set())
    return [n for n in others if n in neighbours]


def _neighbours(plan: ClusterPlan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, b in configured_links(plan):
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    return out


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if _index(a) <= _index(b) else (b, a)


def _index(name: str) -> int:
    return int(name[1:]) if name[1:].isdigit() else 0


def wave_of(waves: Sequence[Sequence[str]], name: str) -> int:
    """The index of the wave that starts `name`."""
    for i, wave in enumerate(waves):
        if name in wave:
            return i
    raise KeyError(name)

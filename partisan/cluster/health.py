"""Convergence and health of a cluster: a pure function of one snapshot.

The observer polls every node, builds a `ClusterSnapshot`, and asks `assess`
whether the overlay has settled. ``cluster wait`` blocks on ``converged``; the
live view and ``status`` show the `Health` counters. Nothing here reads a
clock or a socket, so every rule is tested on hand-built snapshots.

A node counts as *live* when it answered and is not paused
(`NodeStatus.live`); every other node is *dead*. Convergence is judged over
live nodes only: a killed node that stays down does not keep the cluster
"unconverged" forever, but a live node still pointing at it does (for the
managers that must forget dead peers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from partisan.cluster.snapshot import ClusterSnapshot, Health, NodeStatus

__all__ = [
    "assess",
    "asymmetric_edges",
    "components",
    "converged",
    "overlay_edges",
    "stale_references",
]

Edge = tuple[str, str]


def assess(snapshot: ClusterSnapshot, *, last_repair_s: float | None = None) -> ClusterSnapshot:
    """The snapshot with `converged` and `health` filled in.

    `last_repair_s` comes from the event logs (`events.last_repair_s`), which
    this pure function does not read; it is passed through unchanged.
    """
    live = _live(snapshot)
    health = Health(
        alive=len(live),
        dead=len(snapshot.nodes) - len(live),
        components=components(snapshot),
        asymmetric_edges=asymmetric_edges(snapshot),
        stale_references=stale_references(snapshot),
        last_repair_s=last_repair_s,
    )
    return snapshot.with_health(converged(snapshot), health)


# ---------------------------------------------------------------- graph over live nodes


def _live(snapshot: ClusterSnapshot) -> dict[str, NodeStatus]:
    return {n.name: n for n in snapshot.nodes if n.live}


def overlay_edges(snapshot: ClusterSnapshot) -> frozenset[Edge]:
    """Directed overlay edges ``a → b`` between live nodes.

    The overlay is what the manager routes over: the active view for
    HyParView, the open connections for every other manager.
    """
    live = _live(snapshot)
    return frozenset(
        (a.name, b)
        for a in live.values()
        for b in a.neighbours(snapshot.manager)
        if b in live and b != a.name
    )


def _component_count(names: Iterable[str], edges: Iterable[Edge]) -> int:
    """Connected components of the undirected graph (union-find: no recursion limit)."""
    parent = {name: name for name in names}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    return len({find(x) for x in parent})


def components(snapshot: ClusterSnapshot) -> int:
    """Connected components of the undirected overlay over live nodes (0 when none is live)."""
    return _component_count(_live(snapshot), overlay_edges(snapshot))


def asymmetric_edges(snapshot: ClusterSnapshot) -> int:
    """Directed overlay edges ``a → b`` between live nodes with no ``b → a``."""
    edges = overlay_edges(snapshot)
    return sum(1 for a, b in edges if (b, a) not in edges)


def _references(status: NodeStatus, manager: str) -> set[str]:
    """The peers a node still names, where naming a dead peer is stale."""
    names = set(status.active) | set(status.connections)
    if manager == "full-mesh":
        names |= set(status.members)
    return names


def stale_references(snapshot: ClusterSnapshot) -> int:
    """(live node, dead node) pairs where the live node still names the dead one.

    Named means: in its active view or its connections (or its members, for
    full mesh, where membership is expected to drop dead nodes). Names that
    are not part of the cluster at all are not counted: they are not "dead",
    just unknown.
    """
    dead = {n.name for n in snapshot.nodes if not n.live}
    return sum(len(_references(node, snapshot.manager) & dead) for node in _live(snapshot).values())


# ---------------------------------------------------------------- convergence per manager


def _connected_both_ways(live: Mapping[str, NodeStatus], a: str, b: str) -> bool:
    return b in live[a].connections and a in live[b].connections


def _full_mesh(snapshot: ClusterSnapshot, live: Mapping[str, NodeStatus]) -> bool:
    names = set(live)
    if any(not names <= set(node.members) for node in live.values()):
        return False
    return all(_connected_both_ways(live, a, b) for a in live for b in live if a < b)


def _hyparview(snapshot: ClusterSnapshot, live: Mapping[str, NodeStatus]) -> bool:
    dead = {n.name for n in snapshot.nodes if not n.live}
    if any(dead & set(node.active) for node in live.values()):
        return False
    edges = overlay_edges(snapshot)
    symmetric = all((b, a) in edges for a, b in edges)
    return symmetric and _component_count(live, edges) == 1


def _client_server(snapshot: ClusterSnapshot, live: Mapping[str, NodeStatus]) -> bool:
    """Servers know everyone; clients know the servers and are linked to each.

    With no live server there is no overlay to converge to, so the answer is
    False (clients cannot reach one another without a server).
    """
    servers = {name for name, node in live.items() if node.role == "server"}
    if not servers:
        return False
    everyone = set(live)
    for name, node in live.items():
        members = set(node.members)
        if name in servers:
            if not everyone <= members:
                return False
        elif not (servers | {name}) <= members or not all(
            _connected_both_ways(live, name, s) for s in servers
        ):
            return False
    return True


def _static(snapshot: ClusterSnapshot, live: Mapping[str, NodeStatus]) -> bool:
    """Every configured link whose two ends are live is open both ways."""
    return all(
        _connected_both_ways(live, a, b)
        for a, b in snapshot.configured_links
        if a in live and b in live
    )


def _generic(snapshot: ClusterSnapshot, live: Mapping[str, NodeStatus]) -> bool:
    """Unknown manager: a connected, symmetric overlay is the best guess."""
    edges = overlay_edges(snapshot)
    return all((b, a) in edges for a, b in edges) and _component_count(live, edges) == 1


_RULES = {
    "full-mesh": _full_mesh,
    "hyparview": _hyparview,
    "client-server": _client_server,
    "static": _static,
}


def converged(snapshot: ClusterSnapshot) -> bool:
    """Whether the overlay over live nodes is what the manager aims for.

    Always False when no node is live: an empty cluster has not converged to
    anything a user waits for.
    """
    live = _live(snapshot)
    if not live:
        return False
    return _RULES.get(snapshot.manager, _generic)(snapshot, live)

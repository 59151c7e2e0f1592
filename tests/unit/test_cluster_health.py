"""`health.assess`: convergence and the health counters, per manager, on hand-built snapshots."""

from __future__ import annotations

from partisan.cluster.health import assess
from partisan.cluster.snapshot import ClusterSnapshot, Health, NodeState, NodeStatus


def up(name: str, *, members=(), active=(), connections=(), role=None, manager=None) -> NodeStatus:
    return NodeStatus(
        name=name,
        alive=True,
        state=NodeState.UP,
        role=role,
        manager=manager,
        members=tuple(sorted(members)),
        active=tuple(sorted(active)),
        connections={peer: {"default": 1} for peer in connections},
    )


def down(name: str) -> NodeStatus:
    return NodeStatus(name=name, alive=False, state=NodeState.DOWN, error="killed")


def paused(status: NodeStatus) -> NodeStatus:
    from dataclasses import replace

    return replace(status, state=NodeState.PAUSED)


def mesh(names, *, dead=()) -> list[NodeStatus]:
    live = [n for n in names if n not in dead]
    return [
        up(n, members=live, connections=[p for p in live if p != n]) if n not in dead else down(n)
        for n in names
    ]


# ---------------------------------------------------------------- full mesh


def test_full_mesh_converged_and_counts() -> None:
    snap = assess(ClusterSnapshot("full-mesh", tuple(mesh(["n1", "n2", "n3"]))), last_repair_s=0.5)
    assert snap.converged
    assert snap.health == Health(
        alive=3, dead=0, components=1, asymmetric_edges=0, stale_references=0, last_repair_s=0.5
    )


def test_full_mesh_ignores_dead_nodes_that_everyone_forgot() -> None:
    snap = assess(ClusterSnapshot("full-mesh", tuple(mesh(["n1", "n2", "n3"], dead=["n3"]))))
    assert snap.converged
    assert (snap.health.alive, snap.health.dead, snap.health.stale_references) == (2, 1, 0)


def test_full_mesh_missing_member_or_one_way_connection_is_not_converged() -> None:
    nodes = mesh(["n1", "n2", "n3"])
    missing_member = [up("n1", members=["n1", "n2"], connections=["n2", "n3"]), *nodes[1:]]
    assert not assess(ClusterSnapshot("full-mesh", tuple(missing_member))).converged
    one_way = [up("n1", members=["n1", "n2", "n3"], connections=["n2"]), *nodes[1:]]
    snap = assess(ClusterSnapshot("full-mesh", tuple(one_way)))
    assert not snap.converged
    assert snap.health.asymmetric_edges == 1  # n3 → n1 without n1 → n3
    assert snap.health.components == 1


def test_full_mesh_members_naming_a_dead_node_are_stale() -> None:
    nodes = [
        up("n1", members=["n1", "n2", "n3"], connections=["n2"]),
        up("n2", members=["n1", "n2"], connections=["n1"]),
        down("n3"),
    ]
    snap = assess(ClusterSnapshot("full-mesh", tuple(nodes)))
    assert snap.converged  # the live pair is complete
    assert snap.health.stale_references == 1


def test_paused_node_counts_as_dead() -> None:
    nodes = mesh(["n1", "n2", "n3"])
    nodes[2] = paused(nodes[2])
    snap = assess(ClusterSnapshot("full-mesh", tuple(nodes)))
    assert (snap.health.alive, snap.health.dead) == (2, 1)
    assert snap.health.stale_references == 2  # n1 and n2 still connected to the paused n3
    assert snap.converged  # the paused node's entries do not break the live mesh


def test_nothing_live_is_never_converged() -> None:
    snap = assess(ClusterSnapshot("static", (down("n1"), down("n2"))))
    assert not snap.converged
    assert snap.health == Health(alive=0, dead=2, components=0)
    assert not assess(ClusterSnapshot("full-mesh", ())).converged


# ---------------------------------------------------------------- hyparview


def hv(name: str, *active: str) -> NodeStatus:
    return up(name, active=active, members=[name, *active])


def test_hyparview_ring_converged() -> None:
    nodes = (hv("n1", "n2", "n4"), hv("n2", "n1", "n3"), hv("n3", "n2", "n4"), hv("n4", "n3", "n1"))
    snap = assess(ClusterSnapshot("hyparview", nodes))
    assert snap.converged
    assert snap.health.components == 1


def test_hyparview_dead_in_active_view_is_stale_and_not_converged() -> None:
    nodes = (hv("n1", "n2", "n3"), hv("n2", "n1"), down("n3"))
    snap = assess(ClusterSnapshot("hyparview", nodes))
    assert not snap.converged
    assert snap.health.stale_references == 1
    assert snap.health.asymmetric_edges == 0  # edges to dead nodes are not overlay edges


def test_hyparview_partition_and_asymmetry() -> None:
    split = (hv("n1", "n2"), hv("n2", "n1"), hv("n3", "n4"), hv("n4", "n3"))
    snap = assess(ClusterSnapshot("hyparview", split))
    assert not snap.converged
    assert snap.health.components == 2
    one_way = (hv("n1", "n2", "n3"), hv("n2", "n1", "n3"), hv("n3", "n2"))
    snap = assess(ClusterSnapshot("hyparview", one_way))
    assert not snap.converged
    assert snap.health.asymmetric_edges == 1
    assert snap.health.components == 1


def test_hyparview_passive_view_does_not_count_as_stale() -> None:
    from dataclasses import replace

    nodes = (replace(hv("n1", "n2"), passive=("n3",)), hv("n2", "n1"), down("n3"))
    snap = assess(ClusterSnapshot("hyparview", nodes))
    assert snap.converged
    assert snap.health.stale_references == 0


# ---------------------------------------------------------------- client-server


def cs_nodes(*, client_links: bool = True) -> list[NodeStatus]:
    everyone = ["s1", "c1", "c2"]
    return [
        up("s1", role="server", members=everyone, connections=["c1", "c2"]),
        up("c1", role="client", members=["c1", "s1"], connections=["s1"] if client_links else []),
        up("c2", role="client", members=["c2", "s1"], connections=["s1"]),
    ]


def test_client_server_converged() -> None:
    snap = assess(ClusterSnapshot("client-server", tuple(cs_nodes())))
    assert snap.converged
    assert snap.health.components == 1


def test_client_server_client_without_link_back_is_not_converged() -> None:
    snap = assess(ClusterSnapshot("client-server", tuple(cs_nodes(client_links=False))))
    assert not snap.converged
    assert snap.health.asymmetric_edges == 1


def test_client_server_server_missing_a_client_is_not_converged() -> None:
    nodes = cs_nodes()
    nodes[0] = up("s1", role="server", members=["s1", "c1"], connections=["c1", "c2"])
    assert not assess(ClusterSnapshot("client-server", tuple(nodes))).converged


def test_client_server_without_live_server_is_not_converged() -> None:
    nodes = [down("s1"), up("c1", role="client", members=["c1"])]
    assert not assess(ClusterSnapshot("client-server", tuple(nodes))).converged


# ---------------------------------------------------------------- static


def test_static_configured_links_both_ways() -> None:
    links = (("n1", "n2"), ("n2", "n3"))
    nodes = (
        up("n1", connections=["n2"]),
        up("n2", connections=["n1", "n3"]),
        up("n3", connections=["n2"]),
    )
    assert assess(ClusterSnapshot("static", nodes, configured_links=links)).converged
    broken = (up("n1", connections=["n2"]), up("n2", connections=["n3"]), nodes[2])
    assert not assess(ClusterSnapshot("static", broken, configured_links=links)).converged


def test_static_link_to_a_dead_node_is_not_required() -> None:
    links = (("n1", "n2"), ("n2", "n3"))
    nodes = (up("n1", connections=["n2"]), up("n2", connections=["n1"]), down("n3"))
    snap = assess(ClusterSnapshot("static", nodes, configured_links=links))
    assert snap.converged
    assert (snap.health.alive, snap.health.dead) == (2, 1)

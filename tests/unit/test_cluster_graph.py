"""`graph`: JSON / DOT / text pictures of the overlay, compared with golden files.

The golden snapshot is eight HyParView nodes where n4 is dead (n3 still has
it in its active view) and n1 → n5 is one-way (n5 dropped n1). To accept a
deliberate change of format, regenerate with
``PARTISAN_UPDATE_GOLDEN=1 pytest tests/unit/test_cluster_graph.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from partisan.cluster.graph import graph_dot, graph_json, graph_text
from partisan.cluster.snapshot import ClusterSnapshot, NodeState, NodeStatus

DATA = Path(__file__).parent / "data"


def hv(name: str, active: str, passive: str = "", *, alive: bool = True) -> NodeStatus:
    return NodeStatus(
        name=name,
        alive=alive,
        state=NodeState.UP if alive else NodeState.DOWN,
        manager="hyparview",
        active=tuple(active.split()),
        passive=tuple(passive.split()),
    )


def golden_snapshot() -> ClusterSnapshot:
    nodes = (
        hv("n8", "n5 n6 n7", "n2"),
        hv("n1", "n2 n3 n5", "n6 n7"),
        hv("n2", "n1 n3 n6", "n4 n8"),
        hv("n3", "n1 n2 n4 n7"),
        hv("n4", "", alive=False),
        hv("n5", "n6 n8", "n3"),
        hv("n6", "n2 n5 n8"),
        hv("n7", "n3 n8", "n1"),
    )
    return ClusterSnapshot("hyparview", nodes, taken_at=1764700000.0)


def check_golden(name: str, actual: str) -> None:
    path = DATA / name
    if os.environ.get("PARTISAN_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_dot_matches_golden() -> None:
    check_golden("cluster_graph.dot", graph_dot(golden_snapshot(), passive=True))


def test_json_matches_golden() -> None:
    doc = graph_json(golden_snapshot(), passive=True)
    check_golden("cluster_graph.json", json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def test_text_matches_golden() -> None:
    check_golden("cluster_graph.txt", graph_text(golden_snapshot()))


def test_symmetric_pair_once_one_way_and_dead_as_given() -> None:
    links = graph_json(golden_snapshot())["links"]
    assert {"source": "n1", "target": "n2", "kind": "active", "symmetric": True} in links
    assert not [link for link in links if (link["source"], link["target"]) == ("n2", "n1")]
    one_way = [(link["source"], link["target"]) for link in links if not link["symmetric"]]
    assert one_way == [("n1", "n5"), ("n3", "n4")]
    assert all(link["kind"] == "active" for link in links)


def test_dead_node_and_text_marks() -> None:
    snap = golden_snapshot()
    nodes = graph_json(snap)["nodes"]
    assert [n["name"] for n in nodes] == [f"n{i}" for i in range(1, 9)]
    assert {"name": "n4", "alive": False, "role": None} in nodes
    lines = graph_text(snap).splitlines()
    assert lines[0] == "n1 → n2 n3 ⇢n5"
    assert lines[2] == "n3 → n1 n2 n7 ✗n4"
    assert lines[3] == "n4 ✗ →"
    assert '"n4" [label="n4 ✗", style=dashed' in graph_dot(snap)


def test_passive_edges_only_when_asked() -> None:
    snap = golden_snapshot()
    assert "passive" not in {link["kind"] for link in graph_json(snap)["links"]}
    assert "dotted" not in graph_dot(snap)
    passive = [
        link for link in graph_json(snap, passive=True)["links"] if link["kind"] == "passive"
    ]
    assert {"source": "n1", "target": "n7", "kind": "passive", "symmetric": True} in passive
    assert "  ⋯ n6 n7" in graph_text(snap, passive=True).splitlines()[0]


def test_other_managers_draw_connections_and_display_order() -> None:
    nodes = tuple(
        NodeStatus(name=n, alive=True, state=NodeState.UP, connections={p: {"default": 1}})
        for n, p in (("n10", "n2"), ("n2", "n10"))
    )
    snap = ClusterSnapshot("full-mesh", nodes)
    assert graph_json(snap, passive=True)["links"] == [
        {"source": "n2", "target": "n10", "kind": "connection", "symmetric": True}
    ]
    assert graph_text(snap) == "n2 → n10\nn10 → n2\n"
    assert '"n2" -> "n10" [dir=both];' in graph_dot(snap)
    assert graph_dot(snap) == graph_dot(ClusterSnapshot("full-mesh", nodes[::-1]))

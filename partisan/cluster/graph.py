"""Pictures of the overlay: JSON for scripts, Graphviz DOT, and one text line per node.

``partisan cluster graph`` prints these; the live view's topology pane uses
`neighbour_marks`. All are pure functions of a `ClusterSnapshot` and list
nodes and edges in display order (`name_order`: ``n2`` before ``n10``), so
the output of two equal snapshots is byte-for-byte equal and can be kept as
a golden file or diffed between two moments.

Edges run from a node to the peers it points at (`NodeStatus.neighbours`: the
active view for HyParView, the connections otherwise). Unlike `health`, the
pictures include edges to dead nodes: a live node still pointing at a dead
one is exactly what a user looks for. Names that are not nodes of the
cluster are left out (there is no node to draw them at).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from partisan.cluster.snapshot import ClusterSnapshot, NodeStatus, name_order, sorted_names

__all__ = [
    "GraphEdge",
    "NeighbourMark",
    "edges",
    "graph_dot",
    "graph_json",
    "graph_text",
    "neighbour_marks",
]


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """One drawn edge: a symmetric pair once (source first in display order), else one-way."""

    source: str
    target: str
    kind: str  # "active" | "passive" | "connection"
    symmetric: bool


@dataclass(frozen=True, slots=True)
class NeighbourMark:
    """One neighbour in a node's list, with what is wrong with the link, if anything."""

    name: str
    one_way: bool  # the neighbour does not point back
    dead: bool  # the neighbour is not live


def _overlay_kind(snapshot: ClusterSnapshot) -> str:
    return "active" if snapshot.manager == "hyparview" else "connection"


def _directed(snapshot: ClusterSnapshot, kind: str) -> set[tuple[str, str]]:
    known = {n.name for n in snapshot.nodes}
    out: set[tuple[str, str]] = set()
    for node in snapshot.nodes:
        targets = node.passive if kind == "passive" else node.neighbours(snapshot.manager)
        out.update((node.name, t) for t in targets if t in known and t != node.name)
    return out


def _fold(directed: set[tuple[str, str]], kind: str) -> list[GraphEdge]:
    """Merge ``a → b`` and ``b → a`` into one symmetric edge, sorted in display order."""
    result: list[GraphEdge] = []
    for a, b in directed:
        if (b, a) in directed:
            if name_order(a) < name_order(b):
                result.append(GraphEdge(a, b, kind, True))
        else:
            result.append(GraphEdge(a, b, kind, False))
    return sorted(result, key=lambda e: (name_order(e.source), name_order(e.target)))


def edges(snapshot: ClusterSnapshot, *, passive: bool = False) -> list[GraphEdge]:
    """Overlay edges (then HyParView passive edges, if asked), folded and sorted."""
    kind = _overlay_kind(snapshot)
    result = _fold(_directed(snapshot, kind), kind)
    if passive and snapshot.manager == "hyparview":
        result += _fold(_directed(snapshot, "passive"), "passive")
    return result


def _nodes(snapshot: ClusterSnapshot) -> list[NodeStatus]:
    return sorted(snapshot.nodes, key=lambda n: name_order(n.name))


def neighbour_marks(snapshot: ClusterSnapshot, node: NodeStatus) -> list[NeighbourMark]:
    """`node`'s overlay neighbours: symmetric first, then one-way, then dead; each in display order.

    Grouping puts the healthy links first so a broken one stands out at the
    end of the line. Names that are not nodes of the cluster count as dead.
    """
    by_name = {n.name: n for n in snapshot.nodes}
    marks = []
    for name in sorted_names(node.neighbours(snapshot.manager)):
        peer = by_name.get(name)
        dead = peer is None or not peer.live
        one_way = peer is None or node.name not in peer.neighbours(snapshot.manager)
        marks.append(NeighbourMark(name, one_way, dead))
    # Stable sort: display order within each group; a dead peer never points back anyway.
    return sorted(marks, key=lambda m: (m.dead, m.one_way and not m.dead))


# ---------------------------------------------------------------- JSON


def graph_json(snapshot: ClusterSnapshot, *, passive: bool = False) -> dict[str, Any]:
    """``{nodes: [{name, alive, role}], links: [{source, target, kind, symmetric}]}``.

    The shape d3-force and most graph tools read directly. `alive` is
    `NodeStatus.live` (a paused node is drawn as dead).
    """
    return {
        "nodes": [{"name": n.name, "alive": n.live, "role": n.role} for n in _nodes(snapshot)],
        "links": [
            {"source": e.source, "target": e.target, "kind": e.kind, "symmetric": e.symmetric}
            for e in edges(snapshot, passive=passive)
        ],
    }


# ---------------------------------------------------------------- DOT


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_node(node: NodeStatus) -> str:
    label = node.name if node.role is None else f"{node.name}\\n{node.role}"
    if node.live:
        attrs = f"label={_quote(label)}"
    else:
        attrs = f"label={_quote(label + ' ✗')}, style=dashed, color=gray, fontcolor=gray"
    return f"  {_quote(node.name)} [{attrs}];"


def _dot_edge(edge: GraphEdge) -> str:
    attrs = ["dir=both"] if edge.symmetric else []
    if edge.kind == "passive":
        attrs += ["style=dotted", "color=gray"]
    elif not edge.symmetric:
        attrs.append("style=dashed")
    return f"  {_quote(edge.source)} -> {_quote(edge.target)} [{', '.join(attrs)}];"


def graph_dot(snapshot: ClusterSnapshot, *, passive: bool = False) -> str:
    """Graphviz DOT (``dot -Tsvg``): symmetric edges once with ``dir=both``, one-way dashed.

    Dead nodes are dashed and gray with a ✗; passive edges are dotted and gray.
    """
    live = sum(1 for n in snapshot.nodes if n.live)
    title = f"{snapshot.manager}: {live}/{len(snapshot.nodes)} live"
    lines = [
        "digraph partisan {",
        f"  graph [label={_quote(title)}, labelloc=t];",
        "  node [shape=ellipse];",
        *(_dot_node(n) for n in _nodes(snapshot)),
        *(_dot_edge(e) for e in edges(snapshot, passive=passive)),
        "}",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- text


def _mark(mark: NeighbourMark) -> str:
    return ("✗" if mark.dead else "⇢" if mark.one_way else "") + mark.name


def _text_lines(snapshot: ClusterSnapshot, passive: bool) -> Iterator[str]:
    for node in _nodes(snapshot):
        head = node.name if node.live else f"{node.name} ✗"
        marks = " ".join(_mark(m) for m in neighbour_marks(snapshot, node))
        line = f"{head} → {marks}" if marks else f"{head} →"
        if passive and snapshot.manager == "hyparview" and node.passive:
            line += "  ⋯ " + " ".join(sorted_names(node.passive))
        yield line


def graph_text(snapshot: ClusterSnapshot, *, passive: bool = False) -> str:
    """One line per node: ``n1 → n2 n3 ⇢n5 ✗n4`` (⇢ one-way, ✗ dead; a dead node's name ends in ✗).

    With `passive`, HyParView nodes append ``⋯`` and their passive view.
    """
    return "".join(line + "\n" for line in _text_lines(snapshot, passive))

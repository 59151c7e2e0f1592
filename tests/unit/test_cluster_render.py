"""`render`: the live view's rich pictures, printed to a string console (no terminal)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console, RenderableType

from partisan.cluster.health import assess
from partisan.cluster.render import (
    health_line,
    node_table,
    render,
    render_plain,
    topology_lists,
    topology_matrix,
)
from partisan.cluster.snapshot import ClusterSnapshot, Health, NodeState, NodeStatus

T0 = 1764700000.0


def node(name: str, active: str = "", passive: str = "", *, state=NodeState.UP, **kw) -> NodeStatus:
    alive = state in (NodeState.UP, NodeState.PAUSED)
    index = int(name[1:])
    defaults = dict(
        address=f"127.0.0.1:{40000 + index}",
        os_pid=1000 + index,
        incarnation=1764700000000000 + 123456 * index,
        messages_in=100,
        messages_out=80,
        actors=3,
        max_mailbox=index,
        rss=31_500_000,
        cpu=1.25,
    )
    defaults.update(kw)
    return NodeStatus(
        name=name,
        alive=alive,
        state=state,
        manager="hyparview",
        active=tuple(active.split()) if alive else (),
        passive=tuple(passive.split()) if alive else (),
        **defaults,
    )


def snapshot(*nodes: NodeStatus, at: float = T0, repair: float | None = None) -> ClusterSnapshot:
    return assess(ClusterSnapshot("hyparview", nodes, taken_at=at), last_repair_s=repair)


def cluster(at: float = T0, messages_in: int = 100) -> ClusterSnapshot:
    """n10 after n2 (display order); n3 dead but still in n1's view; n1 → n2 one-way."""
    return snapshot(
        node("n10", "n2", "n1 n3 n4", messages_in=messages_in),
        node("n1", "n3 n2 n4", messages_in=messages_in, restarts=2),
        node("n2", "n4 n10", messages_in=messages_in),
        node("n3", state=NodeState.DOWN, error="killed"),
        node("n4", "n1 n2", state=NodeState.PAUSED),
        at=at,
        repair=0.61,
    )


def show(renderable: RenderableType, *, color: bool = False) -> str:
    console = Console(
        file=io.StringIO(),
        width=160,
        color_system="standard" if color else None,
        force_terminal=color,
    )
    console.print(renderable)
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def rows(text: str) -> dict[str, list[str]]:
    """Table rows keyed by node name (first cell), split on runs of spaces."""
    out = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0].startswith("n") and cells[0][1:].isdigit():
            out.setdefault(cells[0], cells)
    return out


# ---------------------------------------------------------------- health line


def test_health_line_words() -> None:
    healthy = ClusterSnapshot(
        "hyparview",
        tuple(node(f"n{i}") for i in range(1, 9)),
        converged=True,
        health=Health(alive=8, components=1, last_repair_s=0.6),
    )
    assert health_line(healthy).plain == (
        "8/8 up · 1 component · 0 asymmetric · 0 stale · last repair 0.6 s · converged"
    )
    assert health_line(cluster()).plain == (
        "3/5 up · 1 component · 1 asymmetric · 3 stale · last repair 0.6 s · not converged"
    )
    empty = ClusterSnapshot("static", ())
    assert health_line(empty).plain.startswith("0/0 up · 0 components")
    assert "last repair - ·" in health_line(empty).plain


# ---------------------------------------------------------------- node table


def test_table_rows_in_display_order_with_glyphs() -> None:
    text = show(node_table(cluster()))
    names = [line.split()[0] for line in text.splitlines()[1:] if line.strip()]
    assert names == ["n1", "n2", "n3", "n4", "n10"]
    table = rows(text)
    assert table["n1"][:9] == ["n1", "127.0.0.1:40001", "1001", "123456", "2", "●", "up", "-", "A3"]
    assert table["n3"][5:7] == ["✗", "down"]
    assert table["n4"][5:7] == ["‖", "paused"]
    assert table["n10"][:5] == ["n10", "127.0.0.1:40010", "1010", "234560", "0"]


def test_table_in_degree_connections_and_resources() -> None:
    table = rows(show(node_table(cluster())))
    # in°: live nodes listing it (n4 is paused, so its view does not count)
    assert table["n1"][10] == "0"  # only the paused n4 lists n1
    assert table["n2"][10] == "2"  # n1 and n10
    assert table["n3"][9:] == ["1", "-", "-", "-", "3", "3", "31.5", "1.2"]  # views "-", conn "-"
    assert table["n1"][-4:] == ["3", "1", "31.5", "1.2"]


def test_rates_from_previous_snapshot() -> None:
    before, now = cluster(at=T0, messages_in=100), cluster(at=T0 + 2, messages_in=400)
    assert rows(show(node_table(now)))["n1"][12:14] == ["-", "-"]
    table = rows(show(node_table(now, before)))
    assert table["n1"][12:14] == ["150", "0.0"]  # (400 - 100) / 2 s in, nothing new out
    assert table["n3"][11:13] == ["-", "-"]  # dead: no rate
    restarted = replace(now, nodes=(replace(now.nodes[0], incarnation=1), *now.nodes[1:]))
    assert rows(show(node_table(restarted, before)))["n10"][12:14] == ["-", "-"]


def test_selected_row_is_reversed() -> None:
    text = show(node_table(cluster(), selected="n2"), color=True)
    selected = [line for line in text.splitlines() if "127.0.0.1:40002" in line]
    other = [line for line in text.splitlines() if "127.0.0.1:40001" in line]
    assert "\x1b[7m" in selected[0]
    assert "\x1b[7m" not in other[0]
    assert "\x1b[32m●" in other[0] or "\x1b[32m● up" in other[0]  # green, and the glyph too


# ---------------------------------------------------------------- topology


def test_topology_lists_mark_one_way_and_dead() -> None:
    lines = show(topology_lists(cluster())).splitlines()
    assert lines == [
        "n1    → ⇢n2 ✗n3 ✗n4",
        "n2    → n10 ✗n4",
        "n3  ✗ →",
        "n4  ✗ → n1 n2",  # paused: its last views, the node itself marked ✗
        "n10   → n2",
    ]


def test_topology_matrix_cells() -> None:
    lines = show(topology_matrix(cluster())).splitlines()
    assert lines[:3] == ["    nnnnn", "    12341", "        0"]  # names top to bottom
    assert lines[3:8] == [
        " n1 ╲→✗✗·",  # one-way to n2, to the dead n3 and the paused n4
        " n2 ·╲·✗█",
        " n3 ··╲··",  # a dead node reports no views
        " n4 ██·╲·",  # the paused n4's last views: n1 and n2 still list it
        "n10 ·█··╲",
    ]


def test_64_node_matrix_fits_and_65_is_a_note() -> None:
    names = [f"n{i}" for i in range(1, 65)]
    ring = [node(name, f"{names[i - 1]} {names[(i + 1) % 64]}") for i, name in enumerate(names)]
    lines = show(topology_matrix(snapshot(*ring))).splitlines()
    assert len(lines) == 3 + 64 + 1
    assert lines[3] == " n1 ╲█" + "·" * 61 + "█"
    assert lines[3 + 63] == "n64 █" + "·" * 61 + "█╲"
    assert all(len(line) == 4 + 64 for line in lines[3:67])
    big = snapshot(*ring, node("n65"))
    assert "65 nodes, too many" in show(topology_matrix(big))
    assert len(show(topology_lists(big)).splitlines()) == 1


# ---------------------------------------------------------------- whole view


def test_render_panes() -> None:
    lists = show(render(cluster()))
    assert lists.splitlines()[0] == "partisan cluster · hyparview · 5 nodes"
    assert "not converged" in lists and "n1    → ⇢n2" in lists
    matrix = show(render(cluster(), pane="matrix"))
    assert " n1 ╲→✗✗·" in matrix and "⇢n2" not in matrix
    bare = show(render(cluster(), pane=None))
    assert "⇢n2" not in bare and "╲" not in bare and "n10" in bare
    with pytest.raises(ValueError, match="unknown pane"):
        render(cluster(), pane="graph")


def test_render_plain_is_aligned_words() -> None:
    text = render_plain(cluster(at=T0 + 1, messages_in=150), cluster())
    lines = text.splitlines()
    assert (
        lines[0]
        == "hyparview: 3/5 up · 1 component · 1 asymmetric · 3 stale · last repair 0.6 s · not converged"
    )
    assert lines[1].split()[:6] == ["node", "address", "pid", "inc", "rst", "state"]
    assert lines[2].split()[:7] == ["n1", "127.0.0.1:40001", "1001", "123456", "2", "up", "-"]
    assert lines[4].split()[5] == "down"
    assert lines[2].split()[11] == "50"
    assert "\x1b" not in text and "●" not in text and "│" not in text
    starts = {line.index("up") for line in lines[2:] if " up " in line}
    assert len(starts) == 1  # the state column is aligned

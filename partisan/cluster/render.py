"""The live view's pictures as rich renderables, and a plain-text table for pipes.

``partisan cluster top`` shows `render` in a Textual app, ``cluster status``
prints it once (or `render_plain` when stdout is not a terminal). Every
function here is pure: the same snapshots give the same renderable, so the
tests print them to a string console instead of driving a terminal.

State is shown by a glyph *and* a colour (● up, ◐ starting, ‖ paused, ✗
down) so the table reads the same without colour. Message rates need two
snapshots: the counters are cumulative, the rate is the difference over the
time between the polls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group, RenderableType
from rich.text import Text

from partisan.cluster.graph import neighbour_marks
from partisan.cluster.snapshot import ClusterSnapshot, NodeState, NodeStatus, name_order

__all__ = [
    "COLUMNS",
    "MAX_TOPOLOGY_NODES",
    "STATE_GLYPHS",
    "display_nodes",
    "health_line",
    "node_rows",
    "node_table",
    "render",
    "render_plain",
    "topology_lists",
    "topology_matrix",
]

#: Beyond this many nodes the topology panes are a one-line note (they would not fit).
MAX_TOPOLOGY_NODES = 64

#: Glyph and colour of each state; the glyph alone must tell the states apart.
STATE_GLYPHS: dict[NodeState, tuple[str, str]] = {
    NodeState.UP: ("●", "green"),
    NodeState.STARTING: ("◐", "yellow"),
    NodeState.PAUSED: ("‖", "yellow"),
    NodeState.DOWN: ("✗", "red"),
}

#: Column headers of the node table (and of `render_plain`), in order.
COLUMNS = (
    "node",
    "address",
    "pid",
    "inc",
    "rst",
    "state",
    "role",
    "views",
    "in°",
    "conn",
    "msg in/s",
    "msg out/s",
    "actors",
    "mbox",
    "RSS MB",
    "CPU %",
)
_RIGHT = frozenset(COLUMNS[COLUMNS.index("in°") :]) | {"pid", "inc", "rst"}
_NONE = "-"


def display_nodes(snapshot: ClusterSnapshot) -> tuple[NodeStatus, ...]:
    """The nodes in display order (``n2`` before ``n10``): every view lists them so."""
    return tuple(sorted(snapshot.nodes, key=lambda n: name_order(n.name)))


# ---------------------------------------------------------------- header


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def health_line(snapshot: ClusterSnapshot) -> Text:
    """``8/8 up · 1 component · 0 asymmetric · 0 stale · last repair 0.6 s · converged``.

    Reads `snapshot.health` as `health.assess` filled it in; anything that
    needs attention is coloured (and worded, so it also reads without colour).
    """
    h = snapshot.health
    total = len(snapshot.nodes)
    repair = _NONE if h.last_repair_s is None else f"{h.last_repair_s:.1f} s"
    parts: list[tuple[str, str]] = [
        (f"{h.alive}/{total} up", "green" if h.alive == total and total else "yellow"),
        (_plural(h.components, "component"), "" if h.components == 1 else "yellow"),
        (f"{h.asymmetric_edges} asymmetric", "" if h.asymmetric_edges == 0 else "yellow"),
        (f"{h.stale_references} stale", "" if h.stale_references == 0 else "yellow"),
        (f"last repair {repair}", ""),
        ("converged", "bold green") if snapshot.converged else ("not converged", "bold red"),
    ]
    line = Text()
    for i, (words, style) in enumerate(parts):
        if i:
            line.append(" · ", style="dim")
        line.append(words, style=style)
    return line


# ---------------------------------------------------------------- node table


def _num(value: float | None, fmt: str = "{}") -> str:
    return _NONE if value is None else fmt.format(value)


def _rate(now: int | None, before: int | None, seconds: float) -> str:
    if now is None or before is None or seconds <= 0 or now < before:
        return _NONE
    rate = (now - before) / seconds
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _rates(node: NodeStatus, previous: ClusterSnapshot | None, now: float) -> tuple[str, str]:
    """Messages per second since `previous`; ``-`` without one, across a restart, or when dead."""
    before = previous.node(node.name) if previous is not None else None
    if (
        previous is None
        or before is None
        or before.incarnation != node.incarnation
        or not node.live
    ):
        return _NONE, _NONE
    seconds = now - previous.taken_at
    return (
        _rate(node.messages_in, before.messages_in, seconds),
        _rate(node.messages_out, before.messages_out, seconds),
    )


def _views(node: NodeStatus, manager: str) -> str:
    if not node.live:
        return _NONE
    if manager == "hyparview":
        return f"A{len(node.active)} P{len(node.passive)}"
    return f"M{len(node.members)}"


def _in_degrees(snapshot: ClusterSnapshot) -> dict[str, int]:
    counts = {n.name: 0 for n in snapshot.nodes}
    for node in snapshot.nodes:
        if node.live:
            for peer in node.neighbours(snapshot.manager):
                if peer in counts and peer != node.name:
                    counts[peer] += 1
    return counts


def node_rows(
    snapshot: ClusterSnapshot, previous: ClusterSnapshot | None = None
) -> list[tuple[str, ...]]:
    """The node table as strings, one tuple per node in display order (columns: `COLUMNS`).

    The state cell is the glyph and the word (``● up``); `render_plain` and
    `node_table` share these rows so the two cannot disagree.
    """
    degrees = _in_degrees(snapshot)
    rows: list[tuple[str, ...]] = []
    for n in display_nodes(snapshot):
        rate_in, rate_out = _rates(n, previous, snapshot.taken_at)
        glyph = STATE_GLYPHS[n.state][0]
        rows.append(
            (
                n.name,
                n.address or _NONE,
                _num(n.os_pid),
                _NONE if n.incarnation is None else str(n.incarnation)[-6:],
                str(n.restarts),
                f"{glyph} {n.state.value}",
                n.role or _NONE,
                _views(n, snapshot.manager),
                str(degrees[n.name]),
                str(len(n.connections)) if n.live else _NONE,
                rate_in,
                rate_out,
                _num(n.actors),
                _num(n.max_mailbox),
                _NONE if n.rss is None else f"{n.rss / 1e6:.1f}",
                _num(n.cpu, "{:.1f}"),
            )
        )
    return rows


def node_table(
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None = None,
    *,
    selected: str | None = None,
) -> Text:
    """One row per node; the `selected` node's row is reversed (the live view's cursor).

    Built as one aligned `Text` rather than a rich `Table`: a Table measures
    and wraps every cell on every frame, which cost ~70 ms of CPU for 64
    nodes against the live view's 50 ms budget; this costs a few ms.
    """
    nodes = display_nodes(snapshot)
    rows = node_rows(snapshot, previous)
    lines = _align([COLUMNS, *rows])
    state = COLUMNS.index("state")
    text = Text(no_wrap=True, overflow="crop")
    text.append(lines[0], style="bold")
    for node, row, line in zip(nodes, rows, lines[1:], strict=True):
        text.append("\n")
        start = len(text)
        text.append(line, style="reverse" if node.name == selected else "")
        if node.error and not node.live:
            text.stylize("dim", start, start + len(node.name))
        at = line.find(row[state], _column_start(lines[0], state))
        if at >= 0:
            text.stylize(STATE_GLYPHS[node.state][1], start + at, start + at + len(row[state]))
    return text


def _column_start(header: str, index: int) -> int:
    """Where column `index` starts in the aligned header line (columns are 2 spaces apart)."""
    return header.find(COLUMNS[index])


# ---------------------------------------------------------------- topology panes


def _too_many(snapshot: ClusterSnapshot) -> Text | None:
    count = len(snapshot.nodes)
    if count <= MAX_TOPOLOGY_NODES:
        return None
    return Text(
        f"topology: {count} nodes, too many to draw here (at most {MAX_TOPOLOGY_NODES});"
        " use `partisan cluster graph`",
        style="dim",
    )


def topology_lists(snapshot: ClusterSnapshot) -> RenderableType:
    """Each node's overlay neighbours: ``n1 → n2 n3 ⇢n5 ✗n4`` (⇢ one-way, ✗ dead)."""
    note = _too_many(snapshot)
    if note is not None:
        return note
    width = max((len(n.name) for n in snapshot.nodes), default=0)
    lines = []
    for node in display_nodes(snapshot):
        line = Text(node.name.ljust(width), style="bold" if node.live else "dim")
        line.append(" ✗ →" if not node.live else "   →")
        for mark in neighbour_marks(snapshot, node):
            line.append(" ")
            if mark.dead:
                line.append("✗" + mark.name, style="red")
            elif mark.one_way:
                line.append("⇢" + mark.name, style="yellow")
            else:
                line.append(mark.name)
        lines.append(line)
    return Group(*lines)


_CELLS = {
    "both": ("█", "green"),
    "one": ("→", "yellow"),
    "dead": ("✗", "red"),
    "none": ("·", "dim"),
}


def _cell(
    row: str, col: str, neighbours: Mapping[str, set[str]], live: set[str]
) -> tuple[str, str]:
    if row == col:
        return "╲", "dim"
    if col not in neighbours[row]:
        return _CELLS["none"]
    if col not in live:
        return _CELLS["dead"]
    if row in neighbours[col]:
        return _CELLS["both"]
    return _CELLS["one"]


def topology_matrix(snapshot: ClusterSnapshot) -> RenderableType:
    """Adjacency matrix, row → column: █ both ways, → one-way, ✗ to a dead node, · none.

    One character per cell so 64 nodes fit in 80 columns; the column headers
    are the names written top to bottom. Cells of one style are appended as
    one run (4,096 single-character spans cost the live view ~20 ms a frame).
    """
    note = _too_many(snapshot)
    if note is not None:
        return note
    nodes = display_nodes(snapshot)
    neighbours = {n.name: set(n.neighbours(snapshot.manager)) for n in nodes}
    live = {n.name for n in nodes if n.live}
    width = max((len(n.name) for n in nodes), default=0)
    lines = [
        Text(" " * (width + 1) + "".join(n.name[i] if i < len(n.name) else " " for n in nodes))
        for i in range(width)
    ]
    for row in nodes:
        line = Text(row.name.rjust(width) + " ", style="bold" if row.live else "dim")
        run, run_style = "", None
        for col in nodes:
            glyph, style = _cell(row.name, col.name, neighbours, live)
            if style != run_style and run:
                line.append(run, style=run_style)
                run = ""
            run, run_style = run + glyph, style
        if run:
            line.append(run, style=run_style)
        lines.append(line)
    lines.append(Text("█ both ways  → one-way  ✗ to a dead node  · none", style="dim"))
    return Group(*lines)


# ---------------------------------------------------------------- whole view


def render(
    snapshot: ClusterSnapshot,
    previous: ClusterSnapshot | None = None,
    *,
    selected: str | None = None,
    pane: str | None = "lists",
) -> Group:
    """The live view: title and health line, the node table, then the topology `pane`.

    `pane` is ``"lists"``, ``"matrix"`` or None (no topology).
    """
    title = Text(f"partisan cluster · {snapshot.manager} · {len(snapshot.nodes)} nodes", "bold")
    parts: list[RenderableType] = [
        title,
        health_line(snapshot),
        Text(""),
        node_table(snapshot, previous, selected=selected),
    ]
    if pane == "lists":
        parts += [Text(""), topology_lists(snapshot)]
    elif pane == "matrix":
        parts += [Text(""), topology_matrix(snapshot)]
    elif pane is not None:
        raise ValueError(f"unknown pane {pane!r}: expected 'lists', 'matrix' or None")
    return Group(*parts)


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return [
        "  ".join(
            cell.rjust(w) if COLUMNS[i] in _RIGHT else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def render_plain(snapshot: ClusterSnapshot, previous: ClusterSnapshot | None = None) -> str:
    """For a pipe: the health line, then the table as aligned columns (no boxes, no colour).

    The state column is the bare word (``up``, ``down``) so ``awk`` and
    ``grep`` see one token per cell.
    """
    state = COLUMNS.index("state")
    rows = [
        tuple(cell.split(" ", 1)[1] if i == state else cell for i, cell in enumerate(row))
        for row in node_rows(snapshot, previous)
    ]
    header = f"{snapshot.manager}: {health_line(snapshot).plain}"
    return "\n".join([header, *_align([COLUMNS, *rows])]) + "\n"

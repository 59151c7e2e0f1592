"""``partisan cluster top``: the live view, a Textual app over a snapshot source.

The app only polls and dispatches keys; what it shows is `render.render` of
the latest snapshot (pure), and what the keys do to nodes is the `source`'s
business (the cluster supervisor behind a control socket in the CLI, a fake
in the tests). A failing source never takes the view down: the error goes to
the status line and the last good snapshot stays on screen, because the
moment the supervisor hiccups is when the user most needs to see the cluster.

Keys: ↑/↓ or k/j select a node, ``x`` kill it (SIGKILL), ``p`` pause or
resume it (SIGSTOP / SIGCONT), ``r`` restart it, ``t`` cycle the topology
pane (lists → matrix → off), ``q`` or ctrl+c quit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from partisan.cluster.render import display_nodes, render
from partisan.cluster.snapshot import ClusterSnapshot, NodeState

__all__ = ["PANES", "ClusterSource", "TopApp", "move_selection", "next_pane", "pause_signal"]

#: The topology panes `t` cycles through (None: no pane).
PANES: tuple[str | None, ...] = ("lists", "matrix", None)


class ClusterSource(Protocol):
    """Where the live view gets snapshots and sends its actions."""

    async def snapshot(self) -> ClusterSnapshot:
        """The cluster now, assessed (`health.assess`)."""
        ...

    async def signal(self, node: str, sig: str) -> None:
        """Send ``"KILL"``, ``"STOP"`` or ``"CONT"`` to the process of `node`."""
        ...

    async def restart(self, node: str) -> None:
        """Stop `node` (if running) and start a new incarnation of it."""
        ...


# ---------------------------------------------------------------- pure helpers


def move_selection(names: Sequence[str], current: str | None, step: int) -> str | None:
    """The name `step` rows from `current`, clamped to the list; the first when `current` is gone."""
    if not names:
        return None
    if current not in names:
        return names[0]
    index = min(max(names.index(current) + step, 0), len(names) - 1)
    return names[index]


def next_pane(pane: str | None) -> str | None:
    """The pane after `pane` in `PANES` (wrapping)."""
    index = PANES.index(pane) if pane in PANES else -1
    return PANES[(index + 1) % len(PANES)]


def pause_signal(state: NodeState) -> str | None:
    """``CONT`` for a paused node, ``STOP`` for a running one, None for one with no process."""
    if state is NodeState.PAUSED:
        return "CONT"
    if state is NodeState.DOWN:
        return None
    return "STOP"


# ---------------------------------------------------------------- the app


class TopApp(App[None]):
    """Polls `source` every `interval` seconds and shows the cluster; keys act on the selected node."""

    TITLE = "partisan cluster top"
    CSS = """
    #view { height: 1fr; }
    #status { height: 1; padding: 0 1; background: $boost; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("x", "kill", "kill"),
        Binding("p", "pause", "pause/resume"),
        Binding("r", "restart", "restart"),
        Binding("t", "pane", "topology"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(self, source: ClusterSource, *, interval: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        #: The latest snapshot and the one before it (for message rates).
        self.snapshot: ClusterSnapshot | None = None
        self.previous: ClusterSnapshot | None = None
        self.selected: str | None = None
        self.pane: str | None = PANES[0]
        self.status = "starting…"
        self._polling = False

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("waiting for the first snapshot…", id="view")
        yield Static(self.status, id="status", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        await self.poll()
        self.set_interval(self.interval, self.poll)

    # ------------------------------------------------------------ polling and drawing

    async def poll(self) -> None:
        """Fetch one snapshot and redraw; an error is shown, the last snapshot kept."""
        if self._polling:  # a slow source: skip this tick rather than pile up requests
            return
        self._polling = True
        try:
            snapshot = await self.source.snapshot()
        except Exception as exc:
            self._set_status(f"error: snapshot failed: {exc}")
        else:
            self.previous, self.snapshot = self.snapshot, snapshot
            names = self._names()
            if self.selected not in names:
                self.selected = move_selection(names, None, 0)
            if self.status == "starting…":
                self._set_status("")
            self._redraw()
        finally:
            self._polling = False

    def _names(self) -> list[str]:
        return [] if self.snapshot is None else [n.name for n in display_nodes(self.snapshot)]

    def _redraw(self) -> None:
        if self.snapshot is not None:
            view = render(self.snapshot, self.previous, selected=self.selected, pane=self.pane)
            self.query_one("#view", Static).update(view)

    def _set_status(self, text: str) -> None:
        self.status = text
        self.query_one("#status", Static).update(text)

    async def _act(self, what: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run one action on the source, report it, then poll so its effect shows at once."""
        try:
            await action()
        except Exception as exc:
            self._set_status(f"error: {what}: {exc}")
            return
        self._set_status(what)
        await self.poll()

    # ------------------------------------------------------------ key actions

    def action_move(self, step: int) -> None:
        self.selected = move_selection(self._names(), self.selected, step)
        self._redraw()

    def action_pane(self) -> None:
        self.pane = next_pane(self.pane)
        self._redraw()
        self._set_status(f"topology: {self.pane or 'off'}")

    async def action_kill(self) -> None:
        node = self.selected
        if node is not None:
            await self._act(f"kill {node}", lambda: self.source.signal(node, "KILL"))

    async def action_pause(self) -> None:
        node = self.selected
        status = None if node is None or self.snapshot is None else self.snapshot.node(node)
        if node is None or status is None:
            return
        sig = pause_signal(status.state)
        if sig is None:
            self._set_status(f"{node} is down: nothing to pause (r restarts it)")
            return
        verb = "resume" if sig == "CONT" else "pause"
        await self._act(f"{verb} {node}", lambda: self.source.signal(node, sig))

    async def action_restart(self) -> None:
        node = self.selected
        if node is not None:
            await self._act(f"restart {node}", lambda: self.source.restart(node))

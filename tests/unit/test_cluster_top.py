"""`top.TopApp`: the live view driven by Textual's pilot against a fake cluster source."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from partisan.cluster.health import assess
from partisan.cluster.snapshot import ClusterSnapshot, NodeState, NodeStatus
from partisan.cluster.top import (
    TopApp,
    move_selection,
    next_pane,
    pause_signal,
)

NAMES = ("n1", "n2", "n3")


class FakeCluster:
    """Three full-mesh nodes; a killed node reads as down once, then as restarted (repaired)."""

    def __init__(self) -> None:
        self.states = dict.fromkeys(NAMES, NodeState.UP)
        self.restarts = dict.fromkeys(NAMES, 0)
        self.calls: list[tuple[str, ...]] = []
        self.killed: set[str] = set()  # shown down in the next snapshot, repaired after
        self.fail: str | None = None
        self.now = 1764700000.0

    async def snapshot(self) -> ClusterSnapshot:
        if self.fail:
            raise RuntimeError(self.fail)
        self.now += 1
        for name in NAMES:
            if self.states[name] is NodeState.DOWN and name not in self.killed:
                self.states[name], self.restarts[name] = NodeState.UP, self.restarts[name] + 1
        self.killed.clear()
        live = [n for n in NAMES if self.states[n] is NodeState.UP]
        nodes = tuple(
            NodeStatus(
                name=n,
                alive=self.states[n] is not NodeState.DOWN,
                state=self.states[n],
                restarts=self.restarts[n],
                members=tuple(live),
                connections={p: {"default": 1} for p in live if p != n and n in live},
            )
            for n in NAMES
        )
        return assess(ClusterSnapshot("full-mesh", nodes, taken_at=self.now))

    async def signal(self, node: str, sig: str) -> None:
        self.calls.append(("signal", node, sig))
        if sig == "KILL":
            self.states[node] = NodeState.DOWN
            self.killed.add(node)
        elif sig == "STOP":
            self.states[node] = NodeState.PAUSED
        elif sig == "CONT":
            self.states[node] = NodeState.UP

    async def restart(self, node: str) -> None:
        self.calls.append(("restart", node))
        if node == "n3":
            raise RuntimeError("control socket closed")


def screen_text(app: TopApp) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(app.query_one("#view", Static).content)
    console.print(app.query_one("#status", Static).content)
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def row(app: TopApp, name: str) -> str:
    return next(line for line in screen_text(app).splitlines() if line.startswith(name + " "))


Scenario = Callable[[TopApp, Pilot[None], FakeCluster], Awaitable[None]]


def run(scenario: Scenario) -> TopApp:
    """Run `scenario` against a live app on a fake cluster, inside a sync test."""
    source = FakeCluster()
    app = TopApp(source, interval=3600)  # the test polls by hand: no timer tick mid-test

    async def main() -> None:
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            await scenario(app, pilot, source)

    asyncio.run(main())
    return app


def test_pure_helpers() -> None:
    assert move_selection(["a", "b", "c"], "b", 1) == "c"
    assert move_selection(["a", "b", "c"], "c", 1) == "c"
    assert move_selection(["a", "b", "c"], "a", -1) == "a"
    assert move_selection(["a", "b"], "gone", 1) == "a"
    assert move_selection([], "a", 1) is None
    assert [next_pane(p) for p in ("lists", "matrix", None)] == ["matrix", None, "lists"]
    assert pause_signal(NodeState.UP) == "STOP"
    assert pause_signal(NodeState.PAUSED) == "CONT"
    assert pause_signal(NodeState.DOWN) is None


def test_select_kill_shows_down_then_repaired() -> None:
    async def scenario(app: TopApp, pilot: Pilot[None], source: FakeCluster) -> None:
        assert app.selected == "n1"
        assert "3/3 up" in screen_text(app) and "· converged" in screen_text(app)
        await pilot.press("down", "j", "k")
        await pilot.pause()
        assert app.selected == "n2"
        await pilot.press("x")
        await pilot.pause()
        assert source.calls == [("signal", "n2", "KILL")]
        assert "✗ down" in row(app, "n2")
        assert "2/3 up" in screen_text(app)
        assert screen_text(app).rstrip().endswith("kill n2")  # the status line
        await app.poll()  # the next snapshot: the supervisor restarted it
        assert "● up" in row(app, "n2")
        assert row(app, "n2").split()[4] == "1"  # restarts column

    run(scenario)


def test_selected_row_is_highlighted_in_the_view() -> None:
    async def scenario(app: TopApp, pilot: Pilot[None], source: FakeCluster) -> None:
        await pilot.press("down", "down", "down")  # clamps at the last node
        await pilot.pause()
        assert app.selected == "n3"
        console = Console(
            file=io.StringIO(), width=160, color_system="standard", force_terminal=True
        )
        console.print(app.query_one("#view", Static).content)
        text = console.file.getvalue()
        assert isinstance(text, str)
        n3 = next(line for line in text.splitlines() if "n3" in line and "up" in line)
        assert "\x1b[7m" in n3

    run(scenario)


def test_pause_resume_and_down_node() -> None:
    async def scenario(app: TopApp, pilot: Pilot[None], source: FakeCluster) -> None:
        await pilot.press("p")
        await pilot.pause()
        assert "‖ paused" in row(app, "n1")
        await pilot.press("p")
        await pilot.pause()
        assert "● up" in row(app, "n1")
        assert source.calls == [("signal", "n1", "STOP"), ("signal", "n1", "CONT")]
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("p")  # n1 is down in this snapshot: nothing to pause
        await pilot.pause()
        assert len(source.calls) == 3
        assert "n1 is down" in app.status

    run(scenario)


def test_topology_pane_cycles() -> None:
    async def scenario(app: TopApp, pilot: Pilot[None], source: FakeCluster) -> None:
        assert "n1   → n2 n3" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert app.pane == "matrix"
        assert "\nn1 ╲██\n" in screen_text(app) and "n1   → n2" not in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert app.pane is None
        assert "╲" not in screen_text(app) and "→ n2" not in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert app.pane == "lists"

    run(scenario)


def test_source_errors_are_shown_not_raised() -> None:
    async def scenario(app: TopApp, pilot: Pilot[None], source: FakeCluster) -> None:
        await pilot.press("down", "down", "r")  # restarting n3 fails in the fake
        await pilot.pause()
        assert source.calls == [("restart", "n3")]
        assert app.status == "error: restart n3: control socket closed"
        source.fail = "supervisor gone"
        await app.poll()
        assert app.status == "error: snapshot failed: supervisor gone"
        assert "3/3 up" in screen_text(app)  # the last good snapshot stays on screen
        assert app.is_running

    run(scenario)


def test_q_and_ctrl_c_quit() -> None:
    for key in ("q", "ctrl+c"):

        async def scenario(
            app: TopApp, pilot: Pilot[None], source: FakeCluster, key: str = key
        ) -> None:
            await pilot.press(key)
            await pilot.pause()
            assert not app.is_running

        run(scenario)

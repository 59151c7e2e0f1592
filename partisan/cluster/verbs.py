"""The ``partisan cluster`` verbs other than ``up`` (`partisan.commands.cluster` declares their flags).

Each verb reads DIR/cluster.json; verbs that look at nodes join them as a
hidden node under this command's own key (`layout.CliIdentity`), and verbs
that change the cluster ask the daemon over its control socket. Data goes to
stdout, diagnostics to stderr; an operational failure raises `ClusterError`
(one line, exit 1).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: each verb loads only what it runs (the
# observer node, zmq) when it runs. None closes an import cycle (tests/unit/test_imports.py).
import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from partisan.cluster import control, lifecycle
from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.progress import fancy
from partisan.cluster.snapshot import ClusterSnapshot
from partisan.errors import ClusterError

__all__ = ["follow_events_plain", "run_top"]


@asynccontextmanager
async def _observing(cluster: ClusterDir) -> AsyncIterator[Any]:
    from partisan.cluster.observer import Observer

    with CliIdentity(cluster) as identity:
        async with Observer(cluster, identity.name) as observer:
            yield observer


def _snapshot_once(cluster: ClusterDir) -> ClusterSnapshot:
    async def once() -> ClusterSnapshot:
        async with _observing(cluster) as observer:
            snapshot: ClusterSnapshot = await observer.snapshot()
            return snapshot

    return asyncio.run(once())


# ----------------------------------------------------------------- status


def status(args: argparse.Namespace) -> int:
    from partisan.cluster import render
    from partisan.cluster.snapshot import snapshot_to_json

    cluster = ClusterDir(args.dir)
    cluster.require_running()
    if not args.watch:
        snapshot = _snapshot_once(cluster)
        if args.json:
            print(json.dumps(snapshot_to_json(snapshot), indent=2))
        elif fancy(sys.stdout):
            _console().print(render.render(snapshot))
        else:
            print(render.render_plain(snapshot))
        return 0

    async def watch() -> None:
        previous: ClusterSnapshot | None = None
        live = None
        if fancy(sys.stdout) and not args.json:
            from rich.live import Live

            live = Live(console=_console(), auto_refresh=False)
            live.start()
        try:
            async with _observing(cluster) as observer:
                while True:
                    snapshot = await observer.snapshot()
                    if args.json:
                        print(json.dumps(snapshot_to_json(snapshot)), flush=True)
                    elif live is not None:
                        live.update(render.render(snapshot, previous), refresh=True)
                    else:
                        print(render.render_plain(snapshot, previous) + "\n", flush=True)
                    previous = snapshot
                    await asyncio.sleep(args.interval)
        finally:
            if live is not None:
                live.stop()

    with suppress(KeyboardInterrupt):
        asyncio.run(watch())
    return 0


def _console() -> Any:
    import os

    from rich.console import Console

    return Console(no_color="NO_COLOR" in os.environ)


# -------------------------------------------------------------------- top


class _CliSource:
    """`top.ClusterSource` for the CLI: snapshots from the observer, actions via the daemon."""

    def __init__(self, cluster: ClusterDir, observer: Any) -> None:
        self.cluster = cluster
        self.observer = observer

    async def snapshot(self) -> ClusterSnapshot:
        snapshot: ClusterSnapshot = await self.observer.snapshot()
        return snapshot

    async def signal(self, node: str, sig: str) -> None:
        await self._ask("kill", node=node, signal=sig)

    async def restart(self, node: str) -> None:
        await self._ask("restart", node=node)

    async def _ask(self, op: str, **args: Any) -> None:
        await asyncio.to_thread(control.request, self.cluster.socket, op, **args)


async def run_top(cluster: ClusterDir, observer: Any, *, interval: float) -> None:
    """Run the Textual live view until the user quits."""
    from partisan.cluster.top import TopApp

    await TopApp(_CliSource(cluster, observer), interval=interval).run_async()


def top(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    cluster.require_running()
    if not fancy(sys.stdout):
        print("partisan: not a terminal: printing status every second", file=sys.stderr)
        args.watch, args.json = True, False
        return status(args)

    async def view() -> None:
        async with _observing(cluster) as observer:
            await run_top(cluster, observer, interval=args.interval)

    asyncio.run(view())
    return 0


# ------------------------------------------------------------------- wait


def wait(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    cluster.require_running()

    async def until_converged() -> ClusterSnapshot | None:
        deadline = time.monotonic() + args.timeout
        async with _observing(cluster) as observer:
            while True:
                snapshot: ClusterSnapshot = await observer.snapshot()
                if snapshot.converged:
                    return None
                if time.monotonic() > deadline:
                    return snapshot
                await asyncio.sleep(0.2)

    last = asyncio.run(until_converged())
    if last is None:
        return 0
    health = last.health
    why = (
        f"{health.alive} alive, {health.dead} dead, {health.components} component(s), "
        f"{health.asymmetric_edges} one-way link(s), {health.stale_references} stale reference(s)"
        if health
        else "no health figures"
    )
    print(f"partisan: error: not converged within {args.timeout:g} s ({why})", file=sys.stderr)
    return 1


# ---------------------------------------------------- kill/stop/start/restart


def _ask_daemon(args: argparse.Namespace, op: str, **extra: Any) -> dict[str, Any]:
    cluster = ClusterDir(args.dir)
    cluster.require_running()
    return control.request(cluster.socket, op, node=args.node, timeout=60.0, **extra)


def kill(args: argparse.Namespace) -> int:
    answer = _ask_daemon(args, "kill", signal=args.signal)
    print(
        f"partisan: sent SIG{args.signal} to {args.node} (os pid {answer.get('os_pid')})",
        file=sys.stderr,
    )
    return 0


def _lifecycle_verb(op: str, done: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        _ask_daemon(args, op)
        print(f"partisan: {args.node} {done}", file=sys.stderr)
        return 0

    return run


restart = _lifecycle_verb("restart", "restarted")
stop = _lifecycle_verb("stop", "stopped (it stays down until: partisan cluster start)")
start = _lifecycle_verb("start", "started")


# ------------------------------------------------------------------- down


def down(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    doc = cluster.require_state()
    if not cluster.daemon_alive(doc) and doc.get("state") == "stopped":
        print(f"partisan: the cluster in {cluster.root} is already stopped", file=sys.stderr)
        return 0
    lifecycle.stop_cluster(cluster, doc, timeout=args.timeout)
    print(f"partisan: stopped the cluster in {cluster.root}", file=sys.stderr)
    return 0


# ------------------------------------------------------------ logs, events


def logs(args: argparse.Namespace) -> int:
    from partisan.cluster import logs as node_logs

    cluster = ClusterDir(args.dir)
    doc = cluster.require_state()
    known = [n["name"] for n in doc["nodes"]] or [
        f"n{i}" for i in range(1, int(doc.get("plan", {}).get("n", 0)) + 1)
    ]
    names = args.nodes or known
    unknown = [n for n in names if n not in known and n != "supervisor"]
    if unknown:
        raise ClusterError(f"no node {unknown[0]!r} in this cluster (nodes: {', '.join(known)})")
    paths = {n: cluster.supervisor_log if n == "supervisor" else cluster.node_log(n) for n in names}
    with suppress(KeyboardInterrupt):
        node_logs.print_logs(paths, lines=args.lines, follow=args.follow)
    return 0


def events(args: argparse.Namespace) -> int:
    from partisan.cluster.events import format_event, read_events

    cluster = ClusterDir(args.dir)
    cluster.require_state()

    def show(record: dict[str, Any]) -> None:
        print(json.dumps(record) if args.json else format_event(record), flush=args.follow)

    if not args.follow:
        for record in read_events(sorted(cluster.events.glob("*.jsonl"))):
            show(record)
        return 0
    with suppress(KeyboardInterrupt):
        follow_events_plain(cluster, show)
    return 0


def follow_events_plain(
    cluster: ClusterDir, show: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Print every event (old ones first) as nodes write them, until interrupted."""
    from partisan.cluster.events import follow_events, format_event

    for record in follow_events([cluster.events]):
        if show is None:
            print(format_event(record), flush=True)
        else:
            show(record)


# ------------------------------------------------------------------ graph


def graph(args: argparse.Namespace) -> int:
    from partisan.cluster import graph as graphs

    cluster = ClusterDir(args.dir)
    cluster.require_running()
    if args.format == "svg" and shutil.which("dot") is None:
        raise ClusterError(
            "--format svg needs Graphviz's 'dot' (Debian: apt-get install graphviz); "
            "or use --format dot"
        )
    snapshot = _snapshot_once(cluster)
    if args.format == "json":
        print(json.dumps(graphs.graph_json(snapshot, passive=args.passive), indent=2))
    elif args.format == "text":
        print(graphs.graph_text(snapshot, passive=args.passive), end="")
    else:
        dot = graphs.graph_dot(snapshot, passive=args.passive)
        if args.format == "dot":
            print(dot, end="")
        else:
            svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
            if svg.returncode != 0:
                raise ClusterError(f"dot failed: {svg.stderr.strip().splitlines()[-1]}")
            print(svg.stdout, end="")
    return 0

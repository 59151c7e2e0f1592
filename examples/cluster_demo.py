"""``make demo``: a local 8-node HyParView cluster with traffic, a kill, the repair, a restart.

What it runs is what a user would type (each step is printed first)::

    partisan cluster up -n 8 --manager hyparview --restart never --detach \\
        --import examples.cluster_traffic --run examples.cluster_traffic:main
    partisan cluster kill n3          # a third of the way in
    partisan cluster start n3         # two thirds of the way in
    partisan cluster down

Between the steps it shows the cluster as ``partisan cluster status`` does:
live (refreshed every second) on a terminal, a health line every 2 s
otherwise. ``--restart never`` keeps the killed node down so the repair
without it is visible; the default, ``on-failure``, would restart it at once.
``DEMO_SECONDS`` (default 20) sets the length; the cluster lives in a
temporary directory removed at the end, and the demo checks that no node
process is left.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil

from partisan.cluster.events import format_event, read_events
from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.observer import Observer
from partisan.cluster.render import health_line, render, render_plain
from partisan.cluster.snapshot import ClusterSnapshot

REPO = Path(__file__).resolve().parent.parent
TTY = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def cli(directory: Path, *args: str) -> None:
    """Run one ``partisan cluster`` command as a user would; stop the demo if it fails."""
    shown = " ".join(["partisan", "cluster", *args])
    print(f"\n$ {shown}", flush=True)
    argv = [sys.executable, "-m", "partisan", "cluster", *args, "--dir", str(directory)]
    subprocess.run(argv, check=True, cwd=REPO)


async def watch(
    cluster: ClusterDir, observer: Observer, seconds: float, note: str
) -> ClusterSnapshot:
    """Show the cluster for `seconds`: live on a terminal, a health line every 2 s otherwise."""
    print(note, flush=True)
    deadline = time.monotonic() + seconds
    previous: ClusterSnapshot | None = None
    snapshot = await observer.snapshot()
    if TTY:
        from rich.live import Live

        with Live(render(snapshot), auto_refresh=False) as live:
            while time.monotonic() < deadline:
                snapshot = await observer.snapshot()
                live.update(render(snapshot, previous), refresh=True)
                previous = snapshot
                await asyncio.sleep(1.0)
        return snapshot
    last_print = 0.0
    while time.monotonic() < deadline:
        snapshot = await observer.snapshot()
        if time.monotonic() - last_print >= 2.0:
            print("  " + health_line(snapshot).plain, flush=True)
            last_print = time.monotonic()
        await asyncio.sleep(0.5)
    return snapshot


def print_repair(cluster: ClusterDir, since: float) -> None:
    """The event-log records of the repair: who saw n3 go, and how active views changed."""
    print("\n$ partisan cluster events   (since the kill: peer.down and view.active)")
    records = [
        r
        for r in read_events(sorted(cluster.events.glob("*.jsonl")))
        if r.get("event") in ("peer.down", "view.active")
        and datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")).timestamp() >= since
    ]
    for record in records[:20]:
        print("  " + format_event(record))
    if len(records) > 20:
        print(f"  ... and {len(records) - 20} more")


async def story(cluster: ClusterDir, seconds: float) -> None:
    step = seconds / 3
    with CliIdentity(cluster) as identity:
        async with Observer(cluster, identity.name) as observer:
            await watch(cluster, observer, step, "\nEvery node calls 'echo' on its peers:")
            killed_at = time.time()
            cli(cluster.root, "kill", "n3")
            await watch(cluster, observer, step, "n3 is gone; its neighbours repair the overlay:")
            print_repair(cluster, killed_at)
            cli(cluster.root, "start", "n3")
            snapshot = await watch(cluster, observer, step, "n3 is back as a new incarnation:")
            if not TTY:  # one more sample a second later, so the table shows message rates
                await asyncio.sleep(1.0)
                print("\n$ partisan cluster status --watch   (one frame)")
                print(render_plain(await observer.snapshot(), snapshot))


def main() -> int:
    seconds = float(os.environ.get("DEMO_SECONDS", "20"))
    with tempfile.TemporaryDirectory(prefix="partisan-demo-") as tmp:
        cluster = ClusterDir(Path(tmp) / "cluster")
        cli(
            cluster.root,
            "up",
            "-n",
            "8",
            "--manager",
            "hyparview",
            "--restart",
            "never",
            "--detach",
            "--import",
            "examples.cluster_traffic",
            "--run",
            "examples.cluster_traffic:main",
        )
        pids = [n["os_pid"] for n in cluster.require_state()["nodes"]]
        try:
            asyncio.run(story(cluster, seconds))
        finally:
            cli(cluster.root, "down")
        left = [pid for pid in pids if psutil.pid_exists(pid)]
        if left:
            print(f"demo: node processes left behind: {left}", file=sys.stderr)
            return 1
    print("\nDone: the cluster is down and no node process is left.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``partisan cluster up``: start a cluster, report progress, then show it live.

The steps: check the request (a bad value is a usage error, exit 2), prepare
DIR (`lifecycle.prepare`), start the daemon, then two progress phases on
stderr — nodes reporting ready (from cluster.json, which the daemon rewrites
on every start) and convergence (the observer's snapshots) — each a rich bar
on a terminal and a few plain lines otherwise.

Then, by flags: ``--no-wait`` returns once the daemon answers; ``--detach``
once converged; otherwise the live view runs (Textual on a terminal; a plain
status and the event stream on a pipe) until Ctrl-C, q or SIGTERM, and the
cluster is stopped. In the foreground the daemon is *attached*: if this
process dies, even by kill -9, the daemon sees its stdin close and stops the
cluster. Past ``--wait-timeout`` ``up`` exits 1 and, as the contract says,
leaves the cluster running (it detaches the daemon first).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: each verb loads only what it runs (the
# observer node, zmq) when it runs. None closes an import cycle (tests/unit/test_imports.py).
import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from partisan.cluster import control, lifecycle
from partisan.cluster import plan as plans
from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.progress import Progress
from partisan.errors import ClusterError

__all__ = ["up"]

#: Set by SIGTERM while the event loop runs (see `_converge_and_view`).
_sigterm_seen = threading.Event()
#: `_converge_and_view`'s answer for "not a terminal: print events until stopped".
FOLLOW = -1


def up(args: argparse.Namespace) -> int:
    try:
        plan = plans.ClusterPlan(
            n=args.n,
            manager=args.manager,
            servers=args.servers,
            topology=args.topology,
            channels=args.channels,
            parallelism=args.parallelism,
            restart=args.restart,
            max_restarts=args.max_restarts,
            imports=tuple(args.imports),
            run=args.run,
            settings=tuple(args.settings),
            join_timeout=args.join_timeout,
            cwd=os.getcwd(),
        )
    except ValueError as exc:
        print(f"partisan cluster up: error: {exc}", file=sys.stderr)
        return 2
    cluster = ClusterDir(args.dir)
    for warning in lifecycle.prepare(cluster, plan):
        print(f"partisan: warning: {warning}", file=sys.stderr)
    detach = args.detach or args.no_wait
    started = time.monotonic()
    daemon = lifecycle.launch_daemon(cluster, attached=not detach)
    try:
        with _stop_on_sigterm():
            return _bring_up(args, cluster, plan, daemon, started, detach)
    except KeyboardInterrupt:
        print("partisan: interrupted: stopping the cluster", file=sys.stderr)
        _down(cluster)
        return 130
    except ClusterError:
        _down(cluster)  # a node that did not start, a daemon that died: leave nothing running
        raise


def _bring_up(
    args: argparse.Namespace,
    cluster: ClusterDir,
    plan: plans.ClusterPlan,
    daemon: subprocess.Popen[bytes],
    started: float,
    detach: bool,
) -> int:
    lifecycle.wait_for_daemon(cluster, daemon, timeout=30.0)
    if args.no_wait:
        print(f"partisan: starting {plan.n} nodes in {cluster.root}", file=sys.stderr)
        return 0
    deadline = started + args.wait_timeout
    progress = Progress(sys.stderr)
    with progress:
        if not _wait_for_nodes(cluster, plan, daemon, progress, deadline):
            return _timed_out(cluster, args, started, "not every node started")
        with CliIdentity(cluster) as identity:
            try:
                code = asyncio.run(
                    _converge_and_view(
                        args, cluster, plan, identity.name, progress, started, detach
                    )
                )
            except asyncio.CancelledError:  # SIGTERM while converging or in the live view
                raise KeyboardInterrupt from None
            finally:
                signal.signal(signal.SIGTERM, _interrupt)  # the loop's exit reset it
            if _sigterm_seen.is_set():  # it came as the loop was finishing
                raise KeyboardInterrupt
    if code is not FOLLOW:
        return code
    from partisan.cluster import verbs

    with contextlib.suppress(KeyboardInterrupt):  # a pipe: the event stream until Ctrl-C/SIGTERM
        verbs.follow_events_plain(cluster)
    print("partisan: stopping the cluster", file=sys.stderr)
    _down(cluster)
    return 0


def _wait_for_nodes(
    cluster: ClusterDir,
    plan: plans.ClusterPlan,
    daemon: subprocess.Popen[bytes],
    progress: Progress,
    deadline: float,
) -> bool:
    """Phase 1: every node printed its ready line. False at the deadline."""
    progress.phase("starting nodes", plan.n)
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise ClusterError(f"the cluster supervisor exited: {lifecycle.last_line(cluster)}")
        doc = cluster.read_state() or {}
        nodes = doc.get("nodes", [])
        for node in nodes:
            error = node.get("error") or ""
            if error.startswith("did not start"):
                why = _last_log_line(node["log"]) or _one_line(error)
                raise ClusterError(f"{node['name']} did not start: {why} (log: {node['log']})")
        ready = sum(1 for node in nodes if node.get("state") == "up")
        progress.update(ready)
        if ready == plan.n:
            return True
        time.sleep(0.1)
    return False


async def _converge_and_view(
    args: argparse.Namespace,
    cluster: ClusterDir,
    plan: plans.ClusterPlan,
    name: str,
    progress: Progress,
    started: float,
    detach: bool,
) -> int:
    from partisan.cluster.observer import Observer

    # SIGTERM cancels this task, so the observer leaves its nodes cleanly (an
    # exception raised from a plain signal handler would abandon its links,
    # and each node would wait its shutdown timeout for a silent peer).
    main = asyncio.current_task()
    assert main is not None

    def on_sigterm() -> None:
        _sigterm_seen.set()  # also when it lands after this task finished
        main.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    async with Observer(cluster, name) as observer:
        progress.phase("converging", plan.n)
        deadline = started + args.wait_timeout
        while True:
            snapshot = await observer.snapshot()
            health = snapshot.health
            progress.update(
                health.alive if health else 0,
                detail=f"{health.components} component(s)" if health else "",
            )
            if snapshot.converged:
                break
            if time.monotonic() > deadline:
                progress.close()
                return _timed_out(cluster, args, started, "the cluster did not converge")
            await asyncio.sleep(0.2)
        progress.close()
        took = time.monotonic() - started
        print(
            f"partisan: {plan.n} {plan.manager} nodes up and converged in {took:.1f} s "
            f"({cluster.root})",
            file=sys.stderr,
        )
        if detach:
            return 0
        from partisan.cluster import render, verbs

        if not (sys.stdout.isatty() and os.environ.get("TERM") != "dumb"):
            print(render.render_plain(snapshot), flush=True)
            return FOLLOW
        try:
            await verbs.run_top(cluster, observer, interval=1.0)
        finally:
            print("partisan: stopping the cluster", file=sys.stderr)
            await asyncio.to_thread(_down, cluster)
        return 0


def _timed_out(cluster: ClusterDir, args: argparse.Namespace, started: float, what: str) -> int:
    with contextlib.suppress(ClusterError):
        control.request(cluster.socket, "detach", timeout=5.0)
    print(
        f"partisan: error: {what} within {args.wait_timeout:g} s; it is still running "
        f"(see: partisan cluster status --dir {cluster.root})",
        file=sys.stderr,
    )
    return 1


def _down(cluster: ClusterDir) -> None:
    doc = cluster.read_state()
    if doc is not None:
        lifecycle.stop_cluster(cluster, doc)


def _last_log_line(path: str) -> str | None:
    """A node's own last words (its log gets its stderr): usually the one-line error."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1].strip().removeprefix("partisan: error: ") if lines else None


def _one_line(text: str) -> str:
    """A StartChildError reason is several lines (the node's output); keep the telling one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else text
    return f"{lines[0].split(';')[0]}: {lines[-1]}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager, `timeout`) stops the cluster like Ctrl-C does.

    Outside the event loop it raises KeyboardInterrupt; inside, the loop's
    own handler cancels the main task instead (see `_converge_and_view`).
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

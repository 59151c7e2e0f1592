"""The cluster daemon: ``python -m partisan.cluster.daemon --dir DIR [--attached]``.

``partisan cluster up`` writes DIR/cluster.json (state ``starting`` and the
plan) and starts this process in its own session. The daemon owns the nodes:

* a `ProcessSupervisor` with ``escalate=False`` (each node has its own
  ``--max-restarts`` per ``restart_period``; ``--restart never`` is a limit of
  0), starting the nodes wave by wave (`plan.start_waves`: a node starts once
  the peers it joins serve), every node of a wave at once;
* each node's argv is rebuilt at every (re)start (`node_argv`), so it joins
  whichever of its contacts are up *now* and a restarted n1 rejoins rather
  than starting a cluster of its own;
* cluster.json is rewritten (atomically) after every process event, so every
  CLI verb in every shell sees the same state;
* the control socket (`partisan.cluster.control`) takes kill/stop/start/
  restart/down requests.

It stops every node (at once, each SIGTERM then SIGKILL after `NODE_SHUTDOWN` s) on
``down``, SIGTERM/SIGINT, or, with ``--attached``, when the launching ``up``
goes away (EOF on stdin) — unless that ``up`` sent ``detach`` first. Nodes
exit by themselves if this process dies, since it holds their stdin pipes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from partisan.cluster import plan as plans
from partisan.cluster.control import SIGNALS, ControlServer
from partisan.cluster.layout import FORMAT_VERSION, ClusterDir
from partisan.errors import ClusterError
from partisan.supervision.errors import StartChildError
from partisan.supervision.process_spec import ProcessInfo, ProcessSpec, ProcessState
from partisan.supervision.processes import ProcessSupervisor

__all__ = ["ClusterDaemon", "main", "node_argv"]

log = logging.getLogger("partisan.cluster.daemon")

#: Seconds a node gets between SIGTERM and SIGKILL: more than a node's own
#: ``shutdown_timeout`` (5 s by default; what it may wait for peers to take its
#: queued messages), so a peer that stalls (e.g. a SIGSTOPped viewer) delays a
#: stop but never makes it a SIGKILL that loses the node's last events.
NODE_SHUTDOWN = 8.0
#: Seconds between a process event and the cluster.json rewrite (events in between share it).
WRITE_DELAY = 0.05
#: Seconds a node may take to print its ready line, beyond its join timeout.
READY_MARGIN = 60.0

_STATE_OF = {
    ProcessState.STARTING: "starting",
    ProcessState.RESTARTING: "starting",
    ProcessState.RUNNING: "up",
    ProcessState.STOPPING: "down",
    ProcessState.TERMINATED: "down",
}


def node_argv(
    plan: plans.ClusterPlan, cluster: ClusterDir, name: str, port: int, joins: Sequence[str]
) -> list[str]:
    """The ``partisan node start`` command line of node `name` joining `joins` (name@host:port)."""
    argv = [sys.executable, "-m", "partisan", "-v", "node", "start", name]
    argv += ["--host", plan.host, "--port", str(port), "--manager", plan.manager]
    argv += ["--keys", str(cluster.keys), "--event-log", str(cluster.event_log(name))]
    role = plans.role_of(plan, name)
    if role is not None:
        argv += ["--role", role]
    if plan.channels:
        argv += ["--channels", plan.channels]
    if plan.parallelism is not None:
        argv += ["--parallelism", str(plan.parallelism)]
    for module in plan.imports:
        argv += ["--import", module]
    if plan.run:
        argv += ["--run", plan.run]
    for setting in plan.settings:
        argv += ["--set", setting]
    for contact in joins:
        argv += ["--join", contact]
    if joins:
        argv += ["--join-timeout", f"{plan.join_timeout:g}"]
    return argv


class ClusterDaemon:
    """Run one cluster until it is told to stop; see the module docstring."""

    def __init__(self, cluster: ClusterDir, plan: plans.ClusterPlan, *, attached: bool) -> None:
        self.cluster = cluster
        self.plan = plan
        self.attached = attached
        limit = plan.max_restarts if plan.restart == "on-failure" else 0
        self.supervisor = ProcessSupervisor(
            intensity=limit,
            period=plan.restart_period,
            escalate=False,
            start_concurrency=plan.n,
            stop_concurrency=plan.n,
            command_for=self._command_for,
        )
        self.names = plans.node_names(plan)
        self._state = "starting"
        self._errors: dict[str, str] = {}  # why a node is down, when we know better
        self._paused: set[str] = set()
        self._stop = asyncio.Event()
        self._write_pending = False
        self._server = ControlServer(cluster.socket, self._handle)

    # ------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        if self.attached:
            self._watch_stdin(loop)
        self.supervisor.subscribe(lambda _event: self._schedule_write())
        await self.supervisor.start()
        await self._server.start()
        self._write()
        starting = asyncio.ensure_future(self._start_waves())
        await self._stop.wait()
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await self.shutdown()
        return 0

    async def _start_waves(self) -> None:
        for wave in plans.start_waves(self.plan):
            specs = [self._spec(name) for name in wave]
            failed = await self.supervisor.start_children(specs)
            for name, exc in failed.items():
                self._errors[name] = f"did not start: {exc.reason}"
                log.error("%s did not start: %s", name, exc.reason)
            self._write()
        self._state = "running"
        self._write()
        log.info("every node of %d started", self.plan.n)

    async def shutdown(self) -> None:
        """Stop every node, then mark the cluster stopped and close the socket."""
        self._state = "stopping"
        self._write()
        await self.supervisor.stop("down")
        self._state = "stopped"
        self._write()
        await self._server.close()
        log.info("cluster stopped")

    def _watch_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = sys.stdin.fileno()

        def on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                if self.attached:
                    log.info("the launching 'cluster up' went away: stopping")
                    self._stop.set()

        loop.add_reader(fd, on_stdin)

    def _spec(self, name: str) -> ProcessSpec:
        return ProcessSpec(
            name,
            ["partisan", "node", "start", name],  # rebuilt by _command_for at each start
            shutdown=NODE_SHUTDOWN,
            ready_timeout=self.plan.join_timeout + READY_MARGIN,
            stderr_path=str(self.cluster.node_log(name)),
            cwd=self.plan.cwd,
        )

    def _command_for(self, spec: ProcessSpec, port: int) -> list[str]:
        running = {
            c.id: c for c in self.supervisor.which_children() if c.state is ProcessState.RUNNING
        }
        up = [n for n in self.names if n in running and n not in self._paused and n != spec.id]
        joins = [
            f"{name}@{running[name].address}"
            for name in plans.contacts(self.plan, spec.id, up)
            if running[name].address
        ]
        self._errors.pop(spec.id, None)
        self._paused.discard(spec.id)
        return node_argv(self.plan, self.cluster, spec.id, port, joins)

    # --------------------------------------------------------------- control

    async def _handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg["op"]
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "state": self._state}
        if op == "detach":
            self.attached = False
            return {"ok": True}
        if op == "down":
            self._stop.set()
            await self.supervisor.wait()
            return {"ok": True}
        name = msg.get("node")
        if name not in self.names:
            raise ClusterError(f"no node {name!r} in this cluster (nodes: n1..n{self.plan.n})")
        child = self._child(name)
        if op == "kill":
            return self._kill(name, child, str(msg.get("signal", "KILL")).upper())
        if op == "stop":
            await self.supervisor.terminate_child(name)
            self._errors[name] = "stopped"
        elif op == "start":
            if child is not None and child.state is not ProcessState.TERMINATED:
                raise ClusterError(f"{name} is already {_STATE_OF[child.state]}")
            await self._start_again(name, child)
        elif op == "restart":
            if child is not None and child.state is not ProcessState.TERMINATED:
                await self.supervisor.terminate_child(name)
            await self._start_again(name, child)
        else:
            raise ClusterError(f"unknown control request {op!r}")
        self._write()
        return {"ok": True}

    def _kill(self, name: str, child: ProcessInfo | None, sig: str) -> dict[str, Any]:
        if sig not in SIGNALS:
            raise ClusterError(f"unknown signal {sig!r}; expected one of {', '.join(SIGNALS)}")
        if child is None or child.state is not ProcessState.RUNNING:
            raise ClusterError(f"{name} is not running")
        if sig == "STOP":
            self._paused.add(name)
        elif sig == "CONT":
            self._paused.discard(name)
        self.supervisor.kill_child(name, getattr(signal, f"SIG{sig}"))
        return {"ok": True, "os_pid": child.os_pid}

    async def _start_again(self, name: str, child: ProcessInfo | None) -> None:
        try:
            if child is None:  # its first start failed before it was ever recorded
                failed = await self.supervisor.start_children([self._spec(name)])
                if failed:
                    raise failed[name]
            else:
                await self.supervisor.restart_child(name)
        except StartChildError as exc:
            self._errors[name] = f"did not start: {exc.reason}"
            self._write()
            raise ClusterError(f"{name} did not start: {str(exc.reason).splitlines()[0]}") from None

    def _child(self, name: str) -> ProcessInfo | None:
        for child in self.supervisor.which_children():
            if child.id == name:
                return child
        return None

    # ----------------------------------------------------------------- state

    def _schedule_write(self) -> None:
        """Rewrite cluster.json soon: a burst of events (64 nodes starting) costs one write per 50 ms."""
        if not self._write_pending:
            self._write_pending = True
            asyncio.get_running_loop().call_later(WRITE_DELAY, self._write)

    def _write(self) -> None:
        self._write_pending = False
        children = {c.id: c for c in self.supervisor.which_children()}
        nodes = [self._node_record(name, children.get(name)) for name in self.names]
        self.cluster.write_state(
            {
                "version": FORMAT_VERSION,
                "state": self._state,
                "manager": self.plan.manager,
                "dir": str(self.cluster.root),
                "supervisor_pid": os.getpid(),
                "plan": self.plan.to_json(),
                "configured_links": [list(p) for p in plans.configured_links(self.plan)],
                "nodes": nodes,
            }
        )

    def _node_record(self, name: str, child: ProcessInfo | None) -> dict[str, Any]:
        state = "starting" if child is None else _STATE_OF[child.state]
        if self._state == "stopped":
            state = "down"
        error = None
        if state == "down" and self._state in ("stopping", "stopped"):
            self._errors.setdefault(name, "stopped")
        if state == "down":
            error = self._errors.get(name) or (child.last_exit if child else None)
            if self.plan.restart == "never" and error and "; left down after" in error:
                error = error.split("; left down after", 1)[0]
        elif state == "starting" and child is not None and child.last_exit:
            error = f"{child.last_exit}; restarting"
        running = child is not None and child.state is ProcessState.RUNNING
        return {
            "name": name,
            "address": child.address if child else None,
            "role": plans.role_of(self.plan, name),
            "os_pid": child.os_pid if running and child else None,
            "incarnation": child.incarnation if running and child else None,
            "log": str(self.cluster.node_log(name)),
            "event_log": str(self.cluster.event_log(name)),
            "state": state,
            "restarts": child.restarts if child else 0,
            "error": error,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partisan.cluster.daemon")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--attached", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    cluster = ClusterDir(args.dir)
    try:
        doc = cluster.require_state()
        plan = plans.ClusterPlan.from_json(doc["plan"])
    except (ClusterError, KeyError, TypeError, ValueError) as exc:
        log.error("cannot start the cluster daemon: %s", exc)
        return 1
    return asyncio.run(ClusterDaemon(cluster, plan, attached=args.attached).run())


if __name__ == "__main__":
    sys.exit(main())

"""``partisan cluster``: launch, watch and break a local cluster (argparse only).

Each verb's work lives in `partisan.cluster.up` (``up``) and
`partisan.cluster.verbs` (the rest); this module declares flags and help.
Every verb takes ``--dir`` (default ``.partisan``), where the cluster keeps
its state, so any verb works from any shell.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

MANAGERS = ("full-mesh", "hyparview", "client-server", "static")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text!r}")
    return value


def _dispatch(module: str, function: str) -> Any:
    """A ``func`` that imports the implementation only when the verb runs (fast ``--help``)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), function)(args) or 0)

    return run


def register(subparsers: Any) -> None:
    """Add ``cluster`` and its verbs."""
    parser = subparsers.add_parser(
        "cluster",
        help="launch, watch and break a local cluster",
        description="Run N nodes on this machine under a cluster supervisor, watch the "
        "overlay live, kill and pause nodes, and tear everything down. State lives in "
        "--dir (default .partisan), so every verb works from any shell.",
    )
    sub = parser.add_subparsers(dest="cluster_command", metavar="VERB")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", default=".partisan", help="the cluster's directory (default: .partisan)"
    )
    verbs = "partisan.cluster.verbs"

    def verb(name: str, help_text: str, module: str, function: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=_dispatch(module, function))
        return p

    _add_up(verb("up", "start a local cluster and show it live", "partisan.cluster.up", "up"))

    status = verb("status", "print every node's state and the cluster's health", verbs, "status")
    status.add_argument("--json", action="store_true", help="one JSON document (schema 1)")
    status.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    status.add_argument("--interval", type=_positive_float, default=1.0, metavar="S")

    top = verb("top", "interactive live view (kill, pause, restart nodes)", verbs, "top")
    top.add_argument("--interval", type=_positive_float, default=1.0, metavar="S")

    wait = verb("wait", "exit 0 once the cluster has converged (1 at --timeout)", verbs, "wait")
    wait.add_argument("--timeout", type=_positive_float, default=60.0, metavar="S")

    kill = verb("kill", "send a signal to a node (default KILL; it is restarted)", verbs, "kill")
    kill.add_argument("node", metavar="NODE")
    kill.add_argument(
        "--signal",
        default="KILL",
        type=str.upper,
        choices=("KILL", "STOP", "CONT", "TERM"),
        help="KILL (default), TERM, STOP (pause) or CONT (resume)",
    )
    for name, text in (
        ("restart", "stop a node and start a new incarnation of it"),
        ("stop", "stop a node; it stays down until 'start'"),
        ("start", "start a node that is down"),
    ):
        verb(name, text, verbs, name).add_argument("node", metavar="NODE")

    logs = verb("logs", "print node logs, each line prefixed by its node", verbs, "logs")
    logs.add_argument("nodes", nargs="*", metavar="NODE", help="only these nodes")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=None,
        metavar="LINES",
        help="only the last LINES lines of each log",
    )

    events = verb("events", "print the merged event log, ordered by time", verbs, "events")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="JSON lines, as the nodes wrote them")

    graph = verb("graph", "print the overlay graph", verbs, "graph")
    graph.add_argument("--format", default="text", choices=("text", "dot", "json", "svg"))
    graph.add_argument("--passive", action="store_true", help="include HyParView passive views")

    fault_verbs = "partisan.cluster.fault_verbs"
    part = verb(
        "partition",
        "cut the cluster into groups: each reaches only itself (nodes in no group reach all)",
        fault_verbs,
        "partition",
    )
    part.add_argument("groups", nargs="+", metavar="A,B", help="a comma-separated group of nodes")
    heal = verb("heal", "end the partition (links come back)", fault_verbs, "heal")
    heal.add_argument("--all", action="store_true", help="also clear every drop/delay rule")
    faults = verb("faults", "list each node's partition, fault rules and counters", fault_verbs,
                  "faults")  # fmt: skip
    faults.add_argument("--json", action="store_true", help="one JSON document (schema 1)")

    down = verb("down", "stop every node and the cluster supervisor", verbs, "down")
    down.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S")

    parser.set_defaults(func=lambda args: parser.print_help(sys.stderr) or 2)


def _add_up(up: argparse.ArgumentParser) -> None:
    up.add_argument("-n", type=int, default=3, metavar="N", help="number of nodes (default 3)")
    up.add_argument("--manager", default="hyparview", choices=MANAGERS)
    up.add_argument(
        "--servers",
        type=int,
        metavar="K",
        help="client-server: n1..nK are servers (default min(2, N))",
    )
    up.add_argument(
        "--topology",
        default="ring",
        choices=("ring", "star", "full"),
        help="static: which pairs are linked (default ring)",
    )
    up.add_argument("--channels", metavar="SPEC", help="channels, e.g. data:4,gossip:1")
    up.add_argument("--parallelism", type=int, metavar="K", help="lanes per channel")
    up.add_argument(
        "--restart",
        default="on-failure",
        choices=("on-failure", "never"),
        help="restart a node that dies (default on-failure)",
    )
    up.add_argument(
        "--max-restarts",
        type=_count,
        default=5,
        metavar="R",
        help="per node, per 10 s; past it only that node stays down (default 5)",
    )
    up.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="every node imports this module of yours (repeatable)",
    )
    up.add_argument(
        "--run", metavar="MODULE:FUNCTION", help="every node runs this entry point once it is ready"
    )
    up.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a config field for every node (repeatable)",
    )
    up.add_argument(
        "--detach", action="store_true", help="return once converged; the cluster keeps running"
    )
    up.add_argument(
        "--no-wait",
        action="store_true",
        help="return at once (implies --detach); use 'cluster wait' later",
    )
    up.add_argument(
        "--wait-timeout",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="give up waiting for convergence after S seconds (default 60)",
    )
    up.add_argument(
        "--join-timeout", type=_positive_float, default=10.0, metavar="S", help=argparse.SUPPRESS
    )

"""``partisan cluster partition | heal | faults``: fault injection in a running cluster.

Each verb joins the cluster as the CLI's hidden node (`Observer`) and runs
`fault_probe.apply` / `fault_probe.listing` on every up node at once, by rpc.
Hidden peers are never cut, so the observer keeps its links through the
partition it sets. `partition A,B C,D`: each argument is a group that can
reach only itself; nodes in no group reach everyone (docs/cluster-cli.md).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose, as in `verbs`.
import argparse
import asyncio
import json
import sys
from typing import Any

from partisan.cluster.layout import ClusterDir
from partisan.errors import ClusterError

__all__ = ["faults", "heal", "parse_groups", "partition"]


def parse_groups(texts: list[str], known: list[str]) -> list[list[str]]:
    """``["n1,n2", "n3"]`` -> ``[["n1", "n2"], ["n3"]]``; ClusterError naming what is wrong."""
    groups: list[list[str]] = []
    seen: set[str] = set()
    for text in texts:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise ClusterError(f"partition: empty group {text!r}")
        for name in names:
            if name not in known:
                raise ClusterError(
                    f"partition: no node {name!r} in this cluster (nodes: {', '.join(known)})"
                )
            if name in seen:
                raise ClusterError(f"partition: {name!r} is in two groups")
            seen.add(name)
        groups.append(names)
    return groups


def _run_everywhere(cluster: ClusterDir, op: str | None, args: dict[str, Any]) -> dict[str, Any]:
    from partisan.cluster import fault_probe
    from partisan.cluster.verbs import _observing

    async def run() -> dict[str, Any]:
        async with _observing(cluster) as observer:
            if op is None:
                return await observer.rpc_all(fault_probe.listing)
            return await observer.rpc_all(fault_probe.apply, op, args)

    return asyncio.run(run())


def _check(answers: dict[str, Any]) -> None:
    failed = {n: a for n, a in answers.items() if isinstance(a, BaseException)}
    if not answers:
        raise ClusterError("no node is up")
    if failed:
        name, exc = sorted(failed.items())[0]
        raise ClusterError(
            f"{len(failed)} of {len(answers)} node(s) did not apply it ({name}: "
            f"{type(exc).__name__}: {exc})"
        )


def partition(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    doc = cluster.require_running()
    known = [str(n["name"]) for n in doc.get("nodes", ())]
    groups = parse_groups(args.groups, known)
    answers = _run_everywhere(cluster, "partition", {"groups": groups})
    _check(answers)
    text = " | ".join("{" + ",".join(g) + "}" for g in groups)
    print(f"partisan: partitioned {text} on {len(answers)} node(s)", file=sys.stderr)
    return 0


def heal(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    cluster.require_running()
    answers = _run_everywhere(cluster, "clear" if args.all else "heal", {})
    _check(answers)
    what = "cleared every fault" if args.all else "healed the partition"
    print(f"partisan: {what} on {len(answers)} node(s)", file=sys.stderr)
    return 0


def faults(args: argparse.Namespace) -> int:
    cluster = ClusterDir(args.dir)
    cluster.require_running()
    answers = _run_everywhere(cluster, None, {})
    _check(answers)
    if args.json:
        print(json.dumps({"schema": 1, "nodes": dict(sorted(answers.items()))}, indent=2))
        return 0
    for name, answer in sorted(answers.items()):
        groups = answer["partition"]
        counters = ", ".join(
            f"{k} {answer[k]}" for k in ("dropped", "delayed", "duplicated", "cut", "refused")
        )
        line = f"{name}: partition {' | '.join(','.join(g) for g in groups) if groups else 'none'}"
        print(f"{line}; {len(answer['rules'])} rule(s); {counters}")
        for rule in answer["rules"]:
            shown = {k: v for k, v in rule.items() if v not in (None, 0.0, "both") or k == "id"}
            print("  " + " ".join(f"{k}={v}" for k, v in shown.items()))
    return 0

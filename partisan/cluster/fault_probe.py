"""What the ``partisan cluster partition/heal/faults`` verbs run inside each node (by rpc).

The CLI's hidden observer node calls ``await partisan.rpc(name, apply, op,
args)``; `rpc` pickles these module functions by reference, so each node runs
its own copy against its own `node.faults` and answers a plain dict (no
partisan classes: the CLI may be another version). The observer is hidden,
and hidden peers are never cut, so it keeps its links through a partition.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose, as in `probe`: the CLI that ships these
# functions does not import the runtime.
import dataclasses
from typing import Any

__all__ = ["OPS", "apply", "listing"]

#: The `Faults` methods `apply` may call.
OPS = ("partition", "heal", "drop", "delay", "duplicate", "clear", "seed")


def _faults() -> Any:
    from partisan.actors.process import current
    from partisan.node import node_of

    runtime = current().runtime
    node = node_of(runtime)
    if node is None:
        raise RuntimeError(f"no running Node owns runtime {runtime.node!r}")
    return node.faults


def apply(op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``node.faults.<op>(**args)`` here (``partition`` takes ``groups``); then `listing`."""
    if op not in OPS:
        raise ValueError(f"fault operation must be one of {', '.join(OPS)}, got {op!r}")
    faults = _faults()
    args = dict(args or {})
    if op == "partition":
        faults.partition(*args.get("groups", ()))
        result = None
    else:
        result = getattr(faults, op)(**args)
    answer = listing()
    answer["result"] = result
    return answer


def listing() -> dict[str, Any]:
    """This node's rules, partition and counters, as plain data."""
    stats = _faults().statistics()
    out = dataclasses.asdict(stats)
    out["rules"] = [rule.to_dict() for rule in stats.rules]
    out["partition"] = [list(group) for group in stats.partition]
    return out

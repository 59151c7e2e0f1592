"""Fault injection for tests over real clusters: partition, heal, drop, delay, duplicate.

Two ways in, the same `node.faults` underneath (docs/delivery.md):

* a whole `Cluster` (blocking, through the CLI a user would type)::

      with Cluster(6) as cluster:
          faults.partition(cluster, ["n1", "n2", "n3"], ["n4", "n5", "n6"])
          ...
          faults.heal(cluster)

* one node through a `ClusterClient` (async, by rpc; per peer and channel)::

      async with cluster.client() as client:
          rule = await faults.drop(client, "n1", peer="n2", channel="log", probability=0.1)
          await faults.clear(client, "n1", rule)

Each group of a partition reaches only itself; nodes in no group reach
everyone; the client and the CLI are hidden nodes, so they are never cut.
Every change is a ``fault.set`` / ``fault.clear`` record in the node's event
log. `seed` makes a node's random choices replayable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from partisan.cluster.fault_probe import apply, listing
from partisan.testing.cluster import Cluster, ClusterClient

__all__ = [
    "clear", "delay", "drop", "duplicate", "heal", "listing_of", "partition", "rules", "seed",
]  # fmt: skip


def partition(cluster: Cluster, *groups: Iterable[str]) -> None:
    """``partisan cluster partition``: cut `cluster` into `groups` (lists of node names)."""
    cluster.cli("partition", *(",".join(group) for group in groups))


def heal(cluster: Cluster, *, everything: bool = False) -> None:
    """``partisan cluster heal`` (``--all`` with `everything`: drop every rule too)."""
    cluster.cli("heal", *(["--all"] if everything else []))


def listing_of(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """``partisan cluster faults --json``: node -> its partition, rules and counters."""
    nodes: dict[str, dict[str, Any]] = json.loads(cluster.cli("faults", "--json").stdout)["nodes"]
    return nodes


async def _apply(client: ClusterClient, node: str, op: str, **args: Any) -> Any:
    answer = await client.rpc(node, apply, op, args)
    return answer["result"]


async def drop(
    client: ClusterClient, node: str, *, peer: str | None = None, channel: str | None = None,
    probability: float = 1.0, direction: str = "both",
) -> int:  # fmt: skip
    """On `node`, drop messages to/from `peer` on `channel` (None: any); returns the rule id."""
    rule: int = await _apply(
        client, node, "drop", peer=peer, channel=channel, probability=probability,
        direction=direction,
    )  # fmt: skip
    return rule


async def delay(
    client: ClusterClient, node: str, *, peer: str | None = None, channel: str | None = None,
    seconds: float = 0.0, jitter: float = 0.0, probability: float = 1.0, direction: str = "both",
) -> int:  # fmt: skip
    """On `node`, hold matching messages `seconds` plus up to `jitter`; returns the rule id."""
    rule: int = await _apply(
        client, node, "delay", peer=peer, channel=channel, seconds=seconds, jitter=jitter,
        probability=probability, direction=direction,
    )  # fmt: skip
    return rule


async def duplicate(
    client: ClusterClient, node: str, *, peer: str | None = None, channel: str | None = None,
    probability: float = 1.0, direction: str = "both",
) -> int:  # fmt: skip
    """On `node`, deliver matching messages twice; returns the rule id."""
    rule: int = await _apply(
        client, node, "duplicate", peer=peer, channel=channel, probability=probability,
        direction=direction,
    )  # fmt: skip
    return rule


async def clear(client: ClusterClient, node: str, rule: int | None = None) -> None:
    """On `node`, remove rule `rule`, or (None) every rule and the partition."""
    await _apply(client, node, "clear", rule_id=rule)


async def seed(client: ClusterClient, node: str, value: int) -> None:
    """Seed `node`'s fault choices, so a failing run replays."""
    await _apply(client, node, "seed", seed=value)


async def rules(client: ClusterClient, node: str) -> dict[str, Any]:
    """`node`'s partition, rules and counters (`fault_probe.listing`)."""
    answer: dict[str, Any] = await client.rpc(node, listing)
    return answer

"""``partisan cluster partition | heal | faults`` on real clusters (the issue's must-shows).

Full mesh: each side reports `NodeDown` (reason ``partitioned``) for exactly
the other side; after ``heal`` the mesh re-forms and every cross pair reports
`NodeUp` once. HyParView (16 nodes, 8|8): each side's overlay stays
connected, and after ``heal`` the overlay is one component again within 30 s.
What the nodes report is read from their event logs (``signal.nodedown`` /
``signal.nodeup``, the history checker's records).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partisan.membership.metrics import components as graph_components
from partisan.testing import wait_until
from partisan.testing.history import check_history, load_history
from tests.integration.test_cluster_cli import ClusterCli

FAST = ("--set", "heartbeat_interval=0.2", "--set", "heartbeat_timeout=1.0")


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[ClusterCli]:
    cluster = ClusterCli(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.cleanup()


def names(first: int, last: int) -> list[str]:
    return [f"n{i}" for i in range(first, last + 1)]


def signals(cli: ClusterCli, kind: str, since: float) -> dict[str, Counter[tuple[str, str]]]:
    """node -> Counter of (peer, reason) for its `kind` records written after `since` (mono)."""
    out: dict[str, Counter[tuple[str, str]]] = {}
    for path in sorted((cli.dir / "events").glob("*.jsonl")):
        counts: Counter[tuple[str, str]] = Counter()
        for rec in load_history([path]):
            if rec.get("event") == kind and rec.get("mono", 0) >= since:
                counts[(rec["peer"], rec.get("reason") or "")] += 1
        out[path.stem] = counts
    return out


def mono_now(cli: ClusterCli) -> float:
    """The newest `mono` any node wrote (the nodes' clock: records after it are newer)."""
    newest = 0.0
    for path in (cli.dir / "events").glob("*.jsonl"):
        for rec in load_history([path]):
            newest = max(newest, float(rec.get("mono", 0)))
    return newest


def components(status: dict[str, Any]) -> list[set[str]]:
    """Connected components of the active (HyParView) or connection graph over live nodes."""
    nodes = {n["name"]: n for n in status["nodes"] if n["alive"]}
    graph = {name: list(n["active"] or n["connections"]) for name, n in nodes.items()}
    return [set(part) for part in graph_components(graph)]


@pytest.mark.timeout(120)
def test_full_mesh_partition_and_heal(cli: ClusterCli) -> None:
    left, right = names(1, 3), names(4, 6)
    cli.up("-n", "6", "--manager", "full-mesh", *FAST)
    for bad, why in ((("n1,n9", "n2"), "no node 'n9'"), (("n1,n2", "n2,n3"), "in two groups")):
        refused = cli.run("partition", *bad)
        assert refused.returncode == 1 and why in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.splitlines()) == 1
    since = mono_now(cli)
    started = time.monotonic()
    cli.ok("partition", ",".join(left), ",".join(right))
    other = {n: right if n in left else left for n in left + right}

    def each_side_saw_the_other_go() -> bool:
        downs = signals(cli, "signal.nodedown", since)
        return all(set(p for p, _ in downs[n]) >= set(other[n]) for n in other)

    wait_until(
        each_side_saw_the_other_go, 20, message=lambda: str(signals(cli, "signal.nodedown", since))
    )
    cut_s = time.monotonic() - started
    downs = signals(cli, "signal.nodedown", since)
    for node in other:  # exactly the other side, once each, reason "partitioned"
        assert downs[node] == Counter({(p, "partitioned"): 1 for p in other[node]}), (node, downs)
    status = cli.status()
    assert sorted(map(sorted, components(status))) == [left, right]
    listing = json.loads(cli.ok("faults", "--json").stdout)["nodes"]
    assert all(v["partition"] == [left, right] for v in listing.values()), listing
    assert sum(v["cut"] for v in listing.values()) >= 9  # every cross pair, from one end or both

    since = mono_now(cli)
    started = time.monotonic()
    cli.ok("heal")

    def mesh_back() -> bool:
        ups = signals(cli, "signal.nodeup", since)
        return all(set(p for p, _ in ups[n]) >= set(other[n]) for n in other)

    wait_until(mesh_back, 20, message=lambda: str(signals(cli, "signal.nodeup", since)))
    heal_s = time.monotonic() - started
    cli.wait()
    ups = signals(cli, "signal.nodeup", since)
    for node in other:  # every cross pair once; nobody on the same side bounced
        assert ups[node] == Counter({(p, ""): 1 for p in other[node]}), (node, ups)
    report = check_history(load_history(sorted((cli.dir / "events").glob("*.jsonl"))))
    assert not report.signal_violations, report.signal_violations
    listing = json.loads(cli.ok("faults", "--json").stdout)["nodes"]
    assert all(v["partition"] == [] for v in listing.values()), listing
    print(
        f"\nfull mesh 3|3: every NodeDown in {cut_s:.2f} s, every NodeUp {heal_s:.2f} s after heal"
    )


@pytest.mark.timeout(180)
def test_hyparview_sides_stay_connected_and_merge_after_heal(cli: ClusterCli) -> None:
    left, right = names(1, 8), names(9, 16)
    cli.up("-n", "16", "--manager", "hyparview", "--set", "hyparview.shuffle_interval=3", *FAST)
    cli.ok("partition", ",".join(left), ",".join(right))
    status: dict[str, Any] = {}

    def two_sides() -> bool:
        nonlocal status
        status = cli.status()
        parts = components(status)
        return sorted(map(sorted, parts)) == sorted([sorted(left), sorted(right)])

    # Each side repairs its views from its own passive entries: two connected halves.
    wait_until(two_sides, 30, message=lambda: str(components(status)))
    started = time.monotonic()
    cli.ok("heal")

    def one_component() -> bool:
        nonlocal status
        status = cli.status()
        return len(components(status)) == 1 and status["converged"]

    wait_until(one_component, 30, message=lambda: str(components(status)))
    merged_s = time.monotonic() - started
    print(f"\nHyParView 8|8: one component {merged_s:.1f} s after heal")


@pytest.mark.timeout(150)
def test_hyparview_merges_through_ghosts_once_no_passive_view_names_the_other_side(
    cli: ClusterCli,
) -> None:
    """The ghost path, in real processes: nothing but the ghosts still knows the other side.

    Promotion every 0.1 s makes the lost timeout 6 s (60 intervals) and a ghost
    probe every 1.2 s (12 intervals). The partition is held until every
    passive entry naming the other side was probed and dropped, and past the
    lost timeout, so at the heal no view and no lost peer lists the other side:
    only the ghosts (at most `active_size` per node) can merge the overlay.
    """
    left, right = names(1, 4), names(5, 8)
    cli.up(
        "-n", "8", "--manager", "hyparview", "--set", "hyparview.shuffle_interval=0.5",
        "--set", "hyparview.random_promotion_interval=0.1", *FAST,
    )  # fmt: skip
    cli.ok("partition", ",".join(left), ",".join(right))
    cut = time.monotonic()
    side = {n: set(left) if n in left else set(right) for n in left + right}
    status: dict[str, Any] = {}

    def forgotten() -> bool:
        nonlocal status
        status = cli.status()
        nodes = [n for n in status["nodes"] if n["alive"]]
        return len(components(status)) == 2 and all(
            set(n["passive"]) | set(n["active"]) <= side[n["name"]] for n in nodes
        )

    wait_until(forgotten, 60, message=lambda: json.dumps(status.get("nodes"))[:2000])
    lost_timeout = 60 * 0.1
    if time.monotonic() - cut < lost_timeout + 1.0:
        time.sleep(lost_timeout + 1.0 - (time.monotonic() - cut))  # ok-sleep: hold the partition
    assert forgotten(), "a view named the other side again during the partition"
    healed = time.monotonic()
    cli.ok("heal")

    def one_component() -> bool:
        nonlocal status
        status = cli.status()
        return len(components(status)) == 1 and status["converged"]

    # Bound: 12 intervals per ghost, at most active_size (5) ghosts per node: 6 s.
    wait_until(one_component, 30, message=lambda: str(components(status)))
    print(
        f"\nHyParView 4|4, ghosts only: one component {time.monotonic() - healed:.1f} s after heal"
    )

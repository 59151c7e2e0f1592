"""The soak's schedule replays from its seed, and its judge catches what it must.

Pure functions over synthetic records: no hosts, no root (``chaos_quick``, so
``make test`` runs them too). The soak itself (R4) only ever shows the judge
passing; these show each check failing on the history it must reject.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from soak_history import judge

from partisan.testing.schedule import FAULTS, Step, affects, plan

NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.mark.chaos_quick
@pytest.mark.timeout(10)
def test_plan_replays_from_its_seed() -> None:
    first = plan(5, 300, NODES)
    assert first == plan(5, 300, list(reversed(NODES)))  # same seed, same steps
    assert first != plan(6, 300, NODES)
    assert sum(s.hold + s.quiet for s in first[:-1]) < 300 <= sum(s.hold + s.quiet for s in first)
    assert len(first) >= 20 and {s.op for s in first} == set(FAULTS)
    for step in first:
        assert 2.0 <= step.hold <= 5.0 and 2.0 <= step.quiet <= 4.0
        assert {n for group in step.nodes for n in group} <= set(NODES)


@pytest.mark.chaos_quick
@pytest.mark.timeout(10)
def test_affects_names_the_pairs_a_fault_cuts() -> None:
    bridge = Step(0, "bridge", (("n1", "n2"), ("n3",), ("n4", "n5")), 1, 1)
    assert affects(bridge, "n1", "n4") and affects(bridge, "n5", "n2")
    assert not affects(bridge, "n1", "n3") and not affects(bridge, "n1", "n2")
    kill = Step(0, "kill", (("n3",),), 1, 1)
    assert affects(kill, "n3", "n1") and affects(kill, "n2", "n3") and not affects(kill, "n1", "n2")
    one_way = Step(0, "one_way", (("n1",), ("n2",)), 1, 1, {"reject": False})
    assert affects(one_way, "n2", "n1") and not affects(one_way, "n1", "n3")


def rec(node: str, event: str, mono: float, **extra: Any) -> dict[str, Any]:
    return {"node": node, "incarnation": 1, "event": event, "mono": mono, **extra}


def send(node: str, peer: str, channel: str, i: int, mono: float) -> dict[str, Any]:
    key = f"{node}.1.{peer}.{channel}"
    return rec(node, "app.send", mono, peer=peer, id=f"{key}.{i}", key=key, channel=channel)


def receive(sent: dict[str, Any], mono: float) -> dict[str, Any]:
    fields = {k: sent[k] for k in ("id", "key", "channel")}
    return rec(sent["peer"], "app.receive", mono, peer=sent["node"], **fields)


def step_log(op: str, nodes: tuple[tuple[str, ...], ...], start: float, end: float) -> dict:
    return {**asdict(Step(0, op, nodes, end - start, 1.0)), "start": start, "end": end}


@pytest.mark.chaos_quick
@pytest.mark.timeout(10)
def test_judge_passes_a_clean_history_and_excuses_what_faults_explain() -> None:
    a0, a1 = send("n1", "n2", "ack", 0, 1.0), send("n1", "n2", "ack", 4, 2.0)
    p0, p1 = send("n1", "n2", "default", 2, 1.0), send("n1", "n2", "default", 6, 5.0)
    records = [
        a0, rec("n1", "app.acked", 1.1, id=a0["id"]), receive(a0, 1.05), p0, receive(p0, 1.05),
        a1, rec("n1", "app.ack_failed", 9.0, id=a1["id"], reason="timeout"),  # lost, announced
        p1, rec("n1", "signal.nodedown", 7.0, peer="n2", reason="heartbeat_timeout"),
    ]  # fmt: skip
    steps = [step_log("halves", (("n1",), ("n2", "n3")), 4.0, 8.0)]
    verdict = judge(records, [], steps)
    assert verdict.total == 0, verdict.summary()
    assert verdict.counts["ack_failed.timeout"] == 1 and verdict.counts["plain_lost_at_nodedown"]


@pytest.mark.chaos_quick
@pytest.mark.timeout(10)
def test_judge_reports_each_violation() -> None:
    acked = send("n1", "n2", "ack", 0, 1.0)  # acknowledged, never received
    plain = send("n1", "n3", "default", 2, 1.0)  # lost, no NodeDown anywhere
    dup = send("n1", "n4", "default", 6, 1.0)  # received twice, no duplicate fault
    records = [
        acked, rec("n1", "app.acked", 1.1, id=acked["id"]), plain, dup,
        receive(dup, 1.2), receive(dup, 1.3),
        rec("n2", "app.watch", 2.0, peer="n5", id="w1"),  # fired twice, no cause
        rec("n2", "app.down", 2.5, peer="n5", id="w1"), rec("n2", "app.down", 2.6, peer="n5", id="w1"),
        rec("n4", "signal.nodedown", 3.0, peer="n5", reason="heartbeat_timeout"),  # no fault
        rec("n3", "app.call", 3.0, peer="n1", id="c1", reason="mismatch"),
    ]  # fmt: skip
    bad = judge(records, [], []).violations
    assert bad["acked_lost"] == [acked["id"]]
    assert bad["plain_lost_without_nodedown"] == [plain["id"]]
    assert bad["duplicated"] == [dup["id"]]
    assert bad["monitor_twice"] and bad["nodedown_without_cause"] and bad["call_mismatch"]

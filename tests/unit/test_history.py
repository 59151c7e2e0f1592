"""The history checker on hand-written records: each check finds its violation, and only it."""

from __future__ import annotations

from typing import Any

import pytest

from partisan.testing.history import check_history


def rec(node: str, event: str, inc: int = 1, **extra: Any) -> dict[str, Any]:
    return {"node": node, "incarnation": inc, "event": event, **extra}


def send(msg_id: str, to: str = "b", **extra: Any) -> dict[str, Any]:
    return rec("a", "app.send", peer=to, id=msg_id, key="k", channel="default", **extra)


def receive(msg_id: str, inc: int = 1) -> dict[str, Any]:
    return rec("b", "app.receive", inc, peer="a", id=msg_id, key="k", channel="default")


@pytest.mark.timeout(10)
def test_a_clean_history_passes() -> None:
    report = check_history([send("1", peer_incarnation=1), send("2"), receive("1"), receive("2")])
    assert report.ok and (report.sent, report.received) == (2, 2)


@pytest.mark.timeout(10)
def test_lost_duplicated_and_phantom() -> None:
    report = check_history([send("1"), send("2"), receive("2"), receive("2"), receive("3")])
    assert (report.lost, report.duplicated, report.phantom) == (("1",), ("2",), ("3",))


@pytest.mark.timeout(10)
def test_out_of_order_per_key() -> None:
    report = check_history([send("1"), send("2"), receive("2"), receive("1")])
    assert len(report.out_of_order) == 1 and not report.lost


@pytest.mark.timeout(10)
def test_a_message_for_an_old_incarnation_received_by_a_new_one_is_stale() -> None:
    report = check_history([send("1", peer_incarnation=5), receive("1", inc=6)])
    assert report.stale == ("stale at b: 1 sent to incarnation 5, received by 6",)
    assert report.violations == report.stale


@pytest.mark.timeout(10)
def test_a_send_without_peer_incarnation_is_not_checked_for_staleness() -> None:
    assert check_history([send("1"), receive("1", inc=6)]).ok  # an older log's records


@pytest.mark.timeout(10)
def test_a_second_nodedown_for_one_incarnation_is_a_signal_violation() -> None:
    up = rec("a", "signal.nodeup", peer="b", peer_incarnation=7)
    down = rec("a", "signal.nodedown", peer="b", peer_incarnation=7)
    assert check_history([up, down]).ok
    report = check_history([up, down, down])
    assert report.signal_violations == ("a: NodeDown of b twice for one incarnation",)
    restarted = rec("a", "signal.nodeup", peer="b", peer_incarnation=8)
    assert check_history([up, down, restarted, {**down, "peer_incarnation": 8}]).ok


@pytest.mark.timeout(10)
def test_a_monitor_delivering_down_twice_is_a_signal_violation() -> None:
    down = rec("a", "signal.down", peer="b", peer_incarnation=7, ref=["a", 1, 3], pid="p")
    other = {**down, "ref": ["a", 1, 4]}  # a second monitor of the same actor: its own Down
    assert check_history([down, other]).ok
    report = check_history([down, other, down])
    assert report.signal_violations == ("Down of monitor a:1:3 delivered 2 times",)

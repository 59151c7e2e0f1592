"""Acked and causal channels under injected faults, between real node processes.

Each node is `partisan.testing.membernode`; the workload records every send
and receive in the nodes' event logs and `partisan.testing.history` judges
the run, as a user would judge theirs. Faults are seeded (the `fault seed`
command), so a failing run is replayed by its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from partisan.testing import NodeProcess, wait_until
from partisan.testing.history import HistoryReport, check_history, load_history

SEED = 11


@pytest.fixture
def members(delivery_members: Callable[..., NodeProcess]) -> Callable[..., NodeProcess]:
    """Membernodes with the delivery tests' fast timers (tests/integration/conftest.py)."""
    return delivery_members


def history(tmp_path: Path, names: list[str], causal: tuple[str, ...] = ()) -> HistoryReport:
    return check_history(
        load_history(tmp_path / f"{n}.jsonl" for n in names), causal_channels=causal
    )


def lossy(node: NodeProcess, peer: str) -> None:
    """10% drops, 10% duplicates, 10% delays (up to 20 ms) on both paths, seeded."""
    node.request("fault", op="seed", args={"seed": SEED})
    node.request("fault", op="drop", args={"peer": peer, "channel": "log", "probability": 0.1})
    node.request("fault", op="duplicate", args={"peer": peer, "channel": "log", "probability": 0.1})
    node.request(
        "fault", op="delay",
        args={"peer": peer, "channel": "log", "probability": 0.1, "jitter": 0.02},
    )  # fmt: skip


def run_two_nodes(
    members: Callable[..., NodeProcess], keys: Path, channels: str
) -> tuple[NodeProcess, NodeProcess]:
    """8 actors on a send 2,500 messages each to b, with faults and three forced reconnects."""
    b = members("b", keys, channels, "--manager", "full-mesh")
    a = members("a", keys, channels, "--manager", "full-mesh", "--join", str(b.spec))
    b.request("sink", channel="log")
    lossy(a, "b")
    lossy(b, "a")
    done = a.request(
        "load", target="b", actors=8, count=2500, channel="log", cut_every=700, reply_timeout=120
    )
    assert done == {"id": done["id"], "ok": True, "sent": 20_000, "cuts": 3}
    return a, b


@pytest.mark.timeout(150)
def test_acked_channel_delivers_exactly_once_in_order_despite_faults(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    a, b = run_two_nodes(members, key_dir("a", "b"), "log:4:acked")
    report: HistoryReport | None = None

    def all_delivered() -> bool:
        nonlocal report
        report = history(tmp_path, ["a", "b"])
        return report.sent == 20_000 and not report.lost

    wait_until(all_delivered, 60, message=lambda: f"still lost: {report and len(report.lost)}")
    assert report is not None and report.ok, report.violations[:10]
    assert report.received == 20_000
    stats = a.request("dstats")
    assert stats["faults"]["dropped"] > 0 and stats["delivery"]["retransmitted"] > 0
    assert b.request("dstats")["delivery"]["duplicates"] > 0  # deduplicated, not delivered


@pytest.mark.timeout(150)
def test_without_acked_the_checker_reports_the_losses(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    a, b = run_two_nodes(members, key_dir("a", "b"), "log:4")
    a.request("fault", op="clear")
    b.request("fault", op="clear")
    # A marker after the load and after the faults are gone: once b has it, what was
    # dropped stays lost (no retransmission on a plain channel).
    a.request("load", target="b", actors=1, count=1, channel="log", tag="marker")
    wait_until(
        lambda: any(
            r.get("event") == "app.receive" and ".marker." in r.get("id", "")
            for r in load_history([tmp_path / "b.jsonl"])
        ),
        30,
    )
    report = history(tmp_path, ["a", "b"])
    assert report.lost, "the same faults without acked must lose messages"
    assert not report.ok


@pytest.mark.timeout(90)
def test_unacknowledged_bytes_are_bounded_by_the_send_budget(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    """b receives but its acks are dropped: a holds at most `send_buffer_bytes`, then refuses.

    The transport's own budget is not what stops a here: b reads everything
    (its credits flow back, so `fill` waits that budget out), only the
    acknowledgements above the transport are lost. Once they flow again, every message is delivered exactly once.
    """
    keys = key_dir("a", "b")
    budget = 1024 * 1024
    b = members("b", keys, "log:1:acked", "--manager", "full-mesh")
    a = members(
        "a", keys, "log:1:acked", "--manager", "full-mesh", "--join", str(b.spec),
        "--set", f"send_buffer_bytes={budget}",
    )  # fmt: skip
    b.request("sink", channel="log")
    b.request("fault", op="drop", args={"peer": "a", "channel": "log", "direction": "send"})
    filled = a.request("fill", target="b", channel="log", size=64 * 1024, limit=200)
    assert filled["error"] and "bytes unacknowledged" in filled["error"], filled
    # Admitted while under 1 MiB: 16 of these 64 KiB messages (plus headers) reach it.
    assert filled["sent"] == 16, filled
    wait_until(  # b really got them: the bound is the acked layer's, not the transport's
        lambda: history(tmp_path, ["a", "b"]).received == 16, 20,
        message=lambda: history(tmp_path, ["a", "b"]),
    )  # fmt: skip
    assert a.request("dstats")["delivery"]["unacked"] == 16
    b.request("fault", op="clear")
    wait_until(lambda: a.request("dstats")["delivery"]["unacked"] == 0, 20)
    again = a.request("fill", target="b", channel="log", size=64 * 1024, limit=8, tag="more")
    assert again == {"id": again["id"], "ok": True, "sent": 8, "error": None}
    wait_until(lambda: history(tmp_path, ["a", "b"]).received == 24, 20)
    report = history(tmp_path, ["a", "b"])
    assert report.ok and report.sent == 24, report.violations[:5]

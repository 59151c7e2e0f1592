"""Causal channels between real node processes, judged by the history checker.

A sends each message to C, then one to B; B forwards what it gets to C. With
A's traffic to C delayed (seeded jitter), B's forward of A's later message
can reach C before A's own: a causal channel must hold it back, and the
checker (`partisan.testing.history`, causal mode) verifies C's delivery order
from the event logs. The same run on a merely acked channel shows the
checker failing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, wait_until
from partisan.testing.history import HistoryReport, check_history, load_history

SEED = 7


@pytest.fixture
def members(delivery_members: Callable[..., NodeProcess]) -> Callable[..., NodeProcess]:
    """Membernodes with the delivery tests' fast timers (tests/integration/conftest.py)."""
    return delivery_members


def run(
    tmp_path: Path, members: Callable[..., NodeProcess], keys: Path, channels: str, *,
    actors: int, count: int, base: tuple[str, ...] = ("--manager", "full-mesh"),
    transitive: bool = False, delay_on: str = "a",
) -> tuple[HistoryReport, dict[str, Any]]:  # fmt: skip
    """A -> C and A -> B -> C, `actors` x `count` each; the checker's report once all arrived."""
    c = members("c", keys, channels, *base)
    b = members("b", keys, channels, *base, "--join", str(c.spec))
    a = members("a", keys, channels, *base, "--join", str(b.spec))
    wait_until(lambda: "c" in b.request("view")["nodes"] and "b" in a.request("view")["nodes"], 20)
    c.request("sink", channel="log")
    b.request("sink", channel="log", forward_to="c")
    # A's (or, relayed, B's) traffic to C held 5-45 ms: B's forward can overtake it. The
    # spread must exceed the time between a message and its forward's send, which grows
    # when the machine is busy: with 5-15 ms a loaded full run once saw no overtaking.
    slow = a if delay_on == "a" else b
    slow.request("fault", op="seed", args={"seed": SEED})
    slow.request(
        "fault", op="delay",
        args={"peer": "c", "channel": "log", "seconds": 0.005, "jitter": 0.04, "direction": "send"},
    )  # fmt: skip
    done = a.request(
        "load", target="c", also="b", actors=actors, count=count, channel="log",
        transitive=transitive, pace=True, reply_timeout=120,
    )  # fmt: skip
    assert done["sent"] == actors * count
    expected = 3 * actors * count  # to C, to B, B's forward to C
    report: HistoryReport | None = None

    def arrived() -> bool:
        nonlocal report
        report = check_history(
            load_history(tmp_path / f"{n}.jsonl" for n in ("a", "b", "c")),
            causal_channels=("log",),
        )
        return report.sent == expected and not report.lost

    wait_until(arrived, 60, message=lambda: f"lost: {report and len(report.lost)}")
    assert report is not None
    return report, c.request("dstats")["delivery"]


@pytest.mark.timeout(150)
def test_causal_channel_never_delivers_out_of_causal_order(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    report, stats = run(
        tmp_path, members, key_dir("a", "b", "c"), "log:1:causal", actors=4, count=1250
    )
    assert report.ok, report.violations[:10]
    assert report.received == 15_000  # C delivered 10,000: 5,000 direct, 5,000 forwarded
    assert stats["causal_held"] > 0, "no forward overtook: the test would prove nothing"
    assert stats["causal_released"] == 0


@pytest.mark.timeout(150)
def test_the_same_run_on_an_acked_channel_violates_causal_order(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    report, _ = run(tmp_path, members, key_dir("a", "b", "c"), "log:1:acked", actors=4, count=250)
    assert report.causal_violations, "the delays must let B's forwards overtake A's own messages"
    assert not report.lost and not report.duplicated and not report.out_of_order


@pytest.mark.timeout(150)
def test_causal_order_holds_over_transitive_relays(
    members: Callable[..., NodeProcess], key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    """A static chain A - B - C without connect-on-use: A reaches C only through B's relay."""
    base = ("--manager", "static", "--set", "connect_on_use=false")
    report, stats = run(
        tmp_path, members, key_dir("a", "b", "c"), "log:1:causal", actors=2, count=500,
        base=base, transitive=True, delay_on="b",
    )  # fmt: skip
    assert report.ok, report.violations[:10]
    assert report.received == 3_000
    assert stats["causal_held"] > 0 and stats["causal_released"] == 0

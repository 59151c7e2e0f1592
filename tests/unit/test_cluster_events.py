"""`events`: merging, tailing and summarising the per-node JSON-lines event logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from partisan.cluster.events import (
    follow_events,
    format_event,
    last_repair_s,
    load_events,
    read_events,
)


def rec(second: float, node: str, event: str, peer: str | None = None, **extra) -> dict:
    whole, frac = divmod(second, 1)
    minute, sec = divmod(int(whole), 60)
    ts = f"2026-12-02T19:{minute:02d}:{sec:02d}.{round(frac * 1e6):06d}Z"
    return {
        "ts": ts,
        "mono": second,
        "node": node,
        "incarnation": 1,
        "event": event,
        "peer": peer,
        "peer_incarnation": None,
        "reason": None,
        **extra,
    }


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def write(path: Path, *records: dict, tail: str = "") -> None:
    append(path, "".join(json.dumps(r) + "\n" for r in records) + tail)


# ---------------------------------------------------------------- read_events


def test_read_merges_by_time_and_keeps_file_order_for_ties(tmp_path: Path) -> None:
    a, b = tmp_path / "n1.jsonl", tmp_path / "n2.jsonl"
    write(a, rec(1, "n1", "node.start"), rec(3, "n1", "peer.up", "n2"), rec(3, "n1", "view.active"))
    write(b, rec(2, "n2", "node.start"), rec(3, "n2", "peer.up", "n1"))
    got = [(r["node"], r["event"]) for r in read_events([a, b])]
    assert got == [
        ("n1", "node.start"),
        ("n2", "node.start"),
        ("n1", "peer.up"),
        ("n1", "view.active"),
        ("n2", "peer.up"),
    ]


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "n1.jsonl"
    write(path, rec(1, "n1", "node.start"))
    append(path, 'garbage\n[1, 2]\n{"ts": "yesterday", "event": "x"}\n{"event": "x"}\n\n')
    write(path, rec(2, "n1", "node.stop"), tail='{"ts": "2026-12-02T19:00:0')
    batch = load_events([path, tmp_path / "missing.jsonl"])
    assert [r["event"] for r in batch.records] == ["node.start", "node.stop"]
    assert batch.malformed == 4  # the partial last line is a write in progress, not an error


def test_complete_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "n1.jsonl"
    path.write_text(json.dumps(rec(1, "n1", "node.start")))
    assert [r["event"] for r in read_events([path])] == ["node.start"]


# ---------------------------------------------------------------- follow_events


def test_follow_yields_growth_partial_lines_and_new_files(tmp_path: Path) -> None:
    first = tmp_path / "n1.jsonl"
    write(first, rec(1, "n1", "node.start"))
    steps = [
        lambda: write(first, rec(2, "n1", "peer.up", "n2"), tail='{"ts": "2026-12-02T19:00:03'),
        lambda: append(first, '.000000Z", "node": "n1", "event": "view.active"}\n'),
        lambda: write(tmp_path / "n2.jsonl", rec(4, "n2", "node.start")),
    ]
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # each poll's wait makes the next change
        waits.append(seconds)
        if steps:
            steps.pop(0)()

    events = follow_events(tmp_path, poll=0.5, sleep=sleep)
    got = [(r["node"], r["event"]) for r in (next(events) for _ in range(4))]
    assert got == [
        ("n1", "node.start"),
        ("n1", "peer.up"),
        ("n1", "view.active"),
        ("n2", "node.start"),
    ]
    assert waits == [0.5, 0.5, 0.5]


def test_follow_named_files_from_end_and_rewritten_file(tmp_path: Path) -> None:
    path, later = tmp_path / "n1.jsonl", tmp_path / "n2.jsonl"
    write(path, rec(1, "n1", "node.start"))
    steps = [
        lambda: write(later, rec(2, "n2", "node.start")),  # appears later: read from start
        lambda: path.write_text(json.dumps({"ts": rec(9, "n1", "x")["ts"], "event": "x"}) + "\n"),
    ]
    events = follow_events([path, later], from_start=False, sleep=lambda _: steps.pop(0)())
    assert next(events)["node"] == "n2"
    assert next(events)["event"] == "x"  # the file shrank: rewritten, read from its start


# ---------------------------------------------------------------- format_event


def test_format_event_lines() -> None:
    down = rec(0.1234, "n2", "peer.down", "n5", reason="heartbeat_timeout")
    assert format_event(down) == "19:00:00.123 n2 peer.down n5 (heartbeat_timeout)"
    view = rec(61.5, "n1", "view.active", view=["n2", "n3"], added=["n3"], removed=["n4"])
    assert format_event(view) == "19:01:01.500 n1 view.active +n3 -n4"
    start = rec(0, "n1", "node.start", address="127.0.0.1:40001")
    assert format_event(start) == "19:00:00.000 n1 node.start @127.0.0.1:40001"


# ---------------------------------------------------------------- last_repair_s


def test_no_episode_without_peer_down() -> None:
    boot = [rec(0, "n1", "peer.up", "n2"), rec(0.2, "n1", "view.active")]
    assert last_repair_s(boot, converged_now=True) is None


def test_deliberate_disconnects_do_not_open_a_repair() -> None:
    # HyParView drops a peer from a full active view while a cluster forms:
    # "disconnected", not a failure; a node leaving is not one either.
    churn = [
        rec(0, "n1", "peer.down", "n8", reason="disconnected"),
        rec(0.1, "n1", "view.active"),
        rec(0.5, "n2", "peer.down", "n3", reason="left"),
    ]
    assert last_repair_s(churn, converged_now=True) is None
    crash = [
        *churn,
        rec(5.0, "n1", "peer.down", "n4", reason="connection_closed"),
        rec(5.4, "n2", "view.active"),
    ]
    assert last_repair_s(crash, converged_now=True) == pytest.approx(0.4)


def test_repair_from_first_down_to_last_topology_event() -> None:
    records = [
        rec(0, "n1", "peer.up", "n2"),
        rec(10.0, "n1", "peer.down", "n4"),
        rec(10.2, "n2", "peer.down", "n4"),
        rec(10.3, "n2", "peer.join", "n9"),  # not a topology event
        rec(10.6, "n3", "view.active"),
    ]
    assert last_repair_s(records, converged_now=True) == pytest.approx(0.6)
    assert last_repair_s(records, converged_now=False) is None  # still repairing


def test_latest_episode_wins_and_quiet_gap_closes_an_episode() -> None:
    records = [
        rec(10.0, "n1", "peer.down", "n4"),
        rec(11.0, "n1", "view.active"),
        rec(20.0, "n2", "view.active"),  # after a quiet gap, no episode open: ignored
        rec(30.0, "n1", "peer.down", "n5"),
        rec(32.5, "n1", "peer.up", "n6"),
        rec(34.0, "n3", "view.active"),
    ]
    assert last_repair_s(records, converged_now=True) == pytest.approx(4.0)
    assert last_repair_s(records, converged_now=True, quiet=1.0) == pytest.approx(0.0)
    assert last_repair_s(records[:3], converged_now=True) == pytest.approx(1.0)

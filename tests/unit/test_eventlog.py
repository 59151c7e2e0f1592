"""The event log writer: record shape, append-only lines, never raising, view diffs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from partisan.eventlog import (
    EventLog,
    ViewTracker,
    leave_reasons,
    open_event_log,
    utc_timestamp,
)
from partisan.identity import NodeSpec

KEYS = {"ts", "mono", "node", "incarnation", "event", "peer", "peer_incarnation", "reason"}


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spec(name: str, incarnation: int = 7) -> NodeSpec:
    return NodeSpec(name, "127.0.0.1", 1, incarnation=incarnation)


def test_every_record_has_the_common_keys_and_its_extras(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), "n1", 42)
    before = time.monotonic()
    log.write("node.start", address="127.0.0.1:5000", manager="hyparview", role=None, os_pid=9)
    log.write("peer.down", peer="n2", peer_incarnation=5, reason="heartbeat_timeout")
    log.close()
    start, down = records(path)
    assert set(start) == KEYS | {"address", "manager", "role", "os_pid"}
    assert start["node"] == "n1" and start["incarnation"] == 42 and start["event"] == "node.start"
    assert start["peer"] is None and start["peer_incarnation"] is None and start["reason"] is None
    assert start["address"] == "127.0.0.1:5000" and start["role"] is None
    assert set(down) == KEYS
    assert (down["peer"], down["peer_incarnation"], down["reason"]) == (
        "n2",
        5,
        "heartbeat_timeout",
    )
    assert before <= start["mono"] <= down["mono"] <= time.monotonic()  # type: ignore[operator]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(start["ts"]))


def test_the_log_appends_and_each_record_is_on_disk_before_write_returns(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "earlier"}\n')
    log = EventLog(str(path), "n1", 1)
    log.write("peer.up", peer="n2")
    # No close: what a SIGKILLed node leaves behind must already be complete lines.
    assert [r["event"] for r in records(path)] == ["earlier", "peer.up"]
    log.close()
    log.write("peer.up", peer="n3")  # after close: ignored, no exception
    assert len(records(path)) == 2


def test_an_unwritable_path_disables_the_log_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "events.jsonl"
    assert open_event_log(str(missing), "n1", 1) is None
    log = EventLog(str(missing), "n1", 1)
    assert not log.enabled
    log.write("peer.up", peer="n2")
    assert "event log" in caplog.text and not missing.exists()
    assert open_event_log(None, "n1", 1) is None


def test_a_write_error_is_logged_once_and_the_log_goes_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = EventLog(str(tmp_path / "e.jsonl"), "n1", 1)
    log.close()  # swap in a file that fails like a full disk

    class Broken:
        def write(self, _: str) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    log._file = Broken()  # type: ignore[assignment]
    log.write("peer.up", peer="a")
    log.write("peer.up", peer="b")
    assert not log.enabled
    assert caplog.text.count("No space left on device") == 1


def test_utc_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    assert utc_timestamp(0.5) == "1970-01-01T00:00:00.500000Z"


def test_view_tracker_records_joins_leaves_with_reasons_and_view_diffs(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), "n1", 1)
    views = ViewTracker(log, "n1")
    views.members_changed([spec("n1"), spec("n2", 20), spec("n3", 30)])
    views.views_changed([spec("n3"), spec("n2")], [])
    views.views_changed([spec("n2"), spec("n3")], [])  # same names, other order: nothing
    views.members_changed([spec("n1"), spec("n2", 20), spec("n3", 30)])  # unchanged: nothing
    views.members_changed([spec("n1"), spec("n2", 20)], {"n3": "heartbeat_timeout"})
    views.views_changed([spec("n2")], [spec("n3")])
    log.close()
    got = [(r["event"], r["peer"], r["peer_incarnation"], r["reason"]) for r in records(path)]
    assert got == [
        ("peer.join", "n2", 20, None),
        ("peer.join", "n3", 30, None),
        ("view.active", None, None, None),
        ("peer.leave", "n3", 30, "heartbeat_timeout"),
        ("view.active", None, None, None),
        ("view.passive", None, None, None),
    ]
    diffs = [(r["view"], r["added"], r["removed"]) for r in records(path) if "view" in r]
    assert diffs == [
        (["n2", "n3"], ["n2", "n3"], []),
        (["n2"], [], ["n3"]),
        (["n3"], ["n3"], []),
    ]


def test_leave_reasons_prefer_the_event_over_the_managers_disconnects() -> None:
    from partisan.membership.types import Disconnect, DisconnectReason, Leave, PeerDown

    a, b = spec("a"), spec("b")
    drops = [Disconnect(a, DisconnectReason.FAILED), Disconnect(b, DisconnectReason.VIEW_CHANGE)]
    assert leave_reasons(PeerDown(a, "heartbeat_timeout"), drops, ()) == {
        "a": "heartbeat_timeout",
        "b": "view_change",
    }
    assert leave_reasons(Leave(b), [], ()) == {"b": "left"}
    assert leave_reasons(Leave(), [], ("n1", "a")) == {"n1": "left", "a": "left"}

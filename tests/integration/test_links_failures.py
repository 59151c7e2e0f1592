"""Failure detection and sessions: kill -9, SIGSTOP/SIGCONT, no frame of an old session."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.testing import NodeProcess, detection_deadline, wait_until


def _downs(node: NodeProcess, peer: str) -> list[dict[str, Any]]:
    return [
        e for e in node.request("events")["events"] if e["event"] == "down" and e["peer"] == peer
    ]


def _ups(node: NodeProcess, peer: str) -> list[dict[str, Any]]:
    return [e for e in node.request("events")["events"] if e["event"] == "up" and e["peer"] == peer]


@pytest.mark.timeout(30)
def test_kill_9_is_reported_within_heartbeat_timeout_plus_1s(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    keys = key_dir("a", "b")
    deadline = detection_deadline(Config(**fast_heartbeats))
    a = node_factory("a", keys=keys, settings=fast_heartbeats)
    b = node_factory("b", keys=keys, settings=fast_heartbeats)
    a.request("connect", target=str(b.spec))
    killed_at = time.monotonic()  # CLOCK_MONOTONIC is one clock for every process
    b.kill()
    down = wait_until(lambda: _downs(a, "b"), deadline, message="a to report b down")[0]
    assert down["t"] - killed_at <= deadline
    assert down["reason"] in ("connection_closed", "heartbeat_timeout")
    assert a.request("stats")["stats"]["peers"][0]["connected"] is False


def _idle_pair(
    node_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path], settings: dict
) -> dict[str, NodeProcess]:
    """Nodes a and b linked (a dialled b; b dialled back)."""
    keys = key_dir("a", "b")
    a = node_factory("a", keys=keys, settings=settings)
    b = node_factory("b", keys=keys, settings=settings)
    a.request("connect", target=str(b.spec))
    wait_until(lambda: _ups(a, "b") and _ups(b, "a"), 5, message="the session")
    return {"a": a, "b": b}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("killed", ["a", "b"])
def test_kill_9_of_an_idle_peer_is_connection_closed_not_heartbeat_timeout(
    killed: str,
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    """Idle links carry no PINGs; either end tells a crash from a freeze by its connections."""
    config = Config(**fast_heartbeats)
    nodes = _idle_pair(node_factory, key_dir, fast_heartbeats)
    watcher = nodes["b" if killed == "a" else "a"]
    idle = config.heartbeat_timeout + config.heartbeat_interval
    time.sleep(idle)  # ok-sleep: idle past the allowance is the setup
    nodes[killed].kill()
    down = wait_until(
        lambda: _downs(watcher, killed), detection_deadline(config), message="the crash"
    )[0]
    assert down["reason"] == "connection_closed"


@pytest.mark.timeout(40)
@pytest.mark.parametrize("frozen", ["a", "b"])
def test_a_frozen_peer_is_found_from_either_end_of_an_idle_link(
    frozen: str,
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    """Either end finds the other frozen, whichever dialled first, with the same reason."""
    config = Config(**fast_heartbeats)
    deadline = detection_deadline(config)
    nodes = _idle_pair(node_factory, key_dir, fast_heartbeats)
    watcher = nodes["b" if frozen == "a" else "a"]
    # libzmq's first PING goes one interval after the handshake.
    time.sleep(2 * config.heartbeat_interval)  # ok-sleep: past the first PING is the setup
    stopped_at = time.monotonic()
    nodes[frozen].signal(signal.SIGSTOP)
    try:
        down = wait_until(lambda: _downs(watcher, frozen), deadline, message="the freeze")[0]
        assert down["t"] - stopped_at <= deadline
        assert down["reason"] == "heartbeat_timeout"
    finally:
        nodes[frozen].signal(signal.SIGCONT)
    # The frozen node, woken, finds the link gone and reports it once, too.
    wait_until(lambda: _downs(nodes[frozen], watcher.name), deadline + 5, message="the other end")


@pytest.mark.timeout(60)
def test_sigstop_is_detected_and_sigcont_brings_a_new_session_without_old_frames(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    keys = key_dir("a", "b")
    deadline = detection_deadline(Config(**fast_heartbeats))
    a = node_factory("a", keys=keys, settings=fast_heartbeats)
    b = node_factory("b", keys=keys, settings=fast_heartbeats)
    a.request("keep_connected", target=str(b.spec))
    wait_until(lambda: _ups(a, "b") and _ups(b, "a"), 5, message="the first session")
    # Both stream, tagging each message with their count of link-ups (= the session).
    a.request("stream", peer="b", interval=0.002)
    b.request("stream", peer="a", interval=0.002)
    wait_until(lambda: a.request("received")["counts"].get("b/default", 0) > 50, 5)

    stopped_at = time.monotonic()
    b.signal(signal.SIGSTOP)
    try:
        down = wait_until(lambda: _downs(a, "b"), deadline, message="a to see b frozen")[0]
        assert down["t"] - stopped_at <= deadline
        assert down["reason"] == "heartbeat_timeout"
    finally:
        b.signal(signal.SIGCONT)

    # a keeps re-dialling; after SIGCONT the link comes back as a new session.
    wait_until(lambda: len(_ups(a, "b")) >= 2, deadline + 5, message="a new session")
    wait_until(lambda: len(_ups(b, "a")) >= 2, deadline + 5, message="b to see the new session")

    def new_session_traffic() -> bool:
        tags_at_a = {e[3] for e in a.request("received")["log"] if e[0] == "msg"}
        tags_at_b = {e[3] for e in b.request("received")["log"] if e[0] == "msg"}
        return 2 in tags_at_a and 2 in tags_at_b

    wait_until(new_session_traffic, 10, message="messages of the new session both ways")
    a.request("stop_stream")
    b.request("stop_stream")

    for node, peer in ((a, "b"), (b, "a")):
        received = node.request("received")
        assert received["disorder"] == 0
        log = received["log"]
        # Find where this node saw the old session end: nothing tagged with the
        # old session may be delivered after that point.
        ends = [i for i, entry in enumerate(log) if entry[0] == "down" and entry[1] == peer]
        assert ends, f"{node.name} never saw the old session end: {log}"
        late = [e for e in log[ends[0] :] if e[0] == "msg" and e[1] == peer and e[3] < 2]
        assert not late, (
            f"{node.name} delivered frames of the old session after it ended: {late} {log}"
        )


@pytest.mark.timeout(30)
def test_disconnect_is_not_a_failure_and_a_restart_is_a_new_incarnation(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    keys = key_dir("a", "b")
    deadline = detection_deadline(Config(**fast_heartbeats))
    a = node_factory("a", keys=keys, settings=fast_heartbeats)
    b = node_factory("b", keys=keys, settings=fast_heartbeats)
    a.request("connect", target=str(b.spec))
    a.request("send", peer="b", count=100)
    a.request("disconnect", peer="b")  # flushes, says BYE, no callback on a
    down = wait_until(lambda: _downs(b, "a"), deadline, message="b to see the disconnect")[0]
    assert down["reason"] == "disconnected"
    assert b.request("received")["counts"]["a/default"] == 100
    assert _downs(a, "b") == []

    # b restarts on the same port: a re-dials and meets a new incarnation.
    port = b.address.rsplit(":", 1)[1]
    a.request("keep_connected", target=str(b.spec))
    wait_until(lambda: len(_ups(a, "b")) == 2, deadline, message="the link back")
    b.kill()
    wait_until(lambda: _downs(a, "b"), deadline, message="a to see b die")
    b2 = node_factory("b", "--port", port, keys=keys, settings=fast_heartbeats)
    assert b2.incarnation > b.incarnation
    ups = wait_until(lambda: _ups(a, "b")[2:], deadline + 5, message="a to meet the new b")
    assert ups[0]["incarnation"] == b2.incarnation
    a.request("send", peer="b", count=10)
    wait_until(lambda: b2.request("received")["counts"].get("a/default") == 10, 5)

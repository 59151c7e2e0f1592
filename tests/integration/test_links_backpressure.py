"""Backpressure and frame limits: Overloaded with bounded memory; an oversize frame drops one link."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.testing import NodeProcess, detection_deadline, wait_until

BUDGET = 4 * 1024 * 1024
MESSAGE = 64 * 1024


def _peer_stats(node: NodeProcess, peer: str) -> dict[str, Any]:
    for record in node.request("stats")["stats"]["peers"]:
        if record["name"] == peer:
            return record
    raise AssertionError(f"no statistics for {peer}")


@pytest.mark.timeout(60)
def test_stalled_receiver_makes_sender_overloaded_with_bounded_memory(
    node_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("s", "r")
    s = node_factory("s", keys=keys, settings={"send_buffer_bytes": BUDGET})
    r = node_factory("r", keys=keys)
    s.request("connect", target=str(r.spec))
    r.request("pause_receiving")

    # Without a byte budget, 20,000 x 64 KiB = 1.3 GB would pile up in ZeroMQ.
    result = s.request("overload", peer="r", size=MESSAGE, limit=20_000)
    assert result["overloaded"] is True
    assert BUDGET // MESSAGE - 2 <= result["sent"] <= BUDGET // MESSAGE + 2
    assert result["outstanding"] <= BUDGET + 2 * MESSAGE
    assert result["rss_after"] - result["rss_before"] < 4 * BUDGET

    # Nothing was dropped: once the receiver reads again, every message arrives
    # and the budget drains back to zero.
    r.request("resume_receiving")
    wait_until(lambda: r.request("received")["counts"].get("s/default") == result["sent"], 10)
    wait_until(lambda: _peer_stats(s, "r")["outstanding_bytes"] == 0, 5)
    # send_wait (wait=True) rides the budget instead of failing.
    r.request("pause_receiving")
    waiting = s.send_command("send", peer="r", count=2 * BUDGET // MESSAGE, size=MESSAGE)
    wait_until(lambda: _peer_stats(s, "r")["outstanding_bytes"] >= BUDGET - MESSAGE, 5)
    r.request("resume_receiving")
    assert s.reply(waiting, timeout=20)["sent"] == 2 * BUDGET // MESSAGE
    total = result["sent"] + 2 * BUDGET // MESSAGE
    wait_until(lambda: r.request("received")["counts"].get("s/default") == total, 10)
    assert _peer_stats(s, "r")["dropped"] == 0


@pytest.mark.timeout(60)
def test_oversize_frame_drops_only_that_connection(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    keys = key_dir("v", "big", "ok")
    cap = 64 * 1024
    v = node_factory("v", keys=keys, settings={**fast_heartbeats, "max_frame_bytes": cap})
    big = node_factory("big", keys=keys, settings=fast_heartbeats)  # its own cap is larger
    ok = node_factory("ok", keys=keys, settings=fast_heartbeats)
    big.request("connect", target=str(v.spec))
    ok.request("connect", target=str(v.spec))
    ok.request("stream", peer="v", interval=0.002)
    wait_until(lambda: v.request("received")["counts"].get("ok/default", 0) > 20, 5)

    big.request("send", peer="v", count=1, size=2 * cap)
    deadline = detection_deadline(Config(**fast_heartbeats))
    wait_until(
        lambda: [e for e in big.request("events")["events"] if e["event"] == "down"],
        deadline,
        message="the oversize sender's link to go down",
    )
    # The others keep flowing: ok's link never went down and its stream goes on.
    flowing = v.request("received")["counts"].get("ok/default", 0)
    wait_until(lambda: v.request("received")["counts"]["ok/default"] > flowing + 50, 5)
    assert not [e for e in ok.request("events")["events"] if e["event"] == "down"]
    assert "big/default" not in v.request("received")["counts"]
    ok.request("stop_stream")
    assert v.request("received")["disorder"] == 0

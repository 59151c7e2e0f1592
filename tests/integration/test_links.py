"""Links between real node processes: ordering, counters, hidden nodes, refused joins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.testing import NodeProcess, NodeProcessError, handshake_deadline, wait_until

CHANNELS = "alpha:4,beta:4,gamma:4"
PER_CHANNEL = 10_000
KEYS = 4  # partition keys per channel: 2,500 messages each


def _channel_stats(node: NodeProcess, peer: str) -> dict[str, dict[str, Any]]:
    stats = node.request("stats")["stats"]
    for record in stats["peers"]:
        if record["name"] == peer:
            return {c["channel"]: c for c in record["channels"]}
    raise AssertionError(f"{node.name} has no statistics for {peer}: {stats}")


@pytest.mark.timeout(90)
def test_two_nodes_exchange_10000_messages_per_channel_in_order(
    node_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("a", "b")
    a = node_factory("a", "--channels", CHANNELS, keys=keys)
    b = node_factory("b", "--channels", CHANNELS, keys=keys)
    a.request("connect", target=str(b.spec))
    # Both directions at once, every channel, four partition keys each.
    pending = []
    for sender, receiver in ((a, b), (b, a)):
        for channel in ("alpha", "beta", "gamma"):
            for key in range(KEYS):
                pending.append(
                    (
                        sender,
                        sender.send_command(
                            "send",
                            peer=receiver.name,
                            channel=channel,
                            count=PER_CHANNEL // KEYS,
                            key=key,
                        ),
                    )
                )
    for sender, ident in pending:
        assert sender.reply(ident, timeout=60)["sent"] == PER_CHANNEL // KEYS

    for sender, receiver in ((a, b), (b, a)):
        expected = {f"{sender.name}/{ch}": PER_CHANNEL for ch in ("alpha", "beta", "gamma")}
        wait_until(
            lambda receiver=receiver, expected=expected: all(  # type: ignore[misc]
                receiver.request("received")["counts"].get(k) == v for k, v in expected.items()
            ),
            timeout=30,
            message=lambda receiver=receiver: f"{receiver.request('received')['counts']}",  # type: ignore[misc]
        )
        received = receiver.request("received")
        assert received["disorder"] == 0, "a sender's messages arrived out of order"
        assert received["gaps"] == 0, "a sender's messages went missing"
        out = _channel_stats(sender, receiver.name)
        into = _channel_stats(receiver, sender.name)
        for channel in ("alpha", "beta", "gamma"):
            assert out[channel]["messages_out"] == PER_CHANNEL
            assert into[channel]["messages_in"] == PER_CHANNEL
            assert out[channel]["bytes_out"] == into[channel]["bytes_in"]


@pytest.mark.timeout(30)
def test_hidden_node_talks_both_ways_and_its_death_is_detected(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    fast_heartbeats: dict[str, float],
) -> None:
    keys = key_dir("v", "h")
    v = node_factory("v", keys=keys, settings=fast_heartbeats)
    h = node_factory("h", "--hidden", keys=keys, settings=fast_heartbeats)
    h.request("connect", target=str(v.spec))
    wait_until(lambda: v.request("events")["events"], 5, message="v to see h")
    up = v.request("events")["events"][0]
    assert (up["event"], up["peer"], up["hidden"]) == ("up", "h", True)
    v.request("send", peer="h", count=500)  # rides v's ROUTER: v never dials a hidden node
    h.request("send", peer="v", count=500)
    wait_until(lambda: h.request("received")["counts"].get("v/default") == 500, 10)
    wait_until(lambda: v.request("received")["counts"].get("h/default") == 500, 10)
    assert v.request("received")["disorder"] == h.request("received")["disorder"] == 0

    deadline = fast_heartbeats["heartbeat_timeout"] + 1.0
    h.kill()
    wait_until(
        lambda: [e for e in v.request("events")["events"] if e["event"] == "down"],
        deadline,
        message="v to report the hidden node down",
    )


@pytest.mark.timeout(30)
def test_refused_joins_say_why_and_crash_nothing(
    node_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("a", "b", "c")
    a = node_factory("a", keys=keys)
    b = node_factory("b", keys=keys)
    other = node_factory("o", "--manager", "hyparview", keys=key_dir("o", "a2"))

    with pytest.raises(NodeProcessError, match=r"JoinRefused.*self-join"):
        a.request("connect", target=str(a.spec))
    # Partisan #251: the address now answers as another node. CURVE catches it:
    # b does not hold c's key, so the handshake cannot complete.
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*does not hold c's key"):
        a.request("connect", target=f"c@{b.address}")
    # No retry storm (libzmq would retry every 100 ms): the lane was closed and
    # the same dial is refused at once while it is backed off.
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*backing off"):
        a.request("connect", target=f"c@{b.address}")
    assert a.request("stats")["stats"]["rejected"]["handshake_failed"] == 1
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*no public key for o"):
        a.request("connect", target=str(other.spec))
    # Still serving: a real join works afterwards.
    assert a.request("connect", target=str(b.spec))["peer"] == str(b.spec)


@pytest.mark.timeout(30)
def test_insecure_nodes_refuse_a_wrong_name_and_a_manager_mismatch(
    node_factory: Callable[..., NodeProcess],
) -> None:
    a = node_factory("a")
    b = node_factory("b")
    h = node_factory("h", "--manager", "hyparview")
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*is node 'b', not 'c'"):
        a.request("connect", target=f"c@{b.address}")
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*manager mismatch"):
        a.request("connect", target=str(h.spec))
    assert a.request("connect", target=str(b.spec))["peer"] == str(b.spec)
    assert b.request("stats")["stats"]["refused"] == 1


@pytest.mark.timeout(30)
def test_connect_to_a_silent_address_times_out(
    node_factory: Callable[..., NodeProcess], fast_heartbeats: dict[str, float]
) -> None:
    a = node_factory("a", settings={**fast_heartbeats, "handshake_timeout": 1.0})
    b = node_factory("b")
    b.signal(19)  # SIGSTOP: the port accepts TCP, nobody answers
    try:
        timeout = handshake_deadline(Config(handshake_timeout=1.0)) - 1.0
        with pytest.raises(NodeProcessError, match="CallTimeout"):
            a.request("connect", target=str(b.spec), timeout=timeout)
    finally:
        b.signal(18)  # SIGCONT

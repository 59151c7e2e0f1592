"""A peer's bad bytes never crash a node: garbage at the ROUTER is counted and dropped.

An insecure node (so a raw client can reach its ROUTER at all) is fed
malformed messages — random bytes, truncated and bit-flipped headers, DATA
headers whose lengths lie, frames of sessions that do not exist, HELLOs with
broken greetings — while a real peer keeps sending. The node must survive,
count the rejections, deliver every one of the real peer's messages in order,
and never decode a payload it was not given by a live session.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from partisan.testing import NodeProcess, wait_until
from partisan.transport.lanes import FLAG_INLINE
from partisan.transport.session import Greeting, new_session_id, routing_id
from partisan.transport.wire import WIRE_VERSION, Header, Kind, encode_header

SEED = 20261126


def _garbage(rng: random.Random) -> Iterator[list[bytes]]:
    incarnation = time.time_ns()
    data = encode_header(Header(Kind.DATA, "g", incarnation, "default", "sink", 1, FLAG_INLINE))
    hello = encode_header(Header(Kind.HELLO, "g", incarnation, "membership", "", 0, 0))
    for _ in range(100):
        yield [rng.randbytes(rng.randrange(0, 64))]
    for _ in range(100):  # truncated / bit-flipped DATA headers with an inline payload
        blob = bytearray(data + b"\x80\x05K\x01.")
        if rng.random() < 0.5:
            del blob[rng.randrange(len(blob)) :]
        else:
            blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        yield [bytes(blob)]
    for _ in range(50):  # well-formed DATA of no session, some with many parts
        yield [data + b"\x80\x05K\x01."] + [b"x"] * rng.randrange(0, 4)
    for size in (0, 1, 25, 26):  # headers shorter than their fixed part
        yield [data[:size]]
    good = Greeting(
        "g", incarnation, "full-mesh", WIRE_VERSION, False, "127.0.0.1", 1, None, None, 1, "v"
    )
    yield [hello, b"{not json"]
    yield [hello, good.to_bytes(), b"extra part"]
    yield [hello]
    yield [hello, rng.randbytes(5000)]


def _dropped(node: NodeProcess) -> int:
    stats = node.request("stats")["stats"]
    return int(sum(stats["rejected"].values()) + stats["refused"])


@pytest.mark.timeout(60)
def test_garbage_at_the_router_is_counted_and_the_node_keeps_serving(
    node_factory: Callable[..., NodeProcess],
) -> None:
    v = node_factory("v")
    a = node_factory("a")
    a.request("connect", target=str(v.spec))
    a.request("stream", peer="v", interval=0.002)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sent = 0
    try:
        rng = random.Random(SEED)
        for _ in range(3):  # fresh connections: a new routing id each time
            raw = context.socket(zmq.DEALER)
            raw.setsockopt(zmq.LINGER, 0)
            raw.setsockopt(zmq.ROUTING_ID, routing_id(new_session_id(), 0))
            raw.connect(f"tcp://{v.address}")
            for message in _garbage(rng):
                raw.send_multipart(message)
                sent += 1
            # Every garbage message is counted at least once (some, like a
            # HELLO that does not parse, are also refused).
            wait_until(
                lambda expected=sent: _dropped(v) >= expected,  # type: ignore[misc]
                10,
                message=lambda: f"garbage to be counted: {v.request('stats')['stats']}",
            )
            raw.close()
    finally:
        context.destroy(linger=0)
    a.request("stop_stream")
    counts = v.request("received")
    assert counts["disorder"] == 0 and counts["gaps"] == 0
    assert set(counts["counts"]) == {"a/default"}  # nothing else was delivered
    stats = v.request("stats")["stats"]
    assert stats["decoded"] == counts["counts"]["a/default"]
    assert v.proc.poll() is None  # still running
    assert a.request("events")["events"][-1]["event"] == "up"  # a's link never dropped

"""The pure parts of the links: lane choice, byte budget, monotonic queue, sessions, handshake checks."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partisan.errors import ProtocolError
from partisan.transport.backpressure import ByteBudget, LaneQueue, Pending
from partisan.transport.lanes import lane_for
from partisan.transport.session import (
    Greeting,
    InboundLane,
    SeqVerdict,
    decode_refusal,
    encode_refusal,
    new_session_id,
    parse_routing_id,
    refusal,
    routing_id,
)
from partisan.transport.wire import WIRE_VERSION

# ---------------------------------------------------------------- lanes


def test_lane_is_crc32_of_the_key_repr_modulo_parallelism() -> None:
    key = ("pid", 42)
    assert lane_for(key, 4) == zlib.crc32(repr(key).encode()) % 4
    assert lane_for(key, 1) == 0
    assert lane_for(None, 1) == 0


@given(st.one_of(st.integers(), st.text(), st.tuples(st.text(), st.integers())), st.integers(1, 64))
def test_lane_choice_is_stable_and_in_range(key: object, parallelism: int) -> None:
    lane = lane_for(key, parallelism)
    assert 0 <= lane < parallelism
    assert lane == lane_for(key, parallelism)  # no per-process salt, unlike hash()


def test_different_keys_spread_over_lanes() -> None:
    assert len({lane_for(f"sender-{i}", 4) for i in range(100)}) == 4


# ---------------------------------------------------------------- byte budget


def test_budget_admits_until_full_then_credit_makes_room() -> None:
    budget = ByteBudget(1000)
    assert budget.admits(600)
    budget.sent += 600
    assert budget.admits(400)
    assert not budget.admits(401)
    assert budget.credit(500)
    assert budget.outstanding == 100
    assert budget.admits(900)


def test_an_empty_budget_admits_a_message_bigger_than_the_whole_budget() -> None:
    budget = ByteBudget(1000)
    assert budget.admits(5000)
    budget.sent += 5000
    assert not budget.admits(1)


def test_credits_are_cumulative_so_stale_or_excess_ones_are_harmless() -> None:
    budget = ByteBudget(1000)
    budget.sent = 800
    assert budget.credit(500)
    assert not budget.credit(300)  # an older credit, reordered
    assert budget.acked == 500
    assert budget.credit(10_000)  # a peer cannot credit what we never sent
    assert budget.acked == 800
    assert budget.outstanding == 0


def test_a_replaced_message_frees_its_bytes_for_the_admission() -> None:
    budget = ByteBudget(1000)
    budget.queued = 900
    assert not budget.admits(300)
    assert budget.admits(300, freed=200)


# ---------------------------------------------------------------- lane queue


def _msg(dest: str, size: int = 10) -> Pending:
    return Pending("ch", dest, 0, [b"x" * size], size)


def test_fifo_queue_keeps_every_message_in_order() -> None:
    queue = LaneQueue()
    for dest in ("a", "b", "a"):
        assert queue.push(_msg(dest)) == 0
    assert [queue.pop().dest for _ in range(3)] == ["a", "b", "a"]
    assert not queue
    assert queue.bytes == 0


def test_monotonic_queue_keeps_only_the_newest_message_per_destination() -> None:
    queue = LaneQueue(monotonic=True)
    queue.push(_msg("a", 10))
    queue.push(_msg("b", 20))
    assert queue.replaces("a") == 10
    newer = _msg("a", 30)
    assert queue.push(newer) == 10
    assert len(queue) == 2
    assert queue.bytes == 50
    assert queue.replaced == 1
    assert queue.pop().dest == "b"  # the newer "a" moved to the back
    assert queue.pop() is newer


def test_clearing_a_queue_reports_what_was_dropped() -> None:
    queue = LaneQueue()
    queue.push(_msg("a", 5))
    queue.push(_msg("b", 7))
    assert queue.clear() == (2, 12)
    assert len(queue) == 0


# ---------------------------------------------------------------- sessions


def test_routing_ids_round_trip_and_foreign_ids_are_not_ours() -> None:
    session = new_session_id()
    rid = routing_id(session, 7)
    assert rid[0] != 0  # libzmq reserves routing ids starting with a zero byte
    assert parse_routing_id(rid) == (session, 7)
    assert parse_routing_id(b"\x00abc") is None
    assert parse_routing_id(b"Q" + rid[1:]) is None


def test_session_ids_are_random_and_non_zero() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert 0 not in ids


def test_inbound_lane_accepts_the_next_seq_drops_duplicates_and_flags_gaps() -> None:
    lane = InboundLane()
    assert lane.check(1) is SeqVerdict.OK
    assert lane.check(2) is SeqVerdict.OK
    assert lane.check(2) is SeqVerdict.DUPLICATE
    assert lane.check(1) is SeqVerdict.DUPLICATE
    assert lane.check(4) is SeqVerdict.GAP
    assert lane.expected == 3  # a gap does not move the lane on


def _greeting(**changes: object) -> Greeting:
    fields: dict[str, object] = {
        "name": "a",
        "incarnation": 10,
        "manager": "full-mesh",
        "wire_version": WIRE_VERSION,
        "hidden": False,
        "host": "127.0.0.1",
        "port": 9100,
        "role": None,
        "public_key": None,
        "session": 99,
        "target": "b",
        "reply_to": None,
    }
    fields.update(changes)
    return Greeting(**fields)  # type: ignore[arg-type]


def test_greeting_round_trips_through_json() -> None:
    hello = _greeting(role="server", reply_to=5)
    assert Greeting.from_bytes(hello.to_bytes()) == hello
    assert hello.spec().name == "a" and hello.spec().incarnation == 10


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"name": "a"}',
        _greeting().to_bytes().replace(b'"port":9100', b'"port":"x"'),
        _greeting().to_bytes().replace(b'"name":"a"', b'"name":"bad name!"'),
        _greeting().to_bytes().replace(b'"hidden":false', b'"hidden":1'),
        _greeting().to_bytes().replace(b'"port":9100', b'"port":70000'),
        b"{" + b" " * 5000 + b"}",
    ],
)
def test_malformed_greetings_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Greeting.from_bytes(data)


@given(st.binary(max_size=300))
def test_greeting_decoder_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        Greeting.from_bytes(data)


def _refusal(hello: Greeting, *, key_owner: str | None = "a", secure: bool = True) -> str | None:
    return refusal(
        hello,
        local_name="b",
        local_incarnation=20,
        local_manager="full-mesh",
        wire_version=WIRE_VERSION,
        key_owner=key_owner,
        secure=secure,
    )


def test_a_correct_hello_is_accepted() -> None:
    assert _refusal(_greeting()) is None
    assert _refusal(_greeting(), key_owner=None, secure=False) is None


@pytest.mark.parametrize(
    ("hello", "key_owner", "expected"),
    [
        (_greeting(wire_version=WIRE_VERSION + 1), "a", "wire version mismatch"),
        (_greeting(), None, "not listed"),
        (_greeting(), "m", "belongs to 'm', not to 'a'"),
        (_greeting(name="b", incarnation=20, target="b"), "b", "self-join"),
        (_greeting(name="b", incarnation=21, target="b"), "b", "name clash"),
        (_greeting(target="c"), "a", "this address is node 'b', not 'c'"),
        (_greeting(manager="hyparview"), "a", "manager mismatch"),
    ],
)
def test_bad_hellos_are_refused_with_a_reason(
    hello: Greeting, key_owner: str | None, expected: str
) -> None:
    reason = _refusal(hello, key_owner=key_owner)
    assert reason is not None and expected in reason


@pytest.mark.parametrize(
    ("peer_role", "local_role", "hidden", "expected"),
    [
        ("client", "client", False, "client-client join"),
        ("client", "server", False, None),
        ("server", "client", False, None),
        (None, "client", False, None),  # no role counts as a server
        ("client", "client", True, None),  # a hidden tool never enters a view
        ("boss", "server", False, "unknown role 'boss'"),
    ],
)
def test_client_server_refuses_client_client_joins_at_hello(
    peer_role: str | None, local_role: str, hidden: bool, expected: str | None
) -> None:
    reason = refusal(
        _greeting(manager="client-server", role=peer_role, hidden=hidden),
        local_name="b",
        local_incarnation=20,
        local_manager="client-server",
        wire_version=WIRE_VERSION,
        key_owner="a",
        secure=True,
        local_role=local_role,
    )
    assert reason == expected if expected is None else expected in str(reason)


def test_a_hidden_peer_or_a_hidden_listener_is_exempt_from_the_manager_check() -> None:
    # An observer (hidden, default manager) may watch a cluster of any manager.
    assert _refusal(_greeting(manager="hyparview", hidden=True)) is None
    as_hidden = refusal(
        _greeting(manager="hyparview"),
        local_name="b",
        local_incarnation=20,
        local_manager="full-mesh",
        wire_version=WIRE_VERSION,
        key_owner="a",
        secure=True,
        local_hidden=True,
    )
    assert as_hidden is None
    # The exemption is only for the manager: a hidden peer's key is still checked.
    reason = _refusal(_greeting(manager="hyparview", hidden=True), key_owner="m")
    assert reason is not None and "belongs to 'm'" in reason


def test_refusal_payload_round_trips() -> None:
    assert decode_refusal(encode_refusal("because", 7)) == ("because", 7)
    with pytest.raises(ProtocolError):
        decode_refusal(b'{"reason": 1}')

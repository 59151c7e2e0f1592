"""Static manager, h11 style: one event in, the exact list of actions out."""

from __future__ import annotations

import random

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.static import (
    CONNECT_TIMER,
    JoinRefusal,
    JoinRequest,
    LeaveNotice,
    Refresh,
    Static,
)
from partisan.membership.types import (
    Connect,
    Disconnect,
    DisconnectReason,
    Join,
    Leave,
    Manager,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)

CONFIG = Config(connection_interval=0.5)
LEFT = DisconnectReason.LEFT


def spec(name: str, incarnation: int = 1) -> NodeSpec:
    return NodeSpec(name, "127.0.0.1", 9000 + ord(name[0]), incarnation=incarnation)


A, B, C = spec("a"), spec("b"), spec("c")


def static(me: NodeSpec) -> Static:
    return Static(me, CONFIG, random.Random(1))


def joined(me: NodeSpec, *peers: NodeSpec) -> Static:
    node = static(me)
    for p in peers:
        node.handle(Join(p), 0.0)
    return node


def test_is_a_manager_and_starts_alone() -> None:
    a = static(A)
    assert isinstance(a, Manager)
    assert a.name == "static"
    assert a.members() == (A,) and a.active() == () and a.passive() == ()
    assert a.start(3.0) == [SetTimer(CONNECT_TIMER, 3.5)]


def test_join_adds_the_contact_at_once_and_asks_it_to_add_us() -> None:
    a = static(A)
    assert a.handle(Join(B), 0.0) == [Connect(B), Send(B, JoinRequest()), MembersChanged((A, B))]
    assert a.active() == (B,)


def test_join_self_is_our_misuse() -> None:
    with pytest.raises(ValueError, match="cannot join self"):
        static(A).handle(Join(A), 0.0)


def test_joins_are_symmetric() -> None:
    b = static(B)
    assert b.handle(Received(A, JoinRequest()), 0.0) == [Connect(A), MembersChanged((A, B))]
    assert b.handle(Received(A, JoinRequest()), 0.0) == []


def test_no_gossip_a_peer_of_a_peer_is_not_a_member() -> None:
    """Partisan test 30: C joined to B does not appear at A."""
    a, b = joined(A, B), static(B)
    b.handle(Received(A, JoinRequest()), 0.0)
    b.handle(Received(C, JoinRequest()), 0.0)
    assert b.members() == (A, B, C)
    assert a.members() == (A, B)


def test_crashed_member_is_redialled_and_refreshed_when_back() -> None:
    a = joined(A, B, C)
    assert a.handle(PeerUp(B), 0.0) == [Send(B, Refresh())]
    assert a.handle(PeerUp(C), 0.0) == [Send(C, Refresh())]
    assert a.handle(PeerDown(B, "heartbeat_timeout"), 1.0) == []
    assert a.members() == (A, B, C)
    assert a.handle(TimerFired(CONNECT_TIMER), 1.0) == [Connect(B), SetTimer(CONNECT_TIMER, 1.5)]


def test_restarted_peer_replaces_its_old_spec_and_relearns_us() -> None:
    a = joined(A, B)
    b2 = spec("b", incarnation=2)
    assert a.handle(PeerUp(b2), 0.0) == [Send(b2, Refresh()), MembersChanged((A, b2))]
    fresh_b = static(b2)  # lost its state in the restart
    assert fresh_b.handle(Received(A, Refresh()), 0.0) == [Connect(A), MembersChanged((A, b2))]
    # The old incarnation's late traffic changes nothing.
    assert a.handle(PeerUp(B), 0.0) == []
    assert a.handle(Received(B, LeaveNotice()), 0.0) == []
    assert a.members() == (A, b2)


def test_self_leave_tells_every_member() -> None:
    a = joined(A, B, C)
    assert a.handle(Leave(), 0.0) == [
        Send(B, LeaveNotice()),
        Send(C, LeaveNotice()),
        Disconnect(B, LEFT),
        Disconnect(C, LEFT),
        MembersChanged((A,)),
    ]
    assert a.left and a.members() == (A,)
    assert a.handle(Leave(), 0.0) == []
    # A stale refresh does not pull the left node back; the sender is told.
    assert a.handle(Received(B, Refresh()), 0.0) == [Send(B, LeaveNotice())]
    assert a.members() == (A,)


def test_leave_notice_removes_the_sender_and_blocks_its_stale_refresh() -> None:
    b = static(B)
    b.handle(Received(A, JoinRequest()), 0.0)
    assert b.handle(Received(A, LeaveNotice()), 0.0) == [Disconnect(A, LEFT), MembersChanged((B,))]
    assert b.handle(Received(A, Refresh()), 0.0) == [Send(A, LeaveNotice())]
    assert b.members() == (B,)
    # An explicit join is always honoured.
    assert b.handle(Received(A, JoinRequest()), 0.0) == [Connect(A), MembersChanged((A, B))]


def test_leave_other_is_symmetric() -> None:
    a = joined(A, B, C)
    assert a.handle(Leave(B), 0.0) == [
        Send(B, LeaveNotice()),
        Disconnect(B, LEFT),
        MembersChanged((A, C)),
    ]
    assert a.handle(Leave(B), 0.0) == []
    assert a.handle(Received(B, Refresh()), 0.0) == [Send(B, LeaveNotice())]


def test_refresh_from_an_unknown_node_is_the_restart_case() -> None:
    b = static(B)
    assert b.handle(Received(A, Refresh()), 0.0) == [Connect(A), MembersChanged((A, B))]
    assert b.handle(Received(A, Refresh()), 0.0) == []


def test_rejoin_after_leave() -> None:
    a = joined(A, B)
    a.handle(Leave(), 0.0)
    assert a.handle(Join(B), 1.0) == [Connect(B), Send(B, JoinRequest()), MembersChanged((A, B))]
    assert not a.left


def test_bad_messages_are_counted_and_dropped() -> None:
    a = joined(A, B)
    assert a.handle(Received(B, object()), 0.0) == []
    assert a.statistics().rejected == 1
    assert a.members() == (A, B)
    assert a.handle(TimerFired("nope"), 0.0) == []


def test_refusal_missing_its_reason_still_drops_the_contact() -> None:
    a = joined(A, B)
    hollow = object.__new__(JoinRefusal)  # what a buggy peer's pickle could produce
    assert a.handle(Received(B, hollow), 0.0) == [
        Disconnect(B, DisconnectReason.REFUSED),
        MembersChanged((A,)),
    ]


def test_removed_peer_is_no_longer_dialled() -> None:
    """Partisan #116: after leave(node) the node is not re-dialled."""
    a = joined(A, B)
    a.handle(Leave(B), 0.0)
    assert a.handle(TimerFired(CONNECT_TIMER), 0.5) == [SetTimer(CONNECT_TIMER, 1.0)]

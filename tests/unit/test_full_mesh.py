"""Full-mesh manager, h11 style: one event in, the exact list of actions out."""

from __future__ import annotations

import random

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.full_mesh import (
    CONNECT_TIMER,
    GOSSIP_TIMER,
    Digest,
    FullMesh,
    Gossip,
    digest_of,
)
from partisan.membership.orset import ORSet
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

CONFIG = Config(gossip_interval=2.0, connection_interval=0.5)
LEFT = DisconnectReason.LEFT


def spec(name: str, incarnation: int = 1) -> NodeSpec:
    return NodeSpec(name, "127.0.0.1", 9000 + ord(name[0]), incarnation=incarnation)


A, B, C = spec("a"), spec("b"), spec("c")


def mesh(me: NodeSpec) -> FullMesh:
    return FullMesh(me, CONFIG, random.Random(1))


def deliver(sender: FullMesh, receiver: FullMesh) -> list[object]:
    """Hand `receiver` the state `sender` holds now, as gossip."""
    return list(receiver.handle(Received(sender.self_spec, Gossip(sender.state)), 0.0))


def cluster(*specs: NodeSpec) -> list[FullMesh]:
    """Managers that already share one converged state."""
    nodes = [mesh(s) for s in specs]
    state = ORSet()
    for n in nodes:
        state = state.merge(n.state)
    for n in nodes:
        n.handle(Received(specs[0] if n.self_spec != specs[0] else specs[1], Gossip(state)), 0.0)
    assert all(n.members() == tuple(sorted(specs)) for n in nodes)
    return nodes


def test_is_a_manager_and_starts_alone() -> None:
    a = mesh(A)
    assert isinstance(a, Manager)
    assert a.name == "full-mesh"
    assert a.members() == (A,)
    assert a.active() == () and a.passive() == ()
    assert a.start(10.0) == [SetTimer(GOSSIP_TIMER, 12.0), SetTimer(CONNECT_TIMER, 10.5)]


def test_join_dials_and_sends_state_to_the_contact_at_once() -> None:
    a = mesh(A)
    assert a.handle(Join(B), 0.0) == [Connect(B), Send(B, Gossip(a.state, join=True))]
    assert a.members() == (A,)  # B counts once its state arrives


def test_join_self_is_our_misuse() -> None:
    with pytest.raises(ValueError, match="cannot join self"):
        mesh(A).handle(Join(A), 0.0)


def test_contact_merges_and_answers_the_joiner() -> None:
    a, b = mesh(A), mesh(B)
    actions = deliver(a, b)
    merged = a.state.merge(mesh(B).state)
    assert actions == [Connect(A), Send(A, Gossip(merged, flood=True)), MembersChanged((A, B))]
    assert b.members() == (A, B)


def test_joiner_learns_cluster_and_floods_to_all_but_the_sender() -> None:
    b, _c = cluster(B, C)
    a = mesh(A)
    a.handle(Join(B), 0.0)
    deliver(a, b)  # b now holds {a, b, c}
    actions = deliver(b, a)
    assert actions == [
        Connect(B),
        Connect(C),
        Send(C, Gossip(a.state, flood=True)),
        MembersChanged((A, B, C)),
    ]
    assert a.state == b.state


def test_equal_state_is_the_fixpoint_and_a_stale_sender_gets_a_reply() -> None:
    a, b = cluster(A, B)
    assert deliver(a, b) == []
    stale = mesh(A)  # a's initial state: a subset of b's
    assert b.handle(Received(A, Gossip(stale.state)), 0.0) == [Send(A, Gossip(b.state))]


def test_gossip_timer_sends_a_digest_to_one_member_in_rotation() -> None:
    a, _, _ = cluster(A, B, C)
    digest = Digest(digest_of(a.state))
    rounds = [a.handle(TimerFired(GOSSIP_TIMER), 4.0 + 2 * i) for i in range(3)]
    assert rounds == [
        [Send(B, digest), SetTimer(GOSSIP_TIMER, 6.0)],
        [Send(C, digest), SetTimer(GOSSIP_TIMER, 8.0)],
        [Send(B, digest), SetTimer(GOSSIP_TIMER, 10.0)],
    ]
    # In step, every member hears exactly one digest per round.
    nodes = cluster(A, B, C)
    for _ in range(3):
        heard = [n.handle(TimerFired(GOSSIP_TIMER), 0.0)[0] for n in nodes]
        assert sorted(s.peer.name for s in heard if isinstance(s, Send)) == ["a", "b", "c"]


def test_a_digest_that_differs_is_answered_with_the_whole_state() -> None:
    a, b = cluster(A, B)
    assert b.handle(Received(A, Digest(digest_of(a.state))), 0.0) == []
    stale = mesh(A)
    assert b.handle(Received(A, Digest(digest_of(stale.state))), 0.0) == [Send(A, Gossip(b.state))]
    assert b.handle(Received(A, Digest(b"short")), 0.0) == []
    assert b.statistics().rejected == 1


def test_crashed_member_stays_and_is_redialled() -> None:
    a, _, _ = cluster(A, B, C)
    assert a.handle(PeerUp(B), 0.0) == [Send(B, Gossip(a.state))]
    assert a.handle(PeerUp(C), 0.0) == [Send(C, Gossip(a.state))]
    assert a.handle(PeerDown(C, "connection_closed"), 1.0) == []
    assert a.members() == (A, B, C)
    assert a.handle(TimerFired(CONNECT_TIMER), 1.0) == [Connect(C), SetTimer(CONNECT_TIMER, 1.5)]


def test_peer_up_from_a_stranger_does_nothing() -> None:
    assert mesh(A).handle(PeerUp(B), 0.0) == []


def test_unanswered_contact_is_joined_again_on_the_connection_timer() -> None:
    a = mesh(A)
    a.handle(Join(B), 0.0)
    a.handle(PeerDown(B, "unreachable"), 0.1)
    assert a.handle(TimerFired(CONNECT_TIMER), 0.5) == [
        Send(B, Gossip(a.state, join=True)),
        SetTimer(CONNECT_TIMER, 1.0),
    ]
    assert a.handle(PeerUp(B), 0.6) == [Send(B, Gossip(a.state, join=True))]


def test_removed_contact_is_no_longer_dialled() -> None:
    """Partisan #116: a node removed before it ever connected is not re-dialled."""
    a = mesh(A)
    a.handle(Join(B), 0.0)
    assert a.handle(Leave(B), 0.1) == []
    assert a.handle(TimerFired(CONNECT_TIMER), 0.5) == [SetTimer(CONNECT_TIMER, 1.0)]


def test_self_leave_gossips_removal_then_disconnects_all() -> None:
    a, b, _c = cluster(A, B, C)
    actions = a.handle(Leave(), 0.0)
    removal = b.state.remove_name("a")
    assert actions == [
        Send(B, Gossip(removal)),
        Send(C, Gossip(removal)),
        Disconnect(B, LEFT),
        Disconnect(C, LEFT),
        MembersChanged((A,)),
    ]
    assert a.left and a.members() == (A,)
    assert a.handle(Leave(), 0.0) == []
    assert b.handle(Received(A, Gossip(removal)), 0.0) == [
        Disconnect(A, LEFT),
        Send(C, Gossip(removal, flood=True)),
        MembersChanged((B, C)),
    ]


def test_left_node_ignores_gossip_and_tells_stale_senders_it_left() -> None:
    a, b, _ = cluster(A, B, C)
    a.handle(Leave(), 0.0)
    [reply] = deliver(b, a)  # b never heard of the leave
    assert isinstance(reply, Send) and reply.peer == B
    assert a.members() == (A,)
    assert b.handle(Received(A, reply.msg), 0.0)[-1] == MembersChanged((B, C))
    assert deliver(b, a) == []  # b knows now: nothing more to say
    assert a.handle(TimerFired(GOSSIP_TIMER), 1.0) == [SetTimer(GOSSIP_TIMER, 3.0)]
    assert a.handle(TimerFired(CONNECT_TIMER), 1.0) == [SetTimer(CONNECT_TIMER, 1.5)]


def test_leave_other_removes_it_everywhere_and_stale_gossip_cannot_bring_it_back() -> None:
    a, b, c = cluster(A, B, C)
    stale = c.state
    actions = a.handle(Leave(B), 0.0)
    assert actions == [
        Send(B, Gossip(a.state, flood=True)),
        Send(C, Gossip(a.state, flood=True)),
        Disconnect(B, LEFT),
        MembersChanged((A, C)),
    ]
    # b learns it was removed and leaves itself.
    assert deliver(a, b) == [Disconnect(A, LEFT), Disconnect(C, LEFT), MembersChanged((B,))]
    assert b.left
    deliver(a, c)
    assert c.members() == (A, C)
    # #191: gossip from before the removal changes nothing.
    assert c.handle(Received(B, Gossip(stale)), 0.0) == [Send(B, Gossip(c.state))]
    assert c.members() == (A, C)


def test_leave_of_a_non_member_is_a_no_op() -> None:
    assert mesh(A).handle(Leave(C), 0.0) == []


def test_rejoin_after_leave_restores_membership() -> None:
    a, b = cluster(A, B)
    removal = a.handle(Leave(), 0.0)[0]
    assert isinstance(removal, Send)
    b.handle(Received(A, removal.msg), 0.0)
    assert b.members() == (B,)
    assert a.handle(Join(B), 1.0) == [Connect(B), Send(B, Gossip(a.state, join=True))]
    assert deliver(a, b)[-1] == MembersChanged((A, B))
    deliver(b, a)
    assert a.members() == b.members() == (A, B)


def test_restarted_node_replaces_its_old_spec() -> None:
    """Partisan test 40: no duplicate names after a restart with a new incarnation."""
    a, _ = cluster(A, B)
    b2_spec = spec("b", incarnation=2)
    b2 = mesh(b2_spec)  # fresh state after the restart
    assert a.handle(PeerUp(b2_spec), 0.0) == [Send(b2_spec, Gossip(a.state))]
    actions = deliver(a, b2)
    assert actions == [
        Connect(A),
        Send(A, Gossip(b2.state, flood=True)),
        MembersChanged((A, b2_spec)),
    ]
    assert deliver(b2, a) == [Connect(b2_spec), MembersChanged((A, b2_spec))]
    assert a.members() == (A, b2_spec)


def test_zombie_of_a_restarted_node_leaves() -> None:
    a, b = cluster(A, B)
    b2 = mesh(spec("b", incarnation=2))
    deliver(a, b2)
    deliver(b2, a)
    assert deliver(a, b) == [Disconnect(A, LEFT), MembersChanged((B,))]
    assert b.left


def test_bad_messages_are_counted_and_dropped() -> None:
    a = mesh(A)
    assert a.handle(Received(B, "hello"), 0.0) == []
    assert a.handle(Received(B, Gossip("not a set")), 0.0) == []  # type: ignore[arg-type]
    assert a.statistics().rejected == 2
    assert a.members() == (A,)


def test_unknown_timer_is_ignored() -> None:
    assert mesh(A).handle(TimerFired("nope"), 0.0) == []


def test_left_node_can_be_joined_explicitly_again() -> None:
    a, b = cluster(A, B)
    a.handle(Leave(), 0.0)
    c = mesh(C)
    [_, join] = c.handle(Join(A), 1.0)
    assert isinstance(join, Send) and join.msg == Gossip(c.state, join=True)
    actions = a.handle(Received(C, join.msg), 1.0)
    assert not a.left
    assert actions == [Connect(C), Send(C, Gossip(a.state, flood=True)), MembersChanged((A, C))]
    assert b.members() == (A, B)  # b never heard a's farewell: a stays its crashed member


def test_gossip_missing_its_fields_is_rejected() -> None:
    hollow = object.__new__(Gossip)  # what a buggy peer's pickle could produce
    a = mesh(A)
    assert a.handle(Received(B, hollow), 0.0) == []
    assert a.statistics().rejected == 1


def test_a_flood_that_teaches_everything_is_not_forwarded() -> None:
    a, b = cluster(A, B)
    c = mesh(C)
    deliver(c, a)  # a learns c from c's gossip and floods
    flood = Gossip(a.state, flood=True)
    # b learns c from a's flood, and a sent it to everyone: b only connects.
    assert b.handle(Received(A, flood), 0.0) == [Connect(C), MembersChanged((A, B, C))]
    # The same state sent to b alone (not a flood) is forwarded as before.
    b2 = cluster(A, B)[1]
    actions = b2.handle(Received(A, Gossip(a.state)), 0.0)
    assert Send(C, Gossip(a.state, flood=True)) in actions

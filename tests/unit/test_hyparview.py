"""HyParView handlers in the h11 style: one event in, the exact list of actions out."""

from __future__ import annotations

import random

import pytest

from partisan.config import Config, HyParViewConfig
from partisan.errors import ConfigError
from partisan.identity import NodeSpec
from partisan.membership.hyparview import (
    ESCALATE_AFTER_INTERVALS,
    PROMOTE_TIMER,
    SHUFFLE_TIMER,
    HyParView,
)
from partisan.membership.hyparview_messages import (
    DisconnectNotice,
    ForwardJoin,
    JoinRequest,
    LeaveNotice,
    NeighborNotice,
    NeighborReply,
    NeighborRequest,
    PassiveProbe,
    Priority,
    Shuffle,
    ShuffleReply,
)
from partisan.membership.types import (
    Action,
    CancelTimer,
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

VIEW_CHANGE = DisconnectReason.VIEW_CHANGE
HIGH = NeighborRequest(Priority.HIGH)
LOW = NeighborRequest(Priority.LOW)


def node(name: str, inc: int = 1, role: str | None = None) -> NodeSpec:
    return NodeSpec(name, "10.0.0.1", 4000 + ord(name[0]), role=role, incarnation=inc)


ME = node("m")
A, B, C, N, P, Q, S = (node(x) for x in "abcnpqs")


def make(seed: int = 7, **params: object) -> HyParView:
    """A started manager (its timers armed, as a driver would have it)."""
    config = Config(hyparview=HyParViewConfig(**params))  # type: ignore[arg-type]
    hv = HyParView(ME, config, random.Random(seed))
    hv.start(0.0)
    return hv


def recv(hv: HyParView, sender: NodeSpec, msg: object, now: float = 1.0) -> list[Action]:
    return hv.handle(Received(sender, msg), now)


def with_active(hv: HyParView, *peers: NodeSpec) -> None:
    for peer in peers:
        recv(hv, peer, NeighborNotice())
    assert {p.name for p in hv.active()} >= {p.name for p in peers}


def with_passive(hv: HyParView, *peers: NodeSpec) -> None:
    recv(hv, node("z"), ShuffleReply(tuple(peers)))


def members(*peers: NodeSpec) -> MembersChanged:
    return MembersChanged(tuple(sorted((ME, *peers), key=lambda s: s.name)))


# ---------------------------------------------------------------- lifecycle


def test_is_a_manager_named_hyparview() -> None:
    hv = make()
    assert isinstance(hv, Manager)
    assert hv.name == "hyparview"
    assert hv.members() == (ME,)
    assert hv.active() == () and hv.passive() == ()


def test_start_arms_jittered_shuffle_and_promotion_timers() -> None:
    config = Config(hyparview=HyParViewConfig(shuffle_interval=10.0, random_promotion_interval=5.0))
    actions = HyParView(ME, config, random.Random(1)).start(100.0)
    assert [type(a) for a in actions] == [SetTimer, SetTimer]
    shuffle, promote = actions
    assert isinstance(shuffle, SetTimer) and isinstance(promote, SetTimer)
    assert shuffle.name == SHUFFLE_TIMER and 105.0 <= shuffle.at < 115.0
    assert promote.name == PROMOTE_TIMER and 102.5 <= promote.at < 107.5


def test_too_many_reservations_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="reservations"):
        make(active_size=1, active_min_size=1, reservations=("server", "client"))


def test_join_sends_a_join_request_to_the_contact() -> None:
    assert make().handle(Join(C), 0.0) == [Send(C, JoinRequest())]


def test_join_through_self_raises_and_changes_nothing() -> None:
    hv = make()
    with pytest.raises(ValueError, match="ourselves"):
        hv.handle(Join(ME), 0.0)
    assert hv.handle(TimerFired(PROMOTE_TIMER), 1.0) == [SetTimer(PROMOTE_TIMER, 6.0)]


def test_unknown_event_raises_type_error() -> None:
    with pytest.raises(TypeError, match="not a membership event"):
        make().handle("tick", 0.0)  # type: ignore[arg-type]


def test_peer_up_changes_nothing() -> None:
    assert make().handle(PeerUp(A), 0.0) == []


# ---------------------------------------------------------------- join walk


def test_contact_with_empty_view_takes_the_newcomer() -> None:
    hv = make()
    assert recv(hv, N, JoinRequest()) == [Connect(N), Send(N, NeighborNotice()), members(N)]
    assert hv.members() == (ME, N)
    assert hv.statistics().joins_handled == 1


def test_contact_forwards_the_join_to_every_other_active_peer() -> None:
    hv = make(arwl=6)
    with_active(hv, A, B)
    assert recv(hv, N, JoinRequest()) == [
        Connect(N),
        Send(N, NeighborNotice((A, B))),  # seeds the newcomer's passive view
        Send(A, ForwardJoin(N, 6)),
        Send(B, ForwardJoin(N, 6)),
        members(A, B, N),
    ]


def test_full_contact_evicts_a_peer_to_passive_with_a_disconnect() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert recv(hv, N, JoinRequest()) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, VIEW_CHANGE),
        Connect(N),
        Send(N, NeighborNotice((A,))),
        members(N),
    ]
    assert hv.active() == (N,) and hv.passive() == (A,)
    assert hv.statistics().evictions == 1


def test_repeated_join_is_confirmed_without_a_new_walk() -> None:
    hv = make()
    with_active(hv, A, N)
    assert recv(hv, N, JoinRequest()) == [Send(N, NeighborNotice())]


def test_forward_join_at_ttl_zero_is_accepted() -> None:
    hv = make()
    with_active(hv, A, B)
    assert recv(hv, A, ForwardJoin(N, 0)) == [
        Connect(N),
        Send(N, NeighborNotice()),
        members(A, B, N),
    ]


def test_forward_join_is_accepted_when_the_sender_is_our_only_peer() -> None:
    hv = make()
    with_active(hv, A)
    assert recv(hv, A, ForwardJoin(N, 5)) == [Connect(N), Send(N, NeighborNotice()), members(A, N)]


def test_forward_join_at_prwl_keeps_the_node_passive_and_walks_on() -> None:
    hv = make(arwl=6, prwl=3)
    with_active(hv, A, B)
    assert recv(hv, A, ForwardJoin(N, 3)) == [Send(B, ForwardJoin(N, 2))]
    assert hv.passive() == (N,)
    assert N not in hv.active()


def test_forward_join_above_prwl_only_walks_on() -> None:
    hv = make(arwl=6, prwl=3)
    with_active(hv, A, B)
    assert recv(hv, A, ForwardJoin(N, 5)) == [Send(B, ForwardJoin(N, 4))]
    assert hv.passive() == ()


def test_forward_join_never_walks_back_to_the_newcomer() -> None:
    hv = make(prwl=3)
    with_active(hv, A, N)
    # N is already our neighbor: the walk ends here.
    assert recv(hv, A, ForwardJoin(N, 5)) == []


def test_forward_join_of_ourselves_is_dropped() -> None:
    hv = make()
    with_active(hv, A, B)
    assert recv(hv, A, ForwardJoin(ME, 0)) == []
    assert ME not in hv.active() and ME not in hv.passive()


def test_forward_join_from_a_non_neighbor_is_answered_with_a_disconnect() -> None:
    hv = make()
    with_active(hv, A)
    # S thinks we are its neighbor (it walked the join to us); we are not.
    assert recv(hv, S, ForwardJoin(N, 0)) == [
        Send(S, DisconnectNotice(S.incarnation)),
        Connect(N),
        Send(N, NeighborNotice()),
        members(A, N),
    ]
    assert hv.statistics().asymmetric_probes == 1


# ------------------------------------------------------------ neighborhood


def test_neighbor_notice_must_be_accepted() -> None:
    hv = make()
    assert recv(hv, A, NeighborNotice()) == [Connect(A), members(A)]


def test_neighbor_notice_seeds_the_passive_view() -> None:
    hv = make()
    assert recv(hv, C, NeighborNotice((A, ME, P))) == [Connect(C), members(C)]
    assert hv.passive() == (A, P)


def test_neighbor_notice_when_full_evicts_a_random_peer() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert recv(hv, N, NeighborNotice()) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, VIEW_CHANGE),
        Connect(N),
        members(N),
    ]


def test_low_priority_request_is_accepted_into_a_free_slot() -> None:
    hv = make()
    assert recv(hv, S, LOW) == [Connect(S), Send(S, NeighborReply(True)), members(S)]


def test_low_priority_request_is_refused_when_full() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert recv(hv, S, LOW) == [Send(S, NeighborReply(False))]
    assert hv.active() == (A,) and hv.passive() == (S,)


def test_high_priority_request_is_accepted_even_when_full() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert recv(hv, S, HIGH) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, VIEW_CHANGE),
        Connect(S),
        Send(S, NeighborReply(True)),
        members(S),
    ]


def test_request_from_a_current_neighbor_is_simply_confirmed() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, S)
    assert recv(hv, S, LOW) == [Send(S, NeighborReply(True))]


def test_disconnect_moves_the_peer_to_passive_and_repairs_elsewhere() -> None:
    hv = make()
    with_active(hv, A)
    with_passive(hv, P)
    assert recv(hv, A, DisconnectNotice(ME.incarnation)) == [
        Disconnect(A, VIEW_CHANGE),
        Send(P, HIGH),  # the view is empty: P must take us
        members(),
    ]
    assert set(hv.passive()) == {A, P}


def test_disconnect_repair_uses_low_priority_while_we_have_peers() -> None:
    hv = make()
    with_active(hv, A, B)
    with_passive(hv, P)
    assert recv(hv, A, DisconnectNotice(ME.incarnation)) == [
        Disconnect(A, VIEW_CHANGE),
        Send(P, LOW),
        members(B),
    ]


def test_disconnect_from_a_previous_life_of_the_peer_is_ignored() -> None:
    hv = make()
    a2 = node("a", inc=2)
    with_active(hv, a2)
    assert recv(hv, A, DisconnectNotice(ME.incarnation)) == []  # A is incarnation 1
    assert hv.active() == (a2,)
    assert hv.statistics().stale_ignored == 1


def test_disconnect_meant_for_our_previous_life_is_ignored() -> None:
    hv = make()
    with_active(hv, A)
    assert recv(hv, A, DisconnectNotice(ME.incarnation - 1)) == []
    assert hv.active() == (A,)


def test_newer_incarnation_of_an_active_peer_replaces_the_dead_one() -> None:
    hv = make()
    with_active(hv, A)
    a2 = node("a", inc=2)
    assert recv(hv, a2, NeighborNotice()) == [
        Disconnect(A, DisconnectReason.FAILED),
        Connect(a2),
        members(a2),
    ]


# ------------------------------------------------------------------ repair


def test_failed_active_peer_is_replaced_from_the_passive_view() -> None:
    hv = make()
    with_active(hv, A)
    with_passive(hv, P)
    assert hv.handle(PeerDown(A, "heartbeat_timeout"), 2.0) == [Send(P, HIGH), members()]
    assert recv(hv, P, NeighborReply(True)) == [Connect(P), members(P)]
    assert hv.passive() == ()


def test_refusal_moves_on_to_the_next_passive_peer() -> None:
    hv = make()
    with_active(hv, A, B)
    with_passive(hv, P, Q)
    first = hv.handle(PeerDown(A), 2.0)
    assert first[0] in (Send(P, LOW), Send(Q, LOW))
    asked = first[0].peer  # type: ignore[union-attr]
    other = Q if asked == P else P
    assert recv(hv, asked, NeighborReply(False)) == [Send(other, LOW)]
    # Everyone refused: the round ends until the next trigger.
    assert recv(hv, other, NeighborReply(False)) == []


def test_unreachable_candidate_is_forgotten_and_the_next_one_asked() -> None:
    hv = make()
    with_active(hv, A)
    with_passive(hv, P, Q)
    first = hv.handle(PeerDown(A), 2.0)
    asked = first[0].peer  # type: ignore[union-attr]
    other = Q if asked == P else P
    assert hv.handle(PeerDown(asked, "unreachable"), 2.0) == [Send(other, HIGH)]
    assert hv.passive() == (other,)
    assert hv.statistics().lost == 2  # A and the silent candidate are retried later


def test_accepted_reply_after_we_filled_up_is_undone() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert recv(hv, S, NeighborReply(True)) == [Send(S, DisconnectNotice(S.incarnation))]
    assert hv.active() == (A,) and hv.passive() == (S,)


def test_periodic_promotion_below_minimum_asks_with_high_priority() -> None:
    hv = make(active_min_size=3, random_promotion_interval=5.0)
    with_active(hv, A)
    with_passive(hv, P, Q)
    first = hv.handle(TimerFired(PROMOTE_TIMER), 10.0)
    asked = first[0].peer  # type: ignore[union-attr]
    other = Q if asked == P else P
    assert first == [Send(asked, HIGH), SetTimer(PROMOTE_TIMER, 15.0)]
    # Still below the minimum after one more peer: the round goes on, still HIGH.
    assert recv(hv, asked, NeighborReply(True)) == [
        Connect(asked),
        Send(other, HIGH),
        members(A, asked),
    ]


def test_periodic_promotion_between_minimum_and_full_asks_once_with_low_priority() -> None:
    hv = make(active_size=5, active_min_size=1, random_promotion_interval=5.0)
    with_active(hv, A)
    with_passive(hv, P, Q)
    first = hv.handle(TimerFired(PROMOTE_TIMER), 10.0)
    asked = first[0].peer  # type: ignore[union-attr]
    assert first == [Send(asked, LOW), SetTimer(PROMOTE_TIMER, 15.0)]
    assert recv(hv, asked, NeighborReply(False)) == []  # one request per interval


def test_node_short_of_a_full_view_for_too_long_escalates_once() -> None:
    hv = make(active_size=5, active_min_size=1, random_promotion_interval=5.0)
    with_active(hv, A)
    with_passive(hv, P)
    for tick in range(1, ESCALATE_AFTER_INTERVALS + 1):
        assert hv.handle(TimerFired(PROMOTE_TIMER), 5.0 * tick)[:1] == [Send(P, LOW)]
        recv(hv, P, NeighborReply(False), now=5.0 * tick)  # P is full
    escalated = hv.handle(TimerFired(PROMOTE_TIMER), 5.0 * (ESCALATE_AFTER_INTERVALS + 1))
    assert escalated[:1] == [Send(P, HIGH)]
    recv(hv, P, NeighborReply(True))
    assert P in hv.active()


def test_unanswered_request_times_out_after_one_promotion_interval() -> None:
    hv = make(random_promotion_interval=5.0)
    with_passive(hv, P, Q)
    first = hv.handle(TimerFired(PROMOTE_TIMER), 10.0)
    asked = first[0].peer  # type: ignore[union-attr]
    other = Q if asked == P else P
    # Still waiting at 14 s; at 15 s the silent peer counts as unreachable.
    assert hv.handle(TimerFired(PROMOTE_TIMER), 14.0) == [SetTimer(PROMOTE_TIMER, 19.0)]
    # It is retried among the lost peers, and the next passive peer is asked.
    assert hv.handle(TimerFired(PROMOTE_TIMER), 15.0) == [
        Send(asked, HIGH),
        Send(other, HIGH),
        SetTimer(PROMOTE_TIMER, 20.0),
    ]
    assert hv.passive() == (other,)
    assert hv.statistics().lost == 1


def test_failed_peer_is_asked_to_reconnect_with_high_priority() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    assert hv.handle(PeerDown(A), 2.0) == [members()]  # no passive peer to promote
    assert hv.statistics().lost == 1
    assert hv.handle(TimerFired(PROMOTE_TIMER), 5.0) == [
        Send(A, HIGH),
        SetTimer(PROMOTE_TIMER, 10.0),
    ]
    # A was only cut off (a partition): it accepts, and we take it back even if full.
    with_active(hv, B)
    assert recv(hv, A, NeighborReply(True)) == [
        Send(B, DisconnectNotice(B.incarnation)),
        Disconnect(B, VIEW_CHANGE),
        Connect(A),
        members(A),
    ]
    assert hv.statistics().lost == 0


def test_promotion_timer_runs_only_while_there_is_work() -> None:
    hv = make(active_size=1, active_min_size=1, random_promotion_interval=5.0)
    with_active(hv, A)
    # Full, nothing pending, nothing lost: the tick does not re-arm.
    assert hv.handle(TimerFired(PROMOTE_TIMER), 5.0) == []
    # Losing the peer makes work again: the timer comes back with it.
    assert hv.handle(PeerDown(A), 7.0) == [SetTimer(PROMOTE_TIMER, 12.0), members()]


def test_lost_peer_is_given_up_after_the_timeout() -> None:
    hv = make(random_promotion_interval=1.0)
    with_active(hv, A)
    hv.handle(PeerDown(A), 0.0)
    assert Send(A, HIGH) in hv.handle(TimerFired(PROMOTE_TIMER), 59.0)
    assert Send(A, HIGH) not in hv.handle(TimerFired(PROMOTE_TIMER), 60.0)
    assert hv.statistics().lost == 0


def test_a_lost_neighbour_past_the_timeout_is_probed_as_a_ghost_until_it_answers() -> None:
    """A partition longer than the lost timeout still merges after the heal (bounded)."""
    hv = make(random_promotion_interval=1.0)
    with_active(hv, A)
    hv.handle(PeerDown(A), 0.0)
    hv.handle(TimerFired(PROMOTE_TIMER), 60.0)  # lost past the timeout: a ghost now
    assert Send(A, HIGH) not in hv.handle(TimerFired(PROMOTE_TIMER), 71.0)
    assert Send(A, HIGH) in hv.handle(TimerFired(PROMOTE_TIMER), 72.0)  # GHOST_INTERVALS
    hv.handle(PeerDown(A), 72.1)  # still partitioned: refused, stays a ghost
    assert Send(A, HIGH) not in hv.handle(TimerFired(PROMOTE_TIMER), 80.0)
    assert Send(A, HIGH) in hv.handle(TimerFired(PROMOTE_TIMER), 84.0)
    recv(hv, A, NeighborReply(True), 84.1)  # healed: the link is back
    assert hv.active() == (A,)
    assert Send(A, HIGH) not in hv.handle(TimerFired(PROMOTE_TIMER), 200.0)


def test_a_full_node_with_a_ghost_wakes_only_when_the_ghost_is_due() -> None:
    hv = make(random_promotion_interval=1.0, active_size=2, active_min_size=1)
    with_active(hv, A, B)
    hv.handle(PeerDown(A), 0.0)
    hv.handle(TimerFired(PROMOTE_TIMER), 60.0)  # A: a ghost, due at 72
    recv(hv, C, NeighborRequest(Priority.HIGH), 60.5)  # full again
    out = hv.handle(TimerFired(PROMOTE_TIMER), 61.0)
    assert SetTimer(PROMOTE_TIMER, 72.0) in out


def test_a_ghost_that_left_is_forgotten() -> None:
    hv = make(random_promotion_interval=1.0)
    with_active(hv, A)
    hv.handle(PeerDown(A), 0.0)
    hv.handle(TimerFired(PROMOTE_TIMER), 60.0)
    hv.handle(PeerDown(A, "left"), 61.0)
    assert Send(A, HIGH) not in hv.handle(TimerFired(PROMOTE_TIMER), 72.0)


def test_peer_that_left_is_not_asked_to_reconnect() -> None:
    hv = make()
    with_active(hv, A)
    hv.handle(PeerDown(A, "left"), 0.0)
    assert hv.statistics().lost == 0


def test_stale_peer_down_of_an_older_incarnation_is_ignored() -> None:
    hv = make()
    a2 = node("a", inc=2)
    with_active(hv, a2)
    assert hv.handle(PeerDown(A), 1.0) == []
    assert hv.active() == (a2,)


def test_closed_temporary_link_to_a_passive_peer_keeps_it_and_asks_it_nothing() -> None:
    """An agreed close ("disconnected") is not a failure: no lost peer, no new request.

    Regression: real nodes reported each closed temporary link (a probe, a
    shuffle reply) as a failure, so the peer was asked again over a new
    temporary link every promotion interval, whose close started it over.
    """
    hv = make(active_size=1, active_min_size=1, random_promotion_interval=5.0)
    with_active(hv, A)
    with_passive(hv, P)
    assert hv.handle(PeerDown(P, "disconnected"), 2.0) == []
    assert hv.passive() == (P,)
    assert hv.statistics().lost == 0
    assert hv.handle(TimerFired(PROMOTE_TIMER), 5.0) == []  # full, nothing to retry


def test_agreed_close_of_an_active_link_moves_the_peer_to_passive_and_asks_once() -> None:
    hv = make(active_size=2, active_min_size=1)
    with_active(hv, A, B)
    with_passive(hv, P)
    assert hv.handle(PeerDown(A, "disconnected"), 2.0) == [
        Send(P, LOW),  # one request, not to the peer that let the link go
        members(B),
    ]
    assert set(hv.passive()) == {A, P}
    assert hv.statistics().lost == 0


def test_isolated_node_retries_its_join() -> None:
    hv = make()
    hv.handle(Join(C), 0.0)
    hv.handle(PeerDown(C, "unreachable"), 0.0)
    assert hv.handle(TimerFired(PROMOTE_TIMER), 5.0) == [
        Send(C, JoinRequest()),
        SetTimer(PROMOTE_TIMER, 10.0),
    ]


# ------------------------------------------------------------------- leave


def test_leave_tells_every_active_peer_and_stops() -> None:
    hv = make()
    with_active(hv, A, B)
    with_passive(hv, P)
    assert hv.handle(Leave(), 3.0) == [
        Send(A, LeaveNotice()),
        Disconnect(A, DisconnectReason.LEFT),
        Send(B, LeaveNotice()),
        Disconnect(B, DisconnectReason.LEFT),
        CancelTimer(SHUFFLE_TIMER),
        CancelTimer(PROMOTE_TIMER),
        members(),
    ]
    assert hv.active() == () and hv.passive() == ()
    assert recv(hv, A, NeighborNotice()) == []  # a left node ignores the cluster
    assert hv.handle(TimerFired(SHUFFLE_TIMER), 4.0) == []


def test_join_after_leave_rearms_the_timers() -> None:
    hv = make()
    hv.handle(Leave(), 1.0)
    actions = hv.handle(Join(C), 2.0)
    assert [type(a) for a in actions] == [SetTimer, SetTimer, Send]
    assert actions[-1] == Send(C, JoinRequest())


def test_leave_notice_forgets_the_peer_and_repairs_at_once() -> None:
    hv = make()
    with_active(hv, A)
    with_passive(hv, P)
    assert recv(hv, A, LeaveNotice()) == [
        Disconnect(A, DisconnectReason.LEFT),
        Send(P, HIGH),
        members(),
    ]
    assert A not in hv.passive()


def test_removing_another_node_drops_it_locally() -> None:
    hv = make()
    with_active(hv, A, B)
    assert hv.handle(Leave(A), 1.0) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, DisconnectReason.LEFT),
        members(B),
    ]


# ----------------------------------------------------------------- shuffle


def test_shuffle_sends_self_and_samples_of_both_views_to_an_active_peer() -> None:
    hv = make(shuffle_ttl=6, shuffle_interval=10.0)
    with_active(hv, A)
    with_passive(hv, P)
    timer, *rest = hv.handle(TimerFired(SHUFFLE_TIMER), 20.0)
    assert type(timer) is SetTimer and timer.name == SHUFFLE_TIMER
    assert 27.5 <= timer.at < 32.5  # the next period, jittered +-25%
    assert rest == [
        Send(A, Shuffle(ME, (ME, A, P), 6)),
        Send(P, PassiveProbe()),  # and one passive entry is probed
    ]
    assert hv.statistics().shuffles_started == 1
    assert hv.statistics().passive_probes == 1


def test_shuffle_with_empty_views_only_rearms() -> None:
    [timer] = make(shuffle_interval=10.0).handle(TimerFired(SHUFFLE_TIMER), 0.0)
    assert type(timer) is SetTimer and timer.name == SHUFFLE_TIMER and 7.5 <= timer.at < 12.5


def test_shuffle_periods_are_jittered_so_nodes_drift_out_of_lockstep() -> None:
    hv = make(shuffle_interval=10.0)
    periods = []
    now = 0.0
    for _ in range(200):
        timer = hv.handle(TimerFired(SHUFFLE_TIMER), now)[0]
        assert type(timer) is SetTimer
        periods.append(timer.at - now)
        now = timer.at
    assert all(7.5 <= p < 12.5 for p in periods)
    assert min(periods) < 8.0 and max(periods) > 12.0  # spread over the whole range
    assert 9.5 <= sum(periods) / len(periods) <= 10.5  # one shuffle per interval on average


def test_shuffle_tick_probes_one_random_passive_entry() -> None:
    hv = make(shuffle_interval=10.0)
    with_passive(hv, P, Q, S)
    probed = [hv.handle(TimerFired(SHUFFLE_TIMER), 10.0 * t)[1] for t in range(1, 40)]
    assert all(type(a) is Send and a.msg == PassiveProbe() for a in probed)
    assert {a.peer for a in probed} == {P, Q, S}  # type: ignore[union-attr]


def test_probe_of_a_dead_passive_entry_drops_it() -> None:
    hv = make(shuffle_interval=10.0)
    with_active(hv, A)
    with_passive(hv, P)
    assert hv.handle(TimerFired(SHUFFLE_TIMER), 10.0)[-1] == Send(P, PassiveProbe())
    hv.handle(PeerDown(P), 10.0)  # the driver could not reach it
    assert hv.passive() == ()
    assert hv.statistics().lost == 1


def test_probe_is_not_answered_by_a_node_with_enough_neighbors() -> None:
    hv = make(active_min_size=1)
    with_active(hv, A)
    assert recv(hv, P, PassiveProbe()) == []
    assert hv.passive() == ()


def test_probe_of_a_cut_off_node_is_answered_with_a_high_request() -> None:
    hv = make(active_min_size=1)
    # Knows nobody alive: the prober becomes its passive view and is asked HIGH.
    assert recv(hv, P, PassiveProbe()) == [Send(P, HIGH)]
    assert hv.passive() == (P,)
    assert recv(hv, P, NeighborReply(True)) == [Connect(P), members(P)]


def test_probe_below_the_minimum_does_not_stack_requests() -> None:
    hv = make(active_min_size=2)
    assert recv(hv, P, PassiveProbe())[0] == Send(P, HIGH)
    assert recv(hv, Q, PassiveProbe()) == []  # P's answer is outstanding
    assert set(hv.passive()) == {P, Q}  # Q is kept: the next round asks it


def test_prober_must_accept_the_high_request_of_a_cut_off_node() -> None:
    hv = make(active_size=1, active_min_size=1)
    with_active(hv, A)
    with_passive(hv, S)
    assert recv(hv, S, HIGH) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, VIEW_CHANGE),
        Connect(S),
        Send(S, NeighborReply(True)),
        members(S),
    ]


def test_shuffle_walk_is_forwarded_while_ttl_remains() -> None:
    hv = make()
    with_active(hv, A, B)
    assert recv(hv, A, Shuffle(S, (S, P), 3)) == [Send(B, Shuffle(S, (S, P), 2))]


def test_shuffle_walk_ends_with_a_reply_of_equal_length_and_a_merge() -> None:
    hv = make()
    with_active(hv, A)
    with_passive(hv, P, Q)
    [reply] = recv(hv, A, Shuffle(S, (S, C), 0))
    assert isinstance(reply, Send) and reply.peer == S
    assert isinstance(reply.msg, ShuffleReply) and set(reply.msg.nodes) == {P, Q}
    assert set(hv.passive()) == {P, Q, S, C}


def test_shuffle_merge_skips_self_and_active_peers() -> None:
    hv = make()
    with_active(hv, A)
    recv(hv, A, Shuffle(S, (S, ME, A), 0))
    assert hv.passive() == (S,)


def test_shuffle_reply_evicts_the_entries_we_sent_first() -> None:
    hv = make(passive_size=2, shuffle_kp=1, shuffle_ka=0)
    with_active(hv, A)
    with_passive(hv, P, Q)
    shuffle = hv.handle(TimerFired(SHUFFLE_TIMER), 10.0)[1]
    sent = shuffle.msg.nodes[1]  # type: ignore[union-attr]
    kept = Q if sent == P else P
    recv(hv, A, ShuffleReply((S,)))
    assert set(hv.passive()) == {kept, S}


def test_shuffle_from_a_non_neighbor_is_answered_with_a_disconnect() -> None:
    hv = make()
    assert recv(hv, S, Shuffle(S, (S,), 0)) == [
        Send(S, DisconnectNotice(S.incarnation)),
        Send(S, ShuffleReply(())),
    ]


def test_passive_view_never_exceeds_its_size() -> None:
    hv = make(passive_size=3)
    with_passive(hv, *(node(f"p{i}") for i in range(10)))
    assert len(hv.passive()) == 3


# ------------------------------------------------------------ reservations


def test_reserved_role_gets_a_slot_even_by_low_priority() -> None:
    hv = make(active_size=1, active_min_size=1, reservations=("server",))
    with_active(hv, A)
    server = node("s", role="server")
    assert recv(hv, server, LOW) == [
        Send(A, DisconnectNotice(A.incarnation)),
        Disconnect(A, VIEW_CHANGE),
        Connect(server),
        Send(server, NeighborReply(True)),
        members(server),
    ]


def test_reserved_peer_is_never_evicted() -> None:
    hv = make(active_size=1, active_min_size=1, reservations=("server",))
    server = node("s", role="server")
    with_active(hv, server)
    assert recv(hv, A, HIGH) == [Send(A, NeighborReply(False))]
    assert recv(hv, B, NeighborNotice()) == [Send(B, DisconnectNotice(B.incarnation))]
    assert hv.active() == (server,)


def test_reservation_is_freed_when_its_holder_goes() -> None:
    hv = make(active_size=2, active_min_size=1, reservations=("server",))
    s1, s2 = node("s", role="server"), node("t", role="server")
    with_active(hv, s1, A)
    hv.handle(PeerDown(s1), 1.0)
    with_active(hv, B)
    actions = recv(hv, s2, LOW)  # full, but the server slot is free again
    assert Send(s2, NeighborReply(True)) in actions
    assert s2 in hv.active() and len(hv.active()) == 2
    assert len({A, B} & set(hv.passive())) == 1


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "msg",
    [
        "garbage",
        ForwardJoin("n@h:1", 3),  # type: ignore[arg-type]
        ForwardJoin(N, "3"),  # type: ignore[arg-type]
        Shuffle(S, [S], 1),  # type: ignore[arg-type]
        NeighborRequest("high"),  # type: ignore[arg-type]
        NeighborReply(1),  # type: ignore[arg-type]
        DisconnectNotice(None),  # type: ignore[arg-type]
        ShuffleReply(tuple([P] * 10_000)),
        NeighborNotice([P]),  # type: ignore[arg-type]
    ],
)
def test_malformed_message_is_counted_and_dropped(msg: object) -> None:
    hv = make()
    with_active(hv, A)
    assert recv(hv, A, msg) == []
    assert hv.active() == (A,) and hv.passive() == ()
    assert hv.statistics().rejected == 1


def test_bad_entries_of_a_shuffle_are_skipped_and_good_ones_kept() -> None:
    hv = make()
    recv(hv, A, ShuffleReply((P, "x", Q)))  # type: ignore[arg-type]
    assert hv.passive() == (P, Q)
    assert hv.statistics().rejected == 1


def test_message_claiming_to_come_from_ourselves_is_dropped() -> None:
    hv = make()
    assert recv(hv, ME, NeighborNotice()) == []
    assert hv.active() == ()

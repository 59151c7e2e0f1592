"""Plumtree handlers one by one: events in, the exact list of actions out."""

from __future__ import annotations

import random

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BROADCAST_CHANNEL as CH
from partisan.membership.broadcast import Deliver
from partisan.membership.flood import Flood, FloodMessage
from partisan.membership.plumtree import Gossip, Graft, IHave, Plumtree, Prune
from partisan.membership.types import CancelTimer, Received, Send, SetTimer, TimerFired

ME = NodeSpec("me", "sim", 1, incarnation=1)
A = NodeSpec("a", "sim", 2, incarnation=1)
B = NodeSpec("b", "sim", 3, incarnation=1)
C = NodeSpec("c", "sim", 4, incarnation=1)
CFG = Config()
LAZY, GRAFT_T, RETRY = (
    CFG.plumtree.lazy_tick,
    CFG.plumtree.graft_timeout,
    CFG.plumtree.graft_timeout_retry,
)


def tree(*eager: NodeSpec, lazy: tuple[NodeSpec, ...] = ()) -> Plumtree:
    p = Plumtree(ME, CFG, random.Random(1))
    for peer in (*eager, *lazy):
        assert p.neighbor_up(peer, 0.0) == []
    for peer in lazy:
        p.handle(Received(peer, Prune()), 0.0)
    return p


def test_new_neighbours_are_eager_and_broadcast_pushes_to_them() -> None:
    p = tree(A, B)
    assert p.eager_peers() == ["a", "b"] and p.lazy_peers() == []
    assert p.broadcast("m1", "x", 5.0) == [
        Deliver("m1", "x", 0, None),
        Send(A, Gossip("m1", "x", 1), CH),
        Send(B, Gossip("m1", "x", 1), CH),
    ]
    with pytest.raises(ValueError, match="already used"):
        p.broadcast("m1", "y", 5.0)


def test_broadcast_announces_to_lazy_peers_on_the_lazy_tick() -> None:
    p = tree(A, lazy=(B, C))
    assert p.broadcast("m1", "x", 5.0) == [
        Deliver("m1", "x", 0, None),
        Send(A, Gossip("m1", "x", 1), CH),
        SetTimer("plumtree:lazy", 5.0 + LAZY),
    ]
    assert p.broadcast("m2", "y", 5.5) == [  # timer already armed: no second SetTimer
        Deliver("m2", "y", 0, None),
        Send(A, Gossip("m2", "y", 1), CH),
    ]
    assert p.handle(TimerFired("plumtree:lazy"), 6.0) == [
        Send(B, IHave((("m1", 1), ("m2", 1))), CH),
        Send(C, IHave((("m1", 1), ("m2", 1))), CH),
    ]
    assert p.handle(TimerFired("plumtree:lazy"), 7.0) == []


def test_first_gossip_delivers_and_forwards_except_to_the_sender() -> None:
    p = tree(A, B, lazy=(C,))
    out = p.handle(Received(A, Gossip("m", "x", 3)), 1.0)
    assert out == [
        Deliver("m", "x", 3, A),
        Send(B, Gossip("m", "x", 4), CH),
        SetTimer("plumtree:lazy", 1.0 + LAZY),
    ]
    assert p.handle(TimerFired("plumtree:lazy"), 2.0) == [Send(C, IHave((("m", 4),)), CH)]


def test_duplicate_gossip_prunes_the_sender() -> None:
    p = tree(A, B)
    p.handle(Received(A, Gossip("m", "x", 1)), 1.0)
    assert p.handle(Received(B, Gossip("m", "x", 1)), 1.1) == [Send(B, Prune(), CH)]
    assert p.eager_peers() == ["a"] and p.lazy_peers() == ["b"]
    # the delivery happened once
    assert p.statistics().delivered == 1 and p.statistics().prunes_sent == 1


def test_prune_moves_the_sender_to_lazy() -> None:
    p = tree(A, B)
    assert p.handle(Received(A, Prune()), 1.0) == []
    assert p.eager_peers() == ["b"] and p.lazy_peers() == ["a"]


def test_ihave_for_a_missing_message_grafts_after_the_timeout_then_retries() -> None:
    p = tree(A, lazy=(B, C))
    timer = "plumtree:graft:'m'"
    assert p.handle(Received(B, IHave((("m", 2),))), 1.0) == [SetTimer(timer, 1.0 + GRAFT_T)]
    assert p.handle(Received(C, IHave((("m", 3),))), 1.1) == []  # timer already running
    assert p.handle(TimerFired(timer), 1.5) == [
        SetTimer(timer, 1.5 + RETRY),
        Send(B, Graft("m", 2), CH),
    ]
    assert "b" in p.eager_peers()
    assert p.handle(TimerFired(timer), 1.75) == [
        SetTimer(timer, 1.75 + RETRY),
        Send(C, Graft("m", 3), CH),
    ]
    assert p.handle(TimerFired(timer), 2.0) == []  # nobody left to ask: the timer stops
    assert p.statistics().grafts_sent == 2


def test_gossip_cancels_the_graft_timer_and_forgets_announcements() -> None:
    p = tree(A, lazy=(B,))
    timer = "plumtree:graft:'m'"
    p.handle(Received(B, IHave((("m", 2),))), 1.0)
    out = p.handle(Received(A, Gossip("m", "x", 2)), 1.2)
    assert out == [Deliver("m", "x", 2, A), CancelTimer(timer), SetTimer("plumtree:lazy", 2.2)]
    assert p.handle(TimerFired(timer), 1.5) == []  # a stale firing does nothing
    assert p.handle(Received(B, IHave((("m", 2),))), 1.6) == []  # already have it


def test_optimisation_grafts_a_much_shorter_announced_path() -> None:
    p = tree(A, lazy=(B,))
    p.handle(Received(B, IHave((("m", 1),))), 1.0)
    out = p.handle(Received(A, Gossip("m", "x", 5)), 1.2)
    assert out[-2:] == [Send(B, Graft(None, 1), CH), Send(A, Prune(), CH)]
    assert p.eager_peers() == ["b"] and p.lazy_peers() == ["a"]


def test_graft_makes_the_link_eager_and_answers_with_the_payload() -> None:
    p = tree(A, lazy=(B,))
    p.handle(Received(A, Gossip("m", "x", 2)), 1.0)
    assert p.handle(Received(B, Graft("m", 3)), 2.0) == [Send(B, Gossip("m", "x", 3), CH)]
    assert p.eager_peers() == ["a", "b"]
    assert p.handle(Received(B, Graft("unknown", 3)), 2.0) == []
    assert p.handle(Received(B, Graft(None, 3)), 2.0) == []


def test_neighbour_down_forgets_the_peer_and_its_announcements() -> None:
    p = tree(A, lazy=(B,))
    timer = "plumtree:graft:'m'"
    p.handle(Received(B, IHave((("m", 2),))), 1.0)
    assert p.neighbor_down(B, 1.2) == []
    assert p.lazy_peers() == [] and [n.name for n in p.neighbors()] == ["a"]
    assert p.handle(TimerFired(timer), 1.5) == []


def test_messages_from_non_neighbours_never_make_them_neighbours() -> None:
    p = tree(A)
    assert p.handle(Received(B, Gossip("m", "x", 1)), 1.0) == [
        Deliver("m", "x", 1, B),
        Send(A, Gossip("m", "x", 2), CH),
    ]
    assert p.handle(Received(B, Gossip("m", "x", 1)), 1.0) == []  # duplicate: no prune
    assert p.handle(Received(B, Prune()), 1.0) == []
    assert p.handle(Received(B, Graft("m", 1)), 1.0) == [Send(B, Gossip("m", "x", 2), CH)]
    assert [n.name for n in p.neighbors()] == ["a"]


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        Gossip(["unhashable"], "x", 1),
        Gossip(None, "x", 1),
        Gossip("m", "x", -1),
        Gossip("m", "x", "1"),
        IHave("not a tuple"),  # type: ignore[arg-type]  # a buggy peer's message
        IHave((("m",),)),  # type: ignore[arg-type]
        IHave(((["m"], 1),)),
        IHave((("m", 1),) * 10_001),
        Graft({}, 1),
        Graft("m", 2.5),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_counted_and_dropped_state_unchanged(bad: object) -> None:
    p = tree(A, lazy=(B,))
    assert p.handle(Received(B, bad), 1.0) == []
    assert p.handle(TimerFired("not-ours"), 1.0) == []
    assert p.statistics().dropped == 1
    assert p.eager_peers() == ["a"] and p.lazy_peers() == ["b"]
    assert p.broadcast("ok", "x", 2.0)[0] == Deliver("ok", "x", 0, None)  # still works


def test_flood_drops_malformed_messages() -> None:
    f = Flood(ME, CFG, random.Random(1))
    f.neighbor_up(A, 0.0)
    for bad in (FloodMessage(["x"], 1, 1), FloodMessage("m", 1, -2), FloodMessage("m", 1, "2")):
        assert f.handle(Received(A, bad), 1.0) == []
    assert f.dropped == 3


def test_seen_messages_expire_after_the_ttl() -> None:
    p = tree(A)
    p.handle(Received(A, Gossip("old", "x", 1)), 0.0)
    p.handle(Received(A, Gossip("new", "x", 1)), CFG.plumtree.message_ttl + 1)
    assert not p.has("old") and p.has("new")


def test_flood_forwards_to_all_but_the_sender_once() -> None:
    f = Flood(ME, CFG, random.Random(1))
    for peer in (A, B, C):
        f.neighbor_up(peer, 0.0)
    out = f.handle(Received(A, FloodMessage("m", "x", 2)), 1.0)
    assert out == [
        Deliver("m", "x", 2, A),
        Send(B, FloodMessage("m", "x", 3), CH),
        Send(C, FloodMessage("m", "x", 3), CH),
    ]
    assert f.handle(Received(B, FloodMessage("m", "x", 2)), 1.0) == []
    f.neighbor_down(B, 2.0)
    assert f.broadcast("m2", "y", 2.0) == [
        Deliver("m2", "y", 0, None),
        Send(A, FloodMessage("m2", "y", 1), CH),
        Send(C, FloodMessage("m2", "y", 1), CH),
    ]
    assert f.handle(Received(A, "junk"), 3.0) == [] and f.dropped == 1


def test_a_new_neighbour_hears_the_ids_of_the_announce_window() -> None:
    p = Plumtree(ME, CFG, random.Random(1), announce_window=2.0)
    assert p.neighbor_up(A, 0.0) == []  # nothing delivered yet: nothing to announce
    p.broadcast("old", "x", 1.0)
    p.handle(Received(A, Gossip("new", "y", 2)), 3.5)
    # "old" (t=1.0) is outside [t-2, t]; "new" arrived at hop 2, so B would get it at hop 3
    assert p.neighbor_up(B, 4.0) == [Send(B, IHave((("new", 3),)), CH)]
    assert p.eager_peers() == ["a", "b"]
    # off by default (the paper's behaviour, what the simulator measures)
    assert tree(A).neighbor_up(B, 0.0) == []

"""The relay's per-origin reorder buffer: events in, exact deliveries out (sans-IO)."""

from __future__ import annotations

from partisan.relay import ReorderBuffer


def test_in_order_messages_pass_at_once() -> None:
    b = ReorderBuffer(hold=1.0)
    assert b.offer(1, "a", 0.0) == (["a"], 0)
    assert b.offer(2, "b", 0.0) == (["b"], 0)
    assert b.deadline() is None


def test_a_gap_holds_later_messages_until_it_fills() -> None:
    b = ReorderBuffer(hold=1.0)
    assert b.offer(2, "b", 0.0) == ([], 0)
    assert b.offer(3, "c", 0.1) == ([], 0)
    assert b.deadline() == 1.0  # from the first held message
    assert b.offer(1, "a", 0.2) == (["a", "b", "c"], 0)
    assert b.deadline() is None


def test_duplicates_and_late_copies_are_refused() -> None:
    b = ReorderBuffer(hold=1.0)
    b.offer(1, "a", 0.0)
    b.offer(3, "c", 0.0)
    assert b.offer(1, "a", 0.1) is None  # delivered already
    assert b.offer(3, "c", 0.1) is None  # held already


def test_a_gap_that_never_fills_is_skipped_after_the_hold_and_counted() -> None:
    b = ReorderBuffer(hold=1.0)
    b.offer(3, "c", 0.0)
    b.offer(5, "e", 0.5)
    assert b.expire(0.9) == ([], 0)  # not yet
    assert b.expire(1.0) == (["c"], 2)  # 1 and 2 skipped
    assert b.deadline() == 2.0  # the gap before 5 starts its own hold now
    assert b.expire(2.0) == (["e"], 1)
    assert b.offer(2, "late", 2.1) is None  # a skipped message arriving late is not delivered


def test_too_many_held_messages_skip_the_gap_at_once() -> None:
    b = ReorderBuffer(hold=10.0, limit=2)
    assert b.offer(2, "b", 0.0) == ([], 0)
    assert b.offer(3, "c", 0.0) == ([], 0)
    assert b.offer(4, "d", 0.0) == (["b", "c", "d"], 1)

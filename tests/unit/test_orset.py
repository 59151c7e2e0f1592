"""The OR-Set CRDT: add-wins, no resurrection by stale state, newest incarnation wins."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partisan.identity import NodeSpec
from partisan.membership.orset import ORSet


def spec(name: str, incarnation: int = 1, port: int = 9000) -> NodeSpec:
    return NodeSpec(name, "127.0.0.1", port, incarnation=incarnation)


A, B, C = spec("a"), spec("b"), spec("c")


def test_empty_set_has_no_members() -> None:
    assert ORSet().value() == ()
    assert len(ORSet()) == 0


def test_add_and_value_sorted_by_name() -> None:
    s = ORSet().add(C, 1).add(A, 1).add(B, 1)
    assert s.value() == (A, B, C)
    assert A in s and spec("d") not in s


def test_reusing_a_tag_is_refused() -> None:
    s = ORSet().add(A, 1)
    with pytest.raises(ValueError, match="already used"):
        s.add(A, 1)
    with pytest.raises(ValueError, match="already used"):
        s.remove_name("a").add(A, 1)


def test_operations_do_not_mutate_the_original() -> None:
    s = ORSet().add(A, 1)
    s.add(B, 1)
    s.remove_name("a")
    assert s.value() == (A,)


def test_remove_then_stale_state_does_not_resurrect() -> None:
    """Partisan #191: gossip from before the removal must not bring the node back."""
    stale = ORSet().add(A, 1).add(B, 1)
    removed = stale.remove_name("b")
    assert removed.value() == (A,)
    assert removed.merge(stale).value() == (A,)
    assert stale.merge(removed).value() == (A,)


def test_concurrent_add_wins_over_remove() -> None:
    base = ORSet().add(A, 1).add(B, 1)
    remover = base.remove_name("b")
    readder = base.add(B, 2)  # b re-joined concurrently: a tag the remover never saw
    assert remover.merge(readder).value() == (A, B)


def test_newer_incarnation_replaces_older() -> None:
    old, new = spec("b", 1, port=9001), spec("b", 2, port=9002)
    s = ORSet().add(A, 1).add(old, 1).merge(ORSet().add(new, 1))
    assert s.value() == (A, new)
    assert s.tags_of("b") == (("b", 2, 1),)
    assert ("b", 1, 1) in s.removed


def test_older_incarnation_cannot_come_back_after_newer_was_removed() -> None:
    old, new = spec("b", 1), spec("b", 2)
    has_old = ORSet().add(A, 1).add(old, 1)
    new_removed = ORSet().add(new, 1).remove_name("b")  # never saw the old one
    assert has_old.merge(new_removed).value() == (A,)
    assert new_removed.merge(has_old).value() == (A,)


def test_same_incarnation_tie_is_broken_the_same_everywhere() -> None:
    x1, x2 = spec("x", 5, port=1), spec("x", 5, port=2)
    left = ORSet().add(x1, 1)
    right = ORSet().add(x2, 2)
    assert left.merge(right) == right.merge(left)
    assert left.merge(right).value() == (x2,)


def test_superseded_and_max_counter() -> None:
    s = ORSet().add(spec("b", 3), 4).remove_name("b")
    assert s.superseded(spec("b", 2))
    assert not s.superseded(spec("b", 3))
    assert s.max_counter("b", 3) == 4
    assert s.max_counter("b", 9) == 0


def test_tombstones_only_removes_but_never_adds() -> None:
    s = ORSet().add(A, 1).add(B, 1).remove_name("b")
    t = s.tombstones_only()
    assert t.value() == ()
    assert t.removed == s.removed
    assert ORSet().add(A, 2).merge(t).value() == (A,)


def test_pickle_round_trip_and_check() -> None:
    s = ORSet().add(A, 1).add(B, 1).remove_name("a")
    back = ORSet.check(pickle.loads(pickle.dumps(s)))
    assert back == s
    assert back.value() == (B,)


def raw(dots: object, removed: object = frozenset()) -> ORSet:
    """An ORSet as a hostile peer's unpickled object could be: no invariants."""
    obj = object.__new__(ORSet)
    for slot, value in (("_dots", dots), ("_removed", removed), ("_value", None)):
        object.__setattr__(obj, slot, value)
    return obj


def hostless() -> NodeSpec:
    """A spec whose host is not a string (unpickling skips __post_init__)."""
    bad = spec("a")
    object.__setattr__(bad, "host", 5)
    return bad


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("not a set", "expected an ORSet"),
        (raw([]), "bad internal fields"),
        (raw({("a", 1, 1): "spec"}), "holds str"),
        (raw({("a", 2, 1): A}), "does not name spec"),
        (raw({("a", 1, 1): hostless()}), "bad address"),
        (raw({("a", 1): A}), "malformed ORSet tag"),
        (raw({}, frozenset([("a", "1", 1)])), "malformed ORSet tag"),
    ],
)
def test_check_rejects_malformed_peer_state(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ORSet.check(bad)


# ------------------------------------------------------------ CRDT laws

names = st.sampled_from(["a", "b", "c", "d"])
ops = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "restart"]), names),
    max_size=8,
)


def replay(operations: list[tuple[str, str]], actor: int) -> ORSet:
    """Build a replica from a list of operations (counters unique per replica)."""
    s = ORSet()
    for i, (op, name) in enumerate(operations):
        if op == "add":
            s = s.add(spec(name, 1), actor * 100 + i)
        elif op == "restart":
            s = s.add(spec(name, 2 + actor), actor * 100 + i)
        else:
            s = s.remove_name(name)
    return s


@settings(max_examples=150, deadline=None)
@given(ops, ops, ops)
def test_merge_is_commutative_associative_idempotent(
    x: list[tuple[str, str]], y: list[tuple[str, str]], z: list[tuple[str, str]]
) -> None:
    a, b, c = replay(x, 1), replay(y, 2), replay(z, 3)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).value() == b.merge(a).value()


@settings(max_examples=150, deadline=None)
@given(ops, ops)
def test_value_has_unique_names_and_stale_state_never_resurrects(
    x: list[tuple[str, str]], y: list[tuple[str, str]]
) -> None:
    a = replay(x, 1)
    later = replay(y, 2).merge(a)
    for name in ("a", "b", "c", "d"):
        removed = later.remove_name(name)
        assert all(s.name != name for s in removed.merge(a).merge(later).value())
    value = a.merge(later).value()
    assert len({s.name for s in value}) == len(value)

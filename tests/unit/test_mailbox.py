"""Mailbox: FIFO, selective receive keeps the rest in order, timeouts, patterns."""

from __future__ import annotations

import asyncio

import pytest
from _actor_support import async_test
from hypothesis import given
from hypothesis import strategies as st

from partisan.actors.mailbox import Mailbox, as_predicate
from partisan.errors import ReceiveTimeout


@async_test
async def test_fifo_and_selective_receive_keeps_others_in_order() -> None:
    box = Mailbox()
    for msg in (1, "a", 2, "b", 3.0):
        box.put(msg)
    assert await box.receive(match=str) == "a"
    assert await box.receive(match=(float, bytes)) == 3.0
    assert await box.receive(match=lambda m: m == 2) == 2
    assert [await box.receive() for _ in range(2)] == [1, "b"]
    assert len(box) == 0


@async_test
async def test_waiting_receiver_is_woken_only_by_a_match() -> None:
    box = Mailbox()
    task = asyncio.ensure_future(box.receive(match=int))
    await asyncio.sleep(0)  # ok-sleep: let the receiver start waiting
    box.put("skip")
    box.put("skip2")
    await asyncio.sleep(0)  # ok-sleep: give it a chance to (wrongly) return
    assert not task.done()
    box.put(7)
    assert await asyncio.wait_for(task, 1) == 7
    assert [box.take()[1], box.take()[1]] == ["skip", "skip2"]


@async_test
async def test_timeout_raises_and_leaves_messages() -> None:
    box = Mailbox()
    box.put("x")
    with pytest.raises(ReceiveTimeout):
        await box.receive(match=int, timeout=0.01)
    with pytest.raises(ReceiveTimeout):
        await box.receive(match=int, timeout=0)
    assert await box.receive(timeout=0) == "x"


@async_test
async def test_two_receivers_on_one_mailbox_is_an_error() -> None:
    box = Mailbox()
    first = asyncio.ensure_future(box.receive())
    await asyncio.sleep(0)  # ok-sleep: let the first receiver start waiting
    with pytest.raises(RuntimeError):
        await box.receive()
    box.put(1)
    assert await first == 1


def test_bad_patterns_are_type_errors() -> None:
    with pytest.raises(TypeError):
        as_predicate((int, "x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        as_predicate(42)  # type: ignore[arg-type]
    assert as_predicate(None) is None


@given(
    messages=st.lists(st.integers(min_value=0, max_value=9), max_size=40),
    wanted=st.lists(st.integers(min_value=0, max_value=9), max_size=10),
)
def test_selective_receive_takes_first_match_and_keeps_the_rest_in_order(
    messages: list[int], wanted: list[int]
) -> None:
    """Model: a list; receive(match=k) removes the first k, everything else keeps its order."""

    async def run() -> None:
        box = Mailbox()
        model = list(messages)
        for msg in messages:
            box.put(msg)
        for value in wanted:
            if value in model:
                model.remove(value)
                assert await box.receive(match=value.__eq__, timeout=0) == value
            else:
                with pytest.raises(ReceiveTimeout):
                    await box.receive(match=value.__eq__, timeout=0)
        assert box.messages() == model

    asyncio.run(run())

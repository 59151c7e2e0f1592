"""Periodic chores on one grid per process: they fire together and never twice on one point."""

from __future__ import annotations

import asyncio

import pytest

from partisan.transport.ticks import call_on_grid, next_tick


@pytest.mark.parametrize("now", [0.0, 0.24, 0.25, 0.26, 0.49, 0.5, 0.51, 7.999, 1e6 + 0.3])
def test_the_next_point_is_on_the_grid_half_to_one_and_a_half_periods_away(now):
    point = next_tick(now, 0.5, phase=0.0)
    assert round(point / 0.5, 9) == round(point / 0.5)  # on the grid
    assert now + 0.25 < point <= now + 0.75 + 1e-9


@pytest.mark.parametrize("error", [-0.004, 0.0, 0.004, 0.2])
def test_a_timer_that_fires_early_or_late_gets_the_following_point(error):
    # A chore on the point 10.0 runs at 10.0 +- a little: its next run is 10.5, never 10.0 again.
    assert next_tick(10.0 + error, 0.5, phase=0.0) == pytest.approx(10.5)


def test_timers_of_different_periods_are_due_at_the_same_instant():
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        whole = call_on_grid(loop, 1.0, print)
        half = call_on_grid(loop, 0.5, print)
        whole.cancel(), half.cancel()
        return whole.when(), half.when()

    whole, half = asyncio.run(main())
    steps = (whole - half) / 0.5  # the 1 s timer is due on a point of the 0.5 s grid
    assert steps >= 0 and steps == pytest.approx(round(steps), abs=1e-6)


def test_periods_that_divide_one_another_share_their_points():
    for start in (3.1, 3.7, 4.05):
        half = next_tick(start, 0.5, phase=0.3)
        whole = next_tick(start, 1.0, phase=0.3)
        assert {round(half + k * 0.5, 9) for k in range(4)} >= {round(whole, 9)}


@pytest.mark.timeout(10)
def test_chores_of_different_periods_run_in_one_loop_turn():
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        turns: list[tuple[str, float]] = []

        def chore(name: str, period: float, left: list[int]) -> None:
            turns.append((name, loop.time()))
            left[0] -= 1
            if left[0]:
                call_on_grid(loop, period, chore, name, period, left)

        done = loop.create_future()
        call_on_grid(loop, 0.05, chore, "fast", 0.05, [14])
        call_on_grid(loop, 0.1, chore, "slow", 0.1, [3])
        loop.call_later(0.8, done.set_result, None)
        await done
        return turns

    turns = asyncio.run(main())
    slow = [at for name, at in turns if name == "slow"]
    fast = [at for name, at in turns if name == "fast"]
    assert len(slow) == 3
    for at in slow:  # every slow run shares its loop turn with a fast one: back to back
        assert min(abs(at - other) for other in fast) < 0.005

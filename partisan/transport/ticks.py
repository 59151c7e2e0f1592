"""Periodic work on a shared grid, so a node's timers wake its loop together.

An idle node's loop wakes for its periodic chores: link housekeeping every
`heartbeat_interval`, the sweep of unneeded links every
`connection_interval`, the key-directory check every
`key_refresh_interval`. Scheduled with ``call_later`` from whenever each
started, they drift apart and each costs its own wake-up (on a virtual
machine the context switch is most of an idle wake-up's cost). Scheduled
with `call_on_grid`, each fires on multiples of its period from one
per-process phase: with the default periods (0.5 s, 1 s, 1 s) the three
share one wake-up every second and the housekeeping runs alone between.

The phase is random per process, so the node processes of one machine do
not all wake at the same instant.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable
from typing import Any

__all__ = ["call_on_grid", "next_tick"]

#: This process's offset of every grid, in seconds.
_PHASE = random.random() * 60.0


def next_tick(now: float, period: float, phase: float = _PHASE) -> float:
    """The grid point (``phase + k * period``) that follows a chore run at `now`.

    Measured from ``now + period / 2``: a timer that fired a little early or
    late still gets the next point, one period on, never the one it is on.
    """
    return phase + (math.floor((now + period / 2 - phase) / period) + 1) * period


def call_on_grid(
    loop: asyncio.AbstractEventLoop, period: float, callback: Callable[..., Any], *args: Any
) -> asyncio.TimerHandle:
    """``loop.call_at`` the next grid point of `period` (between 0.5 and 1.5 periods away)."""
    return loop.call_at(next_tick(loop.time(), period), callback, *args)

"""Wait on conditions with deadlines, never sleep-then-assert; deadlines from the config.

A test that sleeps a fixed time and then asserts is both slow (the sleep is
sized for the worst machine) and flaky (one day the worst machine is slower).
`wait_until` polls a predicate until it holds or a deadline passes, and the
deadline comes from the configuration under test (`detection_deadline`), so a
test written for 0.1/0.5 s heartbeats stays right when someone changes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = [
    "WaitTimeout",
    "async_wait_until",
    "detection_deadline",
    "handshake_deadline",
    "wait_until",
]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline (an assertion failure in tests)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.01,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value; return that value.

    Raises `WaitTimeout` (an AssertionError) after `timeout` seconds, with
    `message` (or its result, evaluated at the deadline to show the last
    state) in the error. Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:.2f} s waiting for {text}")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    *,
    interval: float = 0.01,
    message: str | Callable[[], str] = "condition",
) -> T:
    """`wait_until` for asyncio: the predicate may be a plain or an async function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # awaited above when awaitable
        if loop.time() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:.2f} s waiting for {text}")
        await asyncio.sleep(interval)


def detection_deadline(config: Any, slack: float = 1.0) -> float:
    """How long a failure may take to be noticed: ``heartbeat_timeout + slack``.

    A crashed peer is seen at once through TCP; a frozen one only when ZMTP
    heartbeats time out. `slack` covers scheduling on a loaded machine.
    """
    return float(config.heartbeat_timeout) + slack


def handshake_deadline(config: Any, slack: float = 1.0) -> float:
    """How long a join may take: ``handshake_timeout + slack``."""
    return float(config.handshake_timeout) + slack

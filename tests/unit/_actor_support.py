"""Helpers for the actor unit tests: run a coroutine test, nodes on an in-memory network."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from partisan.actors.memlinks import MemoryNetwork
from partisan.node import Node


def async_test(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an ``async def`` test on a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


@contextlib.asynccontextmanager
async def nodes(*names: str, join: bool = True, **options: Any) -> AsyncIterator[list[Node]]:
    """Start nodes `names` on one MemoryNetwork (the first is current); join them pairwise."""
    net = MemoryNetwork()
    started: list[Node] = []
    try:
        for name in names:
            node = Node(name, links_factory=net.factory, insecure=True, **options)
            await node.start()
            started.append(node)
        if join:
            for i, a in enumerate(started):
                for b in started[i + 1 :]:
                    await a.join(b.name)
        with started[0].as_current():
            yield started
    finally:
        for node in reversed(started):
            await node.stop()


async def drain_until(marker: object, timeout: float = 2.0) -> list[Any]:
    """Receive everything up to (not including) `marker`, which the caller sent to itself last."""
    from partisan.actors import api

    seen = []
    while True:
        msg = await api.receive(timeout=timeout)
        if msg == marker:
            return seen
        seen.append(msg)

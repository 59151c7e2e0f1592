"""Control envelopes that met a full send budget wait here, in order, per peer.

User sends over the budget raise `Overloaded` (CONTRACT.md: the caller
decides). Control envelopes — replies, `DownSig`, exit signals, monitor and
link requests, spawn/rpc answers — have no caller to raise to, and dropping
one would silently break a monitor or a call. So `Distribution.post` queues
them here when the transport says `Overloaded`, and one task per peer feeds
them to `Links.send_wait` in order; while a peer's backlog is non-empty every
later envelope for that peer joins the queue, so their order is kept. When
the peer goes down the backlog is dropped and counted (the peer's monitors,
links and calls fire ``noconnection`` anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from partisan.errors import NotConnected, Overloaded

__all__ = ["ControlBacklog"]

logger = logging.getLogger(__name__)

#: How long one wait for room lasts before the drain re-checks that the peer is up.
_RECHECK = 1.0


class ControlBacklog:
    """Per-peer FIFO of control envelopes waiting for room in the send budget."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        self.queues: dict[str, deque[tuple[str, str, Any, Any]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def waiting(self, node: str) -> bool:
        return node in self.queues

    def add(self, node: str, channel: str, dest: str, envelope: Any, key: Any) -> None:
        queue = self.queues.get(node)
        if queue is None:
            queue = self.queues[node] = deque()
            task = asyncio.get_running_loop().create_task(self._drain(node, queue))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        queue.append((channel, dest, envelope, key))

    async def _drain(self, node: str, queue: deque[tuple[str, str, Any, Any]]) -> None:
        links = self.dist.links
        try:
            while queue and self.queues.get(node) is queue:
                channel, dest, envelope, key = queue[0]
                try:
                    await links.send_wait(
                        node, channel, dest, envelope, partition_key=key, timeout=_RECHECK
                    )
                except Overloaded:
                    continue  # still full: check the peer is up, then wait again
                queue.popleft()
        except NotConnected:
            pass
        except Exception:
            logger.exception("control backlog for %s failed", node)
        finally:
            if self.queues.get(node) is queue:
                del self.queues[node]
            if queue:
                self.dist.runtime.drops["control_not_connected"] += len(queue)
                queue.clear()

    def drop(self, node: str) -> None:
        """`node` is down: forget its backlog (its drain task ends)."""
        queue = self.queues.pop(node, None)
        if queue:
            self.dist.runtime.drops["control_not_connected"] += len(queue)
            queue.clear()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for every backlog to reach the transport; True if all did.

        A graceful stop calls this before the links flush and say BYE: the
        DownSigs and exit signals of actors stopped on the way out are what
        peers' monitors and links are waiting for.
        """
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=max(0.0, timeout))
        return not self.queues

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        self.queues.clear()

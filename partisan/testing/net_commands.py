"""Membernode commands for the network-fault scenarios: paced streams and recorded monitors.

Mixed into `membernode.MemberNode` (tests/chaos/test_reliability_net.py).
The recorded workload of `delivery_commands` (``load``) sends as fast as it
can and answers when done; a crash or freeze scenario needs *steady*
traffic that runs across the fault and stops when told, and needs to know
which sends the receiver acknowledged. Everything is recorded in the node's
event log for `history.check_history`.

Commands: ``stream`` (targets, rate, channel, tag, acked, batch, count) —
one actor per entry of `targets` (a name may repeat) sends `batch`
messages ``(id, key, node)`` to ``("sink", target)`` `rate` times a second
until stopped or `count` are sent, key ``node.incarnation.tag.target.index``
(a restarted node starts new streams, with new ids). A plain
send is recorded (`record_send`, with the incarnation of the target this
node knows, so the checker flags a later life receiving it) once the
transport took it; one refused
for want of a link (`NotConnected`, `Overloaded`) is retried at the next
tick and not recorded. With `acked`, the send is recorded first, then
waits for the receiving node's acknowledgement and writes an ``app.acked``
record (id) when it comes, or an ``app.unsent`` record when it was refused
before it left (a checker excludes those) · ``stream_stats`` (tag) — sent,
acked, and how many of its actors still run · ``stream_stop`` (tag) — stop
them; the same counts · ``monitor`` (name, node, tag) — an actor monitors
``(name, node)`` and records every `Down` it gets (in memory and as an
``app.down`` record) · ``downs`` (tag) — those Downs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import partisan
from partisan.actors import api
from partisan.actors.signals import Down
from partisan.errors import NotConnected, Overloaded, PartisanError
from partisan.testing.history import record_send

__all__ = ["NetCommands"]


class NetCommands:
    """The commands above; `self.node` is the member's `Node`."""

    node: Any

    def _net_state(self) -> dict[str, Any]:
        """This mixin's state (streams and recorded Downs by tag), made on first use."""
        state: dict[str, Any] = self.__dict__.setdefault("_net", {"streams": {}, "downs": {}})
        return state

    async def cmd_stream(
        self, targets: list[str], rate: float, channel: str = "default", tag: str = "s",
        acked: bool = False, batch: int = 1, count: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        me = api.node()
        log = self.node.event_log
        stats = {"sent": 0, "acked": 0, "running": len(targets), "stop": False}
        self._net_state()["streams"][tag] = stats
        period = 1.0 / rate

        def known(target: str) -> int | None:
            """The incarnation of `target` this node knows now: the life the send addresses."""
            dist = self.node.dist
            return None if dist is None else dist.incarnations.get(target)

        async def send(target: str, key: str, msg_id: str) -> bool:
            """Send one message; False if it never left (a plain send retries the id)."""
            if not acked:
                try:
                    partisan.send(("sink", target), (msg_id, key, me), channel=channel)
                except (NotConnected, Overloaded):
                    return False
                record_send(
                    msg_id, target, key=key, channel=channel, peer_incarnation=known(target)
                )
                stats["sent"] += 1
                return True
            record_send(msg_id, target, key=key, channel=channel, peer_incarnation=known(target))
            try:
                await partisan.send(
                    ("sink", target), (msg_id, key, me), channel=channel, wait=True, timeout=10.0
                )
            except (NotConnected, Overloaded):
                log.write("app.unsent", peer=target, id=msg_id)  # it never left
                return True
            except PartisanError:
                stats["sent"] += 1  # sent, never acknowledged (the receiver died)
                return True
            stats["sent"] += 1
            stats["acked"] += 1
            log.write("app.acked", peer=target, id=msg_id)
            return True

        async def sender(target: str, n: int) -> None:
            key = f"{me}.{self.node.incarnation}.{tag}.{target}.{n}"  # unique per incarnation
            i = 0
            next_at = time.monotonic()
            try:
                while not stats["stop"] and (count is None or i < count):
                    for _ in range(batch if count is None else min(batch, count - i)):
                        if not await send(target, key, f"{key}.{i}"):
                            break  # no link: try again at the next tick
                        i += 1
                    next_at = max(next_at + period, time.monotonic())
                    await asyncio.sleep(next_at - time.monotonic())  # the stream's pace
            finally:
                stats["running"] -= 1

        for n, target in enumerate(targets):
            await partisan.spawn(sender, target, n)
        return {}

    async def cmd_stream_stats(self, tag: str = "s") -> dict[str, Any]:
        stats = self._net_state()["streams"].get(tag, {"sent": 0, "acked": 0, "running": 0})
        return {k: stats[k] for k in ("sent", "acked", "running")}

    async def cmd_stream_stop(self, tag: str = "s") -> dict[str, Any]:
        self._net_state()["streams"].get(tag, {})["stop"] = True
        return await self.cmd_stream_stats(tag)

    async def cmd_monitor(self, name: str, node: str, tag: str = "m") -> dict[str, Any]:
        downs: list[dict[str, Any]] = []
        self._net_state()["downs"][tag] = downs
        log = self.node.event_log
        started = asyncio.Event()

        async def watcher() -> None:
            partisan.monitor((name, node))
            started.set()
            while True:
                msg = await partisan.receive()
                if isinstance(msg, Down):
                    down = {"reason": str(msg.reason), "mono": time.monotonic()}
                    downs.append(down)
                    if log is not None:
                        log.write("app.down", peer=node, target=name, reason=down["reason"])

        await partisan.spawn(watcher)
        await started.wait()
        return {}

    async def cmd_downs(self, tag: str = "m") -> dict[str, Any]:
        return {"downs": list(self._net_state()["downs"].get(tag, []))}

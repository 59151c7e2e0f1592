"""Membernode commands for delivery tests: faults, forced reconnects, recorded workloads.

Mixed into `membernode.MemberNode` (docs/delivery.md). Every message of a
workload is recorded with `history.record_send` / `record_receive`, so the
test judges the run with `history.check_history` over the event logs, as a
user would judge theirs.

Commands: ``fault`` (op, args) — ``node.faults.<op>(**args)`` for ``drop``,
``delay``, ``duplicate``, ``partition`` (groups), ``heal``, ``clear``,
``seed`` · ``cut`` (peer) — end the link to `peer` as a failure would (the
manager re-dials: a forced reconnect) · ``sink`` (name, forward_to) — an
actor registered as `name` that records each ``(id, key)`` it gets and, with
`forward_to`, forwards it on as ``id + "/fwd"`` · ``load`` (target, actors,
count, channel, tag) — `actors` actors each send `count` messages to
``("sink", target)`` (actor 0 cuts the link every `cut_every` of its
messages: forced reconnects), retrying on `Overloaded`/`NotConnected` (only a
successful send is recorded); with `also`, each message to `target` is
followed by one to ``("sink", also)`` (the causal scenario: `also` forwards
it to `target`); `transitive` relays the sends to `target`; `pace` yields
to the loop after each round (otherwise an actor sends its whole share in one
go and injected delays all fire after it); answers once every actor is done · ``fill``
(target, channel, size, limit, tag, patience) — send ``size``-byte messages to
``("sink", target)`` until `send` raises `Overloaded` for `patience` seconds in a row
(or `limit` were sent; a transport budget that the receiver is draining frees within
it), recording each that went; answers how many and the last error · ``dstats`` — the delivery and fault statistics.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import partisan
from partisan.actors import api
from partisan.errors import NotConnected, Overloaded
from partisan.testing.history import record_receive, record_send

__all__ = ["DeliveryCommands"]


class DeliveryCommands:
    """The commands above; `self.node` is the member's `Node`."""

    node: Any

    async def cmd_fault(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        faults = self.node.faults
        args = dict(args or {})
        if op == "partition":
            faults.partition(*args.get("groups", []))
            return {}
        result = getattr(faults, op)(**args)
        return {"result": result}

    async def cmd_cut(self, peer: str) -> dict[str, Any]:
        self.node.links.cut(peer, "connection_closed")
        return {}

    async def cmd_sink(
        self, name: str = "sink", channel: str = "default", forward_to: str | None = None
    ) -> dict[str, Any]:
        async def sink() -> None:
            while True:
                msg = await partisan.receive()
                if not (isinstance(msg, tuple) and len(msg) >= 3):
                    continue
                msg_id, key, sender = msg[:3]  # a 4th item is `fill`'s ballast
                record_receive(msg_id, sender, key=key, channel=channel)
                if forward_to is not None:
                    fwd = msg_id + "/fwd"
                    await _send(("sink", forward_to), (fwd, key, api.node()), channel)
                    record_send(fwd, forward_to, key=key, channel=channel)

        await partisan.spawn(sink, name=name)
        return {}

    async def cmd_load(
        self, target: str, actors: int, count: int, channel: str, tag: str = "m",
        also: str | None = None, cut_every: int = 0, transitive: bool = False,
        pace: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        me = api.node()
        cuts = 0

        async def worker(n: int) -> None:
            key = f"{me}.{tag}.{n}"
            nonlocal cuts
            for i in range(count):
                if n == 0 and cut_every and i and i % cut_every == 0:
                    self.node.links.cut(target, "connection_closed")  # a forced reconnect
                    cuts += 1
                msg_id = f"{key}.{i}"
                await _send(("sink", target), (msg_id, key, me), channel, transitive)
                record_send(msg_id, target, key=key, channel=channel)
                if also is not None:  # the causal scenario: to `target`, then to `also`
                    await _send(("sink", also), (msg_id + "/a", key, me), channel)
                    record_send(msg_id + "/a", also, key=key, channel=channel)
                if pace:  # yield each round: timers (delayed copies) fire on time
                    await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(worker(n)) for n in range(actors)]
        await asyncio.gather(*tasks)
        return {"sent": actors * count, "cuts": cuts}

    async def cmd_fill(
        self, target: str, channel: str, size: int, limit: int, tag: str = "fill",
        patience: float = 2.0,
    ) -> dict[str, Any]:  # fmt: skip
        me = api.node()
        key = f"{me}.{tag}"
        ballast = bytes(size)
        loop = asyncio.get_running_loop()
        for i in range(limit):
            msg_id = f"{key}.{i}"
            refused_since = None
            while True:
                try:
                    partisan.send(("sink", target), (msg_id, key, me, ballast), channel=channel)
                    break
                except Overloaded as exc:
                    refused_since = refused_since or loop.time()
                    if loop.time() - refused_since >= patience:
                        return {"sent": i, "error": str(exc)}
                    await asyncio.sleep(0.01)  # the app's retry, not a test's wait
            record_send(msg_id, target, key=key, channel=channel)
        return {"sent": limit, "error": None}

    async def cmd_dstats(self) -> dict[str, Any]:
        delivery = self.node.dist.delivery
        return {
            "delivery": None if delivery is None else dataclasses.asdict(delivery.statistics()),
            "faults": {
                k: v
                for k, v in dataclasses.asdict(self.node.faults.statistics()).items()
                if k not in ("rules", "partition")
            },
        }


async def _send(dest: Any, msg: Any, channel: str, transitive: bool = False) -> None:
    """Send, waiting out `Overloaded` and a link that is being re-dialled."""
    delay = 0.001
    while True:
        try:
            partisan.send(dest, msg, channel=channel, transitive=transitive)
            return
        except (Overloaded, NotConnected):
            await asyncio.sleep(delay)  # backoff for the app's retry, not a test's wait
            delay = min(delay * 2, 0.05)

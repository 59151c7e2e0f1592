"""A scriptable full `Node` process for membership tests: ``python -m partisan.testing.membernode``.

It takes the options of ``partisan node start`` (``--manager``, ``--role``,
``--set hyparview.active_size=2`` ...), prints the same ready line, and obeys
one JSON command per line on stdin, answering ``{"id", "ok": true, ...}`` (the
protocol of `partisan.testing.testnode`, so `NodeProcess.request` drives it).
Closing stdin stops the node gracefully.

Commands: ``join`` (target) · ``leave`` (node, optional) · ``view`` — members,
nodes, the manager's active and passive views · ``events`` — every
`NodeUp`/`NodeDown` the application saw, in order · ``serve`` (name) — start
an echo actor registered as `name` that answers every call with
``[node, request]`` · ``calls`` (target, node, count) — call such an actor
and return the round trips · ``drops`` — the runtime's drop counters ·
``security`` — rejected frames, refused HELLOs, decoder calls, the ZAP
handler's decisions, revocations and the RSS · ``exit``.

Broadcast and relay (docs/broadcast.md): an actor registered as ``"bc"``
records every message it gets. ``broadcast`` (count, tag) calls
`partisan.broadcast((tag, self, i), name="bc")` for i in 0..count-1 ·
``relay`` (target, count, tag) sends ``(tag, self, i)`` to ``("bc", target)``
with ``transitive=True`` · ``received`` (tag) — ``[origin, i]`` of each
recorded message with that tag, in arrival order · ``count`` (tag) — how
many, and how many distinct · ``bstats`` — the
`BroadcastStatistics` and `RelayStatistics` of the node, and its broadcast
neighbours.

Delivery (docs/delivery.md): ``fault``, ``cut``, ``sink``, ``load``,
``dstats`` — see `partisan.testing.delivery_commands`. Local chaos scenarios
(docs/reliability.md): ``whereis``, ``send_to``, ``slow_sink``, ``flood``,
``ticker``, ``lag``, ``crash_loop`` — see `partisan.testing.local_commands`.
Soak workload (docs/reliability.md): ``wsetup``, ``workload``,
``workload_stop``, ``wstats`` — see `partisan.testing.workload_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

import partisan
from partisan.actors import api
from partisan.actors.signals import Call, NodeDown, NodeUp
from partisan.commands.node import (
    add_node_arguments,
    config_from_args,
    configure_logging,
    ready_line,
)
from partisan.node import Node
from partisan.testing.delivery_commands import DeliveryCommands
from partisan.testing.local_commands import LocalCommands
from partisan.testing.net_commands import NetCommands
from partisan.testing.workload_commands import WorkloadCommands


class MemberNode(DeliveryCommands, LocalCommands, NetCommands, WorkloadCommands):
    """Runs the node and answers the harness's commands."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.events: list[dict[str, Any]] = []
        self.received: list[Any] = []
        self.stop = asyncio.Event()

    async def watcher(self) -> None:
        """The application's view of node transitions (monitor_node for every visible node)."""
        partisan.monitor_node(None)
        while True:
            msg = await partisan.receive()
            if isinstance(msg, NodeUp):
                self.events.append({"event": "up", "node": msg.node})
            elif isinstance(msg, NodeDown):
                self.events.append({"event": "down", "node": msg.node, "reason": msg.reason})

    async def cmd_join(self, target: str) -> dict[str, Any]:
        spec = await self.node.join(target)
        return {"peer": str(spec)}

    async def cmd_leave(self, node: str | None = None) -> None:
        await self.node.leave(node)

    async def cmd_view(self) -> dict[str, Any]:
        service = self.node.peer_service
        manager = service.manager if service is not None else None
        return {
            "members": self.node.members(),
            "nodes": self.node.nodes(),
            "active": sorted(s.name for s in manager.active()) if manager else [],
            "passive": sorted(s.name for s in manager.passive()) if manager else [],
        }

    async def cmd_serve(self, name: str) -> dict[str, Any]:
        pid = await partisan.spawn(_echo, name=name)
        return {"pid": str(pid)}

    async def cmd_drops(self) -> dict[str, Any]:
        return {"drops": dict(self.node.statistics().drops)}

    async def cmd_events(self) -> dict[str, Any]:
        return {"events": list(self.events)}

    async def cmd_security(self) -> dict[str, Any]:
        """Link rejections, refusals, decoder calls, ZAP decisions, revocations; RSS."""
        links = self.node.links
        stats = links.statistics()
        auth = links.auth_statistics()
        return {
            "rejected": dict(stats.rejected),
            "refused": stats.refused,
            "decoded": stats.decoded,
            "handshakes": stats.handshakes,
            "auth": dataclasses.asdict(auth) if auth is not None else None,
            "revoked": links.revoked,
            "rss": _rss(),
        }

    async def cmd_calls(self, target: str, node: str, count: int) -> dict[str, Any]:
        """Call the echo actor `target` on `node` `count` times; the round trips in ms."""
        loop = asyncio.get_running_loop()
        rtts = []
        for i in range(count):
            start = loop.time()
            await partisan.call((target, node), i, timeout=5.0)
            rtts.append((loop.time() - start) * 1000)
        return {"rtts": rtts}

    async def cmd_exit(self) -> None:
        self.stop.set()

    async def receiver(self) -> None:
        """The ``"bc"`` actor: records what broadcasts and relays deliver."""
        while True:
            self.received.append(await partisan.receive())

    async def cmd_broadcast(self, count: int, tag: str) -> dict[str, Any]:
        for i in range(count):
            partisan.broadcast((tag, self.node.name, i), name="bc")
        return {"sent": count}

    async def cmd_relay(self, target: str, count: int, tag: str) -> dict[str, Any]:
        for i in range(count):
            partisan.send(("bc", target), (tag, self.node.name, i), transitive=True)
        return {"sent": count}

    async def cmd_received(self, tag: str) -> dict[str, Any]:
        items = [
            [m[1], m[2]] for m in self.received if type(m) is tuple and len(m) == 3 and m[0] == tag
        ]
        return {"items": items}

    async def cmd_count(self, tag: str) -> dict[str, Any]:
        """How many recorded messages carry `tag` (and how many distinct ones): cheap to poll."""
        items = [
            (m[1], m[2]) for m in self.received if type(m) is tuple and len(m) == 3 and m[0] == tag
        ]
        return {"count": len(items), "distinct": len(set(items))}

    async def cmd_bstats(self) -> dict[str, Any]:
        service = self.node.peer_service
        if service is None:
            return {"broadcast": None, "relay": None, "neighbors": []}
        return {
            "broadcast": dataclasses.asdict(service.broadcasts.statistics()),
            "relay": dataclasses.asdict(service.relay.statistics()),
            "neighbors": [s.name for s in service.broadcasts.neighbors()],
        }

    async def execute(self, line: bytes) -> None:
        ident = None
        try:
            request = json.loads(line)
            ident = request.pop("id")
            handler = getattr(self, "cmd_" + request.pop("cmd"))
            answer = {"id": ident, "ok": True, **(await handler(**request) or {})}
        except Exception as exc:  # reported to the harness, which raises it in the test
            answer = {"id": ident, "ok": False, "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)


def _rss() -> int | None:
    """This process's resident set size in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


async def _echo() -> None:
    """Answer every call with ``[this node, request]``; ignore anything else."""
    while True:
        msg = await partisan.receive()
        if isinstance(msg, Call):
            partisan.reply(msg.caller, [api.node(), msg.request])


async def _main(config: Any, join: list[str]) -> None:
    async with Node(config=config) as node:
        member = MemberNode(node)
        await partisan.spawn(member.watcher)
        await partisan.spawn(member.receiver, name="bc")
        for contact in join:
            await node.join(contact)
        assert node.spec is not None
        print(ready_line(node.spec), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while not member.stop.is_set():
            line = await reader.readline()
            if not line:
                break
            task = asyncio.ensure_future(member.execute(line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partisan.testing.membernode")
    add_node_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args)
    configure_logging(config)
    asyncio.run(_main(config, list(args.join or [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A scriptable node process for transport tests: ``python -m partisan.testing.testnode NAME ...``.

It takes the options of ``partisan node start``, prints the same ready line,
and then obeys commands, one JSON object per line on stdin, answering each on
stdout as ``{"id": <the command's id>, "ok": true, ...}`` or ``{"id", "ok":
false, "error": <exception type>, "message"}``. Commands run concurrently, so
a long ``send`` does not block ``stats``. Closing stdin stops the node.

Commands (arguments in parentheses):

``connect`` (target, timeout) · ``open_all_lanes`` (peer) · ``disconnect`` (peer)
``send`` (peer, channel, count, size, dest, key, wait) — count messages
``("m", sender, channel, key, tag, i, padding)``, ``i`` from 0, waiting for room
when ``wait`` · ``stream`` (peer, channel, interval, size) — send until
``stop_stream``, tagging each message with how many times the link came up ·
``keep_connected`` (target) — re-dial whenever the link is down ·
``overload`` (peer, channel, size, limit) — send until `Overloaded` ·
``received`` — counts per sender/channel, order violations and a run-length
log of messages and link events · ``events`` · ``stats`` · ``rss`` ·
``pause_receiving`` / ``resume_receiving`` · ``exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from partisan.commands.node import add_node_arguments, config_from_args, ready_line
from partisan.errors import NotConnected, Overloaded, PartisanError
from partisan.identity import NodeSpec
from partisan.transport.links import Links

log = logging.getLogger(__name__)


class Recorder:
    """The test node's LinkHandler: counts, order checks and a run-length event log."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.last: dict[tuple[Any, ...], int] = {}
        self.disorder = 0
        self.gaps = 0
        self.log: list[list[Any]] = []
        self.events: list[dict[str, Any]] = []
        self.ups: dict[str, int] = {}
        self.changed = asyncio.Event()

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        key = f"{sender.name}/{channel}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if not (isinstance(payload, tuple) and len(payload) == 7 and payload[0] == "m"):
            return
        _, name, sent_channel, part, tag, i, pad = payload
        self.bytes[key] = self.bytes.get(key, 0) + len(pad)
        order_key = (name, sent_channel, repr(part), tag)
        last = self.last.get(order_key, -1)
        if i <= last:
            self.disorder += 1
        elif i != last + 1:
            self.gaps += 1
        self.last[order_key] = i
        entry = self.log[-1] if self.log else None
        if entry and entry[0] == "msg" and entry[1:4] == [name, sent_channel, tag]:
            entry[5] = i
            entry[6] += 1
        else:
            self.log.append(["msg", name, sent_channel, tag, i, i, 1])

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        self.ups[peer.name] = self.ups.get(peer.name, 0) + 1
        self._event("up", peer, hidden=hidden)

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        self._event("down", peer, reason=reason)

    def _event(self, kind: str, peer: NodeSpec, **extra: Any) -> None:
        self.events.append(
            {
                "event": kind,
                "peer": peer.name,
                "incarnation": peer.incarnation,
                "t": time.monotonic(),
                **extra,
            }
        )
        self.log.append([kind, peer.name, extra.get("reason")])
        self.changed.set()


class TestNode:
    """Links plus a JSON-lines command interpreter."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Any) -> None:
        self.config = config
        self.recorder = Recorder()
        self.links = Links(config, incarnation=time.time_ns(), handler=self.recorder)
        self.streams: dict[str, dict[str, int]] = {}
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def run(self, join: list[str]) -> None:
        spec = await self.links.start()
        for contact in join:
            await self.links.connect(contact)
        print(ready_line(spec), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            while not self.stop.is_set():
                read = asyncio.ensure_future(reader.readline())
                stopped = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not read.done():
                    read.cancel()
                    break
                line = read.result()
                if not line:
                    break
                self._spawn(self._execute(line))
        finally:
            for task in list(self.tasks):
                task.cancel()
            await self.links.close(flush_timeout=1.0)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _execute(self, line: bytes) -> None:
        ident = None
        try:
            request = json.loads(line)
            ident = request.pop("id")
            handler = getattr(self, "cmd_" + request.pop("cmd"))
            answer = {"id": ident, "ok": True, **(await handler(**request) or {})}
        except Exception as exc:  # reported to the harness, which raises it in the test
            answer = {"id": ident, "ok": False, "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer, default=_jsonable), flush=True)

    # ------------------------------------------------------------ commands

    async def cmd_ping(self) -> dict[str, Any]:
        return {"name": self.config.name}

    async def cmd_connect(self, target: str, timeout: float | None = None) -> dict[str, Any]:
        spec = await self.links.connect(target, timeout=timeout)
        return {"peer": str(spec), "incarnation": spec.incarnation}

    async def cmd_open_all_lanes(self, peer: str) -> None:
        await self.links.open_all_lanes(peer)

    async def cmd_disconnect(self, peer: str) -> None:
        self.links.disconnect(peer)

    async def cmd_send(
        self,
        peer: str,
        channel: str = "default",
        count: int = 1,
        size: int = 0,
        dest: str = "sink",
        key: Any = None,
        wait: bool = True,
        tag: Any = 0,
    ) -> dict[str, Any]:
        pad = b"x" * size
        overloaded = 0
        name = self.config.name
        for i in range(count):
            payload = ("m", name, channel, key, tag, i, pad)
            if wait:
                await self.links.send_wait(peer, channel, dest, payload, partition_key=key)
            else:
                try:
                    self.links.send(peer, channel, dest, payload, partition_key=key)
                except Overloaded:
                    overloaded += 1
            if i % 256 == 255:
                await asyncio.sleep(0)  # let the loop read credits
        return {"sent": count - overloaded, "overloaded": overloaded}

    async def cmd_stream(
        self, peer: str, channel: str = "default", interval: float = 0.002, size: int = 0
    ) -> None:
        counters = self.streams[peer + "/" + channel] = {"sent": 0, "skipped": 0}

        async def stream() -> None:
            i = 0
            pad = b"x" * size
            while True:
                tag = self.recorder.ups.get(peer, 0)
                if not self.links.is_connected(peer):
                    counters["skipped"] += 1
                    await asyncio.sleep(interval)
                    continue
                try:
                    payload = ("m", self.config.name, channel, None, tag, i, pad)
                    self.links.send(peer, channel, "sink", payload)
                    counters["sent"] += 1
                    i += 1
                except (NotConnected, Overloaded):
                    counters["skipped"] += 1
                await asyncio.sleep(interval)

        counters["task"] = id(self._spawn(stream()))

    async def cmd_stop_stream(self) -> dict[str, Any]:
        for task in list(self.tasks):
            if id(task) in {c.get("task") for c in self.streams.values()}:
                task.cancel()
        return {
            "streams": {
                k: {"sent": v["sent"], "skipped": v["skipped"]} for k, v in self.streams.items()
            }
        }

    async def cmd_keep_connected(self, target: str) -> None:
        name = NodeSpec.parse(target).name

        async def keep() -> None:
            while True:
                if not self.links.is_connected(name):
                    try:
                        await self.links.connect(target, timeout=self.config.handshake_timeout)
                    except PartisanError as exc:
                        log.info("re-dial of %s failed: %s", target, exc)
                        await asyncio.sleep(self.config.reconnect_interval)
                        continue
                self.recorder.changed.clear()
                await self.recorder.changed.wait()

        self._spawn(keep())

    async def cmd_overload(
        self, peer: str, channel: str = "default", size: int = 65536, limit: int = 100_000
    ) -> dict[str, Any]:
        rss_before = _rss()
        pad = b"x" * size
        sent = 0
        overloaded = False
        for i in range(limit):
            try:
                self.links.send(
                    peer, channel, "sink", ("m", self.config.name, channel, None, 0, i, pad)
                )
            except Overloaded:
                overloaded = True
                break
            sent += 1
        stats = self.links.statistics().peer(peer)
        return {
            "sent": sent,
            "overloaded": overloaded,
            "outstanding": stats.outstanding_bytes if stats else None,
            "rss_before": rss_before,
            "rss_after": _rss(),
        }

    async def cmd_received(self) -> dict[str, Any]:
        r = self.recorder
        return {
            "counts": r.counts,
            "bytes": r.bytes,
            "disorder": r.disorder,
            "gaps": r.gaps,
            "log": r.log,
        }

    async def cmd_events(self) -> dict[str, Any]:
        return {"events": self.recorder.events, "now": time.monotonic()}

    async def cmd_stats(self) -> dict[str, Any]:
        return {"stats": dataclasses.asdict(self.links.statistics())}

    async def cmd_rss(self) -> dict[str, Any]:
        return {"rss": _rss()}

    async def cmd_pause_receiving(self) -> None:
        self.links.pause_receiving()

    async def cmd_resume_receiving(self) -> None:
        self.links.resume_receiving()

    async def cmd_exit(self) -> None:
        self.stop.set()


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return repr(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m partisan.testing.testnode")
    add_node_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s {config.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    node = TestNode(config)
    asyncio.run(node.run(args.join))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())

"""Membernode commands for soak tests: a steady, recorded mix of traffic to every peer.

Mixed into `membernode.MemberNode`. Why a workload of its own: the chaos
soak (docs/reliability.md, R4) must judge every kind of traffic a user
sends while faults come and go, from the event logs alone, so every node
incarnation records what it sent, what it got and what each outcome was.

Commands: ``workload`` (peers, period, acked, plain, bcast_every) — start,
until ``workload_stop``, for each peer in `peers`:

* a **sender** actor: every `period` seconds one message on the `acked`
  channel awaited until acknowledged (``send(wait=True)``), one cast on
  `acked`, one send and one cast on the `plain` channel, all to the peer's
  ``"wsink"`` actor, all with the actor's own partition key (one stream per
  (sender incarnation, peer, channel)). Each is an ``app.send``
  (`record_send`) with an id unique across the cluster
  (``node.incarnation.peer.channel.i``); a send the runtime refused at once
  (`NotConnected`, `Overloaded`) is then marked ``app.unsent``; an awaited
  send ends as ``app.acked`` or ``app.ack_failed`` (`DeliveryError`'s reason);
* a **caller** actor: every `period` seconds a call to the peer's ``"echo"``
  actor, each outcome an ``app.call`` record (``ok``, ``exit``, ``timeout``,
  ``unreachable``, or ``mismatch`` when the reply is not the answer to this
  request: a duplicated or misrouted reply);
* a **watcher** actor: once the peer is up, links to and monitors the
  peer's ``"wpartner"`` actor (``app.watch``, with a watch id) and records
  the `Exit` (``app.exit``) and the `Down` (``app.down``) it gets, then
  watches again: "exactly once per incarnation" is judged from these.

Plus the node's own ``"wsink"`` (each message an ``app.receive`` through
`record_receive`), ``"wpartner"`` (answers a call with its pid), ``"echo"``
and a broadcaster: every `bcast_every` seconds a `partisan.broadcast` to
``"wbc"`` (``app.bcast``), whose deliveries are ``app.bdeliver`` records.

``wsetup`` — only start those actors of the node's own (start them
everywhere before any workload, so no first message finds no sink; a
sender also pings the peer's ``wsink`` before its first send and after any
failure, since a restarted peer registers it late) · ``workload_stop`` —
stop starting new work, wait (up to `timeout`) for what
is in flight, answer the counts · ``wstats`` — the counts so far.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import partisan
from partisan.actors import api
from partisan.actors.signals import Call, Cast, Down, Exit
from partisan.errors import CallExit, CallTimeout, DeliveryError, NotConnected, Overloaded
from partisan.testing.history import record_down, record_receive, record_send

__all__ = ["WorkloadCommands"]

#: Seconds a watcher waits for the second of Exit/Down once the first came.
_PAIR_WAIT = 10.0


class WorkloadCommands:
    """The commands above; `self.node` is the member's `Node`."""

    node: Any
    _wl_stop: asyncio.Event | None = None
    _wl_tasks: list[asyncio.Future[Any]]
    _wl_counts: Counter[str]

    async def cmd_workload(
        self, peers: list[str], period: float = 0.1, acked: str = "ack",
        plain: str = "default", bcast_every: float = 2.0,
    ) -> dict[str, Any]:  # fmt: skip
        if self._wl_stop is not None and not self._wl_stop.is_set():
            raise RuntimeError("a workload already runs on this node")
        self._wl_stop = stop = asyncio.Event()
        self._wl_counts = Counter()
        self._wl_tasks = []
        await self._wl_actors()
        for peer in peers:
            for body in (self._wl_sender, self._wl_caller, self._wl_watcher):
                self._wl_tasks.append(await _spawn_task(body, peer, period, acked, plain, stop))
        self._wl_tasks.append(await _spawn_task(self._wl_broadcaster, bcast_every, stop))
        return {"actors": len(self._wl_tasks)}

    async def cmd_wsetup(self) -> dict[str, Any]:
        """Only this node's own actors (``wsink`` ...): before any peer sends to them."""
        await self._wl_actors()
        return {}

    async def cmd_workload_stop(self, timeout: float = 45.0) -> dict[str, Any]:
        if self._wl_stop is None:
            return {"counts": {}}
        self._wl_stop.set()
        await asyncio.wait(self._wl_tasks, timeout=timeout)
        pending = sum(1 for t in self._wl_tasks if not t.done())
        return {"counts": dict(self._wl_counts), "pending": pending}

    async def cmd_wstats(self) -> dict[str, Any]:
        return {"counts": dict(getattr(self, "_wl_counts", {}))}

    # ------------------------------------------------------------ the node's own actors

    async def _wl_actors(self) -> None:
        """``wsink``, ``wpartner``, ``wbc`` and (unless served already) ``echo``."""
        if api.whereis("echo") is None:
            await self.cmd_serve("echo")  # type: ignore[attr-defined]  # MemberNode's
        if api.whereis("wsink") is not None:
            return

        async def sink() -> None:
            while True:
                msg = await partisan.receive()
                if isinstance(msg, Cast):
                    msg = msg.request
                if isinstance(msg, tuple) and len(msg) == 4:
                    msg_id, key, sender, channel = msg
                    record_receive(msg_id, sender, key=key, channel=channel)

        async def partner() -> None:
            partisan.trap_exit(True)  # linked from every peer: a lost peer must not kill it
            while True:
                msg = await partisan.receive()
                if isinstance(msg, Call):
                    partisan.reply(msg.caller, api.self())

        async def bc() -> None:
            while True:
                msg = await partisan.receive()
                if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "wbc":
                    self.node.event_log.write("app.bdeliver", peer=msg[1], id=msg[2])

        await partisan.spawn(sink, name="wsink")
        await partisan.spawn(partner, name="wpartner")
        await partisan.spawn(bc, name="wbc")

    # ------------------------------------------------------------ per-peer actors

    def _wl_prefix(self, peer: str, what: str) -> str:
        return f"{self.node.name}.{self.node.incarnation}.{peer}.{what}"

    async def _wl_sender(
        self, peer: str, period: float, acked: str, plain: str, stop: asyncio.Event
    ) -> None:
        log, count = self.node.event_log, self._wl_counts
        me = self.node.name
        keys = {ch: self._wl_prefix(peer, ch) for ch in (acked, plain)}
        rounds, ready = 0, False
        while not stop.is_set():
            if not ready:  # (again) after a failure: the peer may be a new incarnation
                ready = await _sink_ready(peer, stop)
                continue
            for k, (channel, waited, how) in enumerate((
                (acked, True, "send"), (acked, False, "cast"),
                (plain, False, "send"), (plain, False, "cast"),
            )):  # fmt: skip
                key = keys[channel]
                msg_id = f"{key}.{rounds * 4 + k}"  # so id % 4 says which of the four
                msg = (msg_id, key, me, channel)
                life = self.node.dist.incarnations.get(peer)  # the life this send addresses
                record_send(msg_id, peer, key=key, channel=channel, peer_incarnation=life)
                try:
                    if waited:
                        await partisan.send(
                            ("wsink", peer), msg, channel=channel, partition_key=key, wait=True
                        )
                        log.write("app.acked", peer=peer, id=msg_id)
                    elif how == "cast":
                        partisan.cast(("wsink", peer), msg, channel=channel, partition_key=key)
                    else:
                        partisan.send(("wsink", peer), msg, channel=channel, partition_key=key)
                    count[f"{channel}.{how}"] += 1
                except DeliveryError as exc:
                    log.write("app.ack_failed", peer=peer, id=msg_id, reason=exc.reason)
                    count[f"{channel}.failed.{exc.reason}"] += 1
                    ready = False
                except (NotConnected, Overloaded) as exc:
                    log.write("app.unsent", peer=peer, id=msg_id, reason=type(exc).__name__)
                    count[f"{channel}.unsent"] += 1
                    ready = False
                if not ready:  # the rest of the round waits for the peer's sink again
                    break
            rounds += 1
            await _pause(period, stop)

    async def _wl_caller(
        self, peer: str, period: float, acked: str, plain: str, stop: asyncio.Event
    ) -> None:
        log, count = self.node.event_log, self._wl_counts
        i = 0
        while not stop.is_set():
            request = self._wl_prefix(peer, f"call.{i}")
            i += 1
            try:
                answer = await partisan.call(("echo", peer), request, timeout=2.0)
                outcome = "ok" if answer == [peer, request] else "mismatch"
            except CallExit:
                outcome = "exit"
            except CallTimeout:
                outcome = "timeout"
            except (NotConnected, Overloaded):
                outcome = "unreachable"
            count[f"call.{outcome}"] += 1
            log.write("app.call", peer=peer, id=request, reason=outcome)
            await _pause(period, stop)

    async def _wl_watcher(
        self, peer: str, period: float, acked: str, plain: str, stop: asyncio.Event
    ) -> None:
        """Link to and monitor the peer's ``wpartner``; each Exit/Down recorded once seen."""
        partisan.trap_exit(True)
        log, count = self.node.event_log, self._wl_counts
        i = 0
        while not stop.is_set():
            if peer not in api.nodes():
                await _pause(0.2, stop)  # the app's own poll for its peer, not a test wait
                continue
            try:
                pid = await partisan.call(("wpartner", peer), "pid", timeout=2.0)
            except (CallExit, CallTimeout, NotConnected, Overloaded):
                await _pause(0.2, stop)
                continue
            wid = self._wl_prefix(peer, f"watch.{i}")
            i += 1
            partisan.link(pid)
            ref = partisan.monitor(pid)
            log.write("app.watch", peer=peer, id=wid, pid=str(pid))
            count["watch"] += 1
            seen: set[str] = set()
            loop = asyncio.get_running_loop()
            deadline: float | None = None  # set once the first of Exit/Down came
            while len(seen) < 2:
                if deadline is not None and loop.time() > deadline:
                    log.write("app.unpaired", peer=peer, id=wid, seen=sorted(seen))
                    break
                if stop.is_set() and not seen:  # the peer is still up: stop watching
                    partisan.unlink(pid)
                    partisan.demonitor(ref, flush=True)
                    log.write("app.unwatch", peer=peer, id=wid)
                    break
                try:
                    msg = await partisan.receive(
                        lambda m, r=ref, p=pid: (
                            (isinstance(m, Down) and m.ref == r)
                            or (isinstance(m, Exit) and m.pid == p)
                        ),
                        timeout=0.5,
                    )
                except partisan.ReceiveTimeout:
                    continue
                kind = "down" if isinstance(msg, Down) else "exit"
                log.write(f"app.{kind}", peer=peer, id=wid, reason=str(msg.reason))
                if kind == "down":
                    record_down(msg)  # the checker's own Down-once check, by ref
                count[kind] += 1
                seen.add(kind)
                deadline = loop.time() + _PAIR_WAIT
            await _pause(period, stop)

    async def _wl_broadcaster(self, every: float, stop: asyncio.Event) -> None:
        log, me, i = self.node.event_log, self.node.name, 0
        while not stop.is_set():
            await _pause(every, stop)
            bid = f"{me}.{self.node.incarnation}.bc.{i}"
            i += 1
            try:
                partisan.broadcast(("wbc", me, bid), name="wbc")
            except NotConnected:
                continue
            log.write("app.bcast", id=bid)
            self._wl_counts["bcast"] += 1


async def _spawn_task(body: Any, *args: Any) -> asyncio.Future[Any]:
    """Spawn `body(*args)` as an actor; a future that completes when it returns."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def run() -> None:
        try:
            await body(*args)
        finally:
            if not done.done():
                done.set_result(None)

    await partisan.spawn(run)
    return done


async def _sink_ready(peer: str, stop: asyncio.Event) -> bool:
    """True once the peer's ``wsink`` answers a ping (a restarted peer registers it late)."""
    try:
        if await partisan.ping(("wsink", peer), timeout=1.0):
            return True
    except (NotConnected, Overloaded):
        pass
    await _pause(0.2, stop)  # the app's own retry pace
    return False


async def _pause(seconds: float, stop: asyncio.Event) -> None:
    """The workload's pacing: `seconds`, cut short by `stop`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

"""The hidden node that polls a running local cluster: `Observer` turns it into `ClusterSnapshot`s.

``partisan cluster status/top/wait/graph`` all need the same thing: every
node of the cluster as it is now, assessed. The cluster daemon's record
(``DIR/cluster.json``, see `layout`) says which nodes should exist, where they
listen and which OS process runs each; the nodes themselves say what they
see (`probe.report`, over `partisan.rpc`); psutil says what the OS thinks of
each process; and the event logs say how long the latest repair took. An
`Observer` is a hidden node (no membership manager, invisible in every
node's views) that combines the four, once per `Observer.snapshot` call.

Cost and latency, because ``top`` polls every second and ``wait`` in a loop:

* joins run in the background (one task per node), so a node that does not
  answer its dial costs a snapshot at most `timeout`, never a handshake
  timeout; a node that restarted (a new incarnation in cluster.json) is
  dialled again;
* every node is asked concurrently, each with the same `timeout` budget for
  its join and its rpc, so a snapshot takes about the slowest answer, capped
  at `timeout` (plus the local work);
* cluster.json is parsed again only when it was replaced (the daemon writes
  it atomically, so a new inode or mtime means a new document), and event
  logs are read incrementally (`events.EventTail`): only what they gained.

How a node's state is decided from those sources (PAUSED, ``timeout``,
``process gone`` ...) is `observer_status`: pure functions, unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

import partisan
from partisan.cluster.health import assess
from partisan.cluster.layout import ClusterDir
from partisan.cluster.observer_status import (
    ProcessInfo,
    RepairClock,
    as_int,
    node_status,
    process_info,
)
from partisan.cluster.probe import report
from partisan.cluster.snapshot import ClusterSnapshot
from partisan.errors import CallExit, CallTimeout, JoinRefused, NotConnected

__all__ = ["Observer"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- the observer


class Observer:
    """A hidden node polling the cluster in `cluster`; ``async with Observer(...) as obs``.

    `name` must have a key in DIR/keys (`layout.CliIdentity` makes one).
    `timeout` bounds how long one node's join and rpc may take per snapshot.
    Entering dials every up node and waits up to `connect_timeout` for those
    dials: a one-shot ``status`` must not report a healthy node as
    ``timeout`` just because its first CURVE handshake was still in flight
    (64 concurrent dials take ~0.5 s on two cores).
    """

    def __init__(
        self,
        cluster: ClusterDir,
        name: str,
        *,
        timeout: float = 0.5,
        connect_timeout: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.node: partisan.Node | None = None
        #: The latest snapshot (None before the first).
        self.previous: ClusterSnapshot | None = None
        self._joins: dict[str, asyncio.Task[Any]] = {}
        self._answered: dict[str, int | None] = {}  # name -> the incarnation that answered
        self._repair = RepairClock()
        self._doc: dict[str, Any] | None = None
        self._doc_key: tuple[int, int, int] | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Observer:
        self.node = partisan.Node(
            self.name, hidden=True, key_dir=str(self.cluster.keys), host="127.0.0.1", port=0
        )
        await self.node.start()
        try:
            doc = self.cluster.read_state()
            if doc is not None:  # dial now: the first snapshot then finds the links up
                entries = _entries(doc)
                await self._connect(
                    entries, {e["name"]: process_info(e.get("os_pid")) for e in entries}
                )
                joins = [t for t in self._joins.values() if not t.done()]
                if joins:
                    await asyncio.wait(joins, timeout=self.connect_timeout)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        joins, self._joins = list(self._joins.values()), {}
        for task in joins:
            task.cancel()
        await asyncio.gather(*joins, return_exceptions=True)
        if self.node is not None:
            await self.node.stop()
            self.node = None

    # ------------------------------------------------------------ snapshot

    async def snapshot(self) -> ClusterSnapshot:
        """The cluster now, assessed (`health.assess`); ClusterError if DIR has no cluster."""
        node = self._running()
        async with self._lock:
            doc = self._state()
            entries = _entries(doc)
            procs = {e["name"]: process_info(e.get("os_pid")) for e in entries}
            await self._connect(entries, procs)
            with node.as_current():
                answers = await asyncio.gather(*(self._ask(e, procs[e["name"]]) for e in entries))
            plan = doc.get("plan")
            manager = str(
                doc.get("manager") or (plan.get("manager") if isinstance(plan, dict) else "")
            )
            statuses = []
            for entry, answer in zip(entries, answers, strict=True):
                name = entry["name"]
                incarnation = as_int(entry.get("incarnation"))
                before = name in self._answered and incarnation in (None, self._answered[name])
                if isinstance(answer, dict):
                    self._answered[name] = as_int(answer.get("incarnation")) or incarnation
                statuses.append(
                    node_status(
                        entry, manager, answer=answer, process=procs[name], answered_before=before
                    )
                )
            snapshot = assess(
                ClusterSnapshot(
                    manager=manager,
                    nodes=tuple(statuses),
                    taken_at=time.time(),
                    configured_links=tuple(
                        (str(a), str(b)) for a, b in doc.get("configured_links") or ()
                    ),
                )
            )
            self._repair.update(
                e.get("event_log") or self.cluster.event_log(e["name"]) for e in entries
            )
            repair = self._repair.last_repair_s(snapshot.converged, snapshot.taken_at)
            snapshot = snapshot.with_health(
                snapshot.converged, replace(snapshot.health, last_repair_s=repair)
            )
            self.previous = snapshot
            return snapshot

    async def rpc_all(self, fn: Any, *args: Any, timeout: float = 5.0) -> dict[str, Any]:
        """Run ``fn(*args)`` on every up node at once (by rpc): name -> answer or exception.

        Waits up to `timeout` for dials still in flight; the fault verbs use it
        (`partisan.cluster.fault_verbs`).
        """
        node = self._running()
        async with self._lock:
            entries = [
                e for e in _entries(self._state()) if e.get("state") == "up" and e.get("address")
            ]
            procs = {e["name"]: process_info(e.get("os_pid")) for e in entries}
            entries = [e for e in entries if procs[e["name"]].state not in ("gone", "stopped")]
            await self._connect(entries, procs)
            joins = [t for t in self._joins.values() if not t.done()]
            if joins:
                await asyncio.wait(joins, timeout=timeout)
            with node.as_current():
                answers = await asyncio.gather(
                    *(partisan.rpc(e["name"], fn, *args, timeout=timeout) for e in entries),
                    return_exceptions=True,
                )
        return {e["name"]: a for e, a in zip(entries, answers, strict=True)}

    def _running(self) -> partisan.Node:
        if self.node is None or not self.node.running:
            raise RuntimeError("Observer is not started: use `async with Observer(...)`")
        return self.node

    def _state(self) -> dict[str, Any]:
        """cluster.json, parsed again only when the daemon replaced it."""
        try:
            st = os.stat(self.cluster.state_file)
            key: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is None or key != self._doc_key or self._doc is None:
            self._doc = self.cluster.require_state()
            self._doc_key = key
        return self._doc

    async def _connect(
        self, entries: list[dict[str, Any]], procs: Mapping[str, ProcessInfo]
    ) -> None:
        """Start a background join to every up node we have no link to (or a stale one)."""
        node = self._running()
        linked = {spec.name: spec for spec in node.links.peers()}
        loop = asyncio.get_running_loop()
        for entry in entries:
            name, address = entry["name"], entry.get("address")
            info = procs.get(name, ProcessInfo())
            if entry.get("state") != "up" or not address or info.state in ("gone", "stopped"):
                continue
            spec = linked.get(name)
            if spec is not None:
                wanted = as_int(entry.get("incarnation"))
                if wanted is None or spec.incarnation >= wanted:
                    continue
                # The daemon restarted it: our link is to the old process (not yet
                # detected as dead); drop it so the next dial reaches the new one.
                logger.debug(
                    "observer: %s restarted (%d -> %d): redial", name, spec.incarnation, wanted
                )
                await node.leave(name)
            task = self._joins.get(name)
            if task is not None and not task.done():
                continue
            task = loop.create_task(node.join(f"{name}@{address}"), name=f"observe-join-{name}")
            task.add_done_callback(_retrieve)
            self._joins[name] = task

    async def _ask(
        self, entry: Mapping[str, Any], info: ProcessInfo
    ) -> dict[str, Any] | str | None:
        """`probe.report` of one node; else why not (None: not to be asked at all).

        One budget of `timeout` covers waiting for a dial in flight and the rpc.
        """
        name = entry["name"]
        if entry.get("state") != "up" or not entry.get("address"):
            return None
        if info.state in ("gone", "stopped"):
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        join = self._joins.get(name)
        if join is not None and not join.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(join), self.timeout)
        node = self._running()
        if join is not None and join.done() and not node.links.is_connected(name):
            failure = None if join.cancelled() else join.exception()
            if isinstance(failure, JoinRefused):  # e.g. the node does not hold our key
                return f"refused: {failure}"
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "timeout"
        try:
            answer = await partisan.rpc(name, report, timeout=remaining)
        except (CallTimeout, CallExit, NotConnected) as exc:
            logger.debug("observer: %s did not answer: %r", name, exc)
            return "timeout"
        except Exception as exc:  # the node ran report() and it raised (e.g. another version)
            return f"report failed: {exc}"
        return answer if isinstance(answer, dict) else f"report failed: got {type(answer).__name__}"


def _entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """cluster.json's node entries that have a name (anything else is skipped, not fatal)."""
    return [
        e for e in doc.get("nodes") or () if isinstance(e, dict) and isinstance(e.get("name"), str)
    ]


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A failed background join is expected (the node is dead); mark its exception seen."""
    if not task.cancelled():
        task.exception()


# ---------------------------------------------------------------- the live view's source

"""`Node`: one OS process's membership in a cluster — config, links and actor runtime on one loop.

::

    async with partisan.Node("a", port=0, key_dir="keys") as node:
        await node.join("b@127.0.0.1:9101")
        pid = await partisan.spawn(worker, node="b")

Composition: `Config.load(...)` from the keywords; a `Runtime` (actors,
named after the node, with this start's incarnation ``time.time_ns()``); a
`Distribution` (the remote half of the runtime, which is the transport's
`LinkHandler`); the transport `Links`; and, unless the node is hidden, a
`PeerService` (`partisan.peer_service`) that drives the configured membership
manager (``config.manager``) over those links: it stands in front of the
`Distribution` as the transport's handler. `members()` is the manager's view.

Inside the ``async with`` block, code outside any actor acts as the node's
main pseudo-actor: `partisan.self()` is its Pid and `partisan.receive()`
reads its mailbox. Leaving the block stops gracefully (`Node.stop`): leave
(no new joins), stop the root tree and then the other actors (reason
``"shutdown"``), flush outgoing queues within ``shutdown_timeout``, say BYE,
close sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from partisan.actors import api as actor_api
from partisan.actors.process import _current, set_default_runtime
from partisan.actors.remote import Distribution
from partisan.actors.runtime import Runtime, RuntimeStatistics
from partisan.config import Config
from partisan.delivery.faults import Faults
from partisan.errors import JoinRefused
from partisan.eventlog import EventLog, start_event_log
from partisan.identity import NodeSpec, Pid
from partisan.membership.types import Disconnect, DisconnectReason, Leave

__all__ = ["Node", "NodeStatistics", "node_of", "run"]

logger = logging.getLogger(__name__)

#: Running nodes by their runtime's id: code running *in* a node (an rpc, an
#: actor) finds its `Node` through `node_of(current().runtime)`.
_running: dict[int, Node] = {}


def node_of(runtime: Runtime) -> Node | None:
    """The started `Node` that owns `runtime`, or None (not a Node's, or stopped)."""
    node = _running.get(id(runtime))
    return node if node is not None and node.runtime is runtime else None


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """An immutable snapshot of a node: its actors, routing, drops and transport."""

    name: str
    incarnation: int
    hidden: bool
    nodes: tuple[str, ...]
    actors: int
    deepest_mailboxes: tuple[tuple[Pid, int], ...]
    routed_local: int
    routed_remote: int
    received_remote: int
    drops: dict[str, int] = field(default_factory=dict)
    runtime: RuntimeStatistics | None = None
    links: Any = None


class Node:
    """A partisan node: use as ``async with Node(name, **config) as node``."""

    def __init__(
        self,
        name: str | None = None,
        *,
        config: Config | None = None,
        config_file: str | None = None,
        links_factory: Callable[..., Any] | None = None,
        root: Any = None,
        **options: Any,
    ) -> None:
        if name is not None:
            options["name"] = name
        if config is None:
            config = Config.load(config_file, **options)
        elif options:
            config = config.replace(**options)
        self.config = config
        self.incarnation = time.time_ns()
        self._links_factory = links_factory
        self.runtime: Runtime | None = None
        self.dist: Distribution | None = None
        self.links: Any = None
        self.spec: NodeSpec | None = None
        self._token: Any = None
        #: The application's supervision tree (docs/supervision.md): started
        #: after the transport, stopped first. `self.root` is its RootTree.
        self._root_spec = root
        self.root: Any = None
        self._leaving = False
        #: The membership driver (None for a hidden node or a custom transport).
        self.peer_service: Any = None
        #: The JSON-lines event log (`config.event_log`; None when off).
        self.event_log: EventLog | None = None
        self._faults = Faults(self.config.name)

    # ----------------------------------------------------------- lifecycle

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def pid(self) -> Pid:
        """The main pseudo-actor's Pid."""
        return self._runtime().main.pid

    @property
    def running(self) -> bool:
        return self.runtime is not None and self.runtime.running

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError(f"node {self.name} is not started")
        return self.runtime

    async def start(self) -> Node:
        """Bind, start the runtime, and become the default node for code outside actors."""
        if self.runtime is not None:
            raise RuntimeError(f"node {self.name} was already started")
        runtime = Runtime(self.name, self.incarnation, call_timeout=self.config.call_timeout)
        dist = Distribution(runtime)
        factory = self._links_factory
        if factory is None:
            # Lazy on purpose: a node on a test transport never imports zmq.
            from partisan.transport.links import Links

            factory = Links
        # A real node drives a membership manager; a hidden node has none, and
        # a test transport (`links_factory`) keeps the plain connect-what-you-join
        # behaviour its tests were written for.
        links = factory(self.config, incarnation=self.incarnation, handler=dist)
        dist.links = links
        dist.gauge = getattr(links, "gauge", None)  # unread inbound bytes (Links only)
        self.spec = await links.start()
        self.runtime, self.dist, self.links = runtime, dist, links
        _running[id(runtime)] = self
        self.event_log = start_event_log(self.config, self.spec, self.incarnation)
        record = self.event_log.write if self.event_log is not None else None
        dist.record = record
        dist.enable_delivery(self.config)
        self._faults.wire(record=record, is_hidden=dist.hidden.__contains__)
        if hasattr(links, "cut"):  # a real `Links` (test transports have no sessions to cut)
            self._faults.attach(links, asyncio.get_running_loop())
        if self._links_factory is None and not self.config.hidden:
            # Lazy on purpose: only a node that runs a manager loads the
            # managers, the relay and the broadcast service.
            from partisan.peer_service import PeerService

            # The service needs the bound spec; no peer knows our port before
            # `start` returns, so no session can have begun on the plain handler.
            self.peer_service = PeerService(
                self.config, self.spec, dist, links, event_log=self.event_log
            )
            links.handler = self.peer_service
            self.peer_service.start()
            dist.relay = self.peer_service.relay
            dist.broadcaster = self.peer_service.broadcasts
            dist.members_of = self.peer_service.members
            dist.on_demand.find = self.peer_service.find
            dist.on_demand.in_view = self.peer_service.in_view
        dist.on_demand.enabled = self.config.connect_on_use
        dist.on_demand.dial_timeout = self.config.handshake_timeout
        if self.config.manager == "client-server":
            dist.on_demand.client_server_role = self.config.role or "server"
        set_default_runtime(runtime, True)
        self._token = _current.set(runtime.main)
        logger.info("node %s started (incarnation %d)", self.spec, self.incarnation)
        if self._root_spec is not None:
            # Lazy on purpose: only a node given a root tree loads supervision.
            from partisan.supervision.root import start_root

            try:
                self.root = await start_root(self._root_spec)
            except BaseException:
                await self.stop()
                raise
        return self

    async def stop(self) -> None:
        """Stop gracefully (idempotent): leave, stop the tree and actors, flush, BYE, close.

        This order is what makes a stop observable as
        one: (1) leave — refuse new joins and sessions, but keep the live
        links; (2) stop the root supervision tree in order, then every other
        actor (reason ``"shutdown"``) — their exit signals and `Down`s queue
        for the peers that watch them; (3) flush — control envelopes waiting
        for budget, then the transport's queues until peers credited them,
        within ``shutdown_timeout``; (4) BYE and close. Peers thus see every
        `Down` with its real reason before `NodeDown(..., "left")`.
        """
        runtime, dist = self.runtime, self.dist
        if runtime is None or dist is None or not runtime.running:
            return
        timeout = self.config.shutdown_timeout
        try:
            self._leaving = True
            if self.peer_service is not None:
                self.peer_service.leave_for_stop()
            leave = getattr(self.links, "leave", None)
            if leave is not None:  # (test transports may have no leave phase)
                leave()
            if self.root is not None:  # the tree first, in order, while links still work
                await self.root.stop(timeout)
            await runtime.shutdown(timeout)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            await dist.close(flush_timeout=timeout)
            await self.links.close(flush_timeout=max(0.0, deadline - loop.time()))
        finally:
            set_default_runtime(runtime, False)
            if _running.get(id(runtime)) is self:
                del _running[id(runtime)]
            if self._token is not None:
                with contextlib.suppress(ValueError):  # entered in another context
                    _current.reset(self._token)
                self._token = None
            if self.event_log is not None:
                self.event_log.write("node.stop", reason="shutdown")
                self.event_log.close()
        logger.info("node %s stopped", self.name)

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def as_current(self) -> Iterator[Node]:
        """Make this node's main pseudo-actor the caller of module functions in this block."""
        token = _current.set(self._runtime().main)
        try:
            yield self
        finally:
            _current.reset(token)

    # ---------------------------------------------------------- membership

    async def join(self, contact: NodeSpec | str, *, timeout: float | None = None) -> NodeSpec:
        """Connect to `contact` (``name@host:port`` or a NodeSpec); returns its spec.

        Raises `JoinRefused(reason)` or `CallTimeout`.
        """
        if self.links is None:
            raise RuntimeError(f"node {self.name} is not started")
        if self._leaving:
            raise JoinRefused(f"node {self.name} is stopping")
        timeout = self.config.handshake_timeout if timeout is None else timeout
        spec: NodeSpec = await self.links.connect(contact, timeout=timeout)
        if self.peer_service is not None:
            for action in self.peer_service.join_actions(spec):
                if (
                    isinstance(action, Disconnect)
                    and action.reason is DisconnectReason.REFUSED
                    and action.peer.name == spec.name
                ):
                    raise JoinRefused(
                        f"{spec.name} refused the join (manager {self.config.manager})"
                    )
            if self.config.manager == "full-mesh":
                # The contact answers with the members it knows: once that is in,
                # they are ours to address (connect-on-use dials them).
                await self.peer_service.heard_from(spec.name, timeout)
        return spec

    async def sync_join(self, contact: NodeSpec | str, *, timeout: float | None = None) -> NodeSpec:
        """`join`, then wait until every channel x lane to the contact is open."""
        spec = await self.join(contact, timeout=timeout)
        timeout = self.config.handshake_timeout if timeout is None else timeout
        await self.links.open_all_lanes(spec.name, timeout=timeout)
        return spec

    async def leave(self, other: NodeSpec | str | None = None) -> None:
        """Leave the cluster (close every session), or drop `other` from our connections."""
        if self.links is None or self.dist is None:
            return
        service = self.peer_service
        if service is not None:
            if other is None:
                service.handle(Leave())
            else:
                name = other.name if isinstance(other, NodeSpec) else other.split("@", 1)[0]
                spec = service.find(name)
                if spec is not None:
                    service.handle(Leave(spec))
        if other is None:
            names = [spec.name for spec in self.links.peers()]
        else:
            names = [other.name if isinstance(other, NodeSpec) else other.split("@", 1)[0]]
        for name in names:
            if service is not None:
                self.links.disconnect(name, reason="left")
            else:
                self.links.disconnect(name)
            self.dist.disconnected(name, "left")

    def nodes(self) -> list[str]:
        """Connected, non-hidden peers (self excluded)."""
        return [] if self.dist is None else self.dist.nodes()

    def members(self) -> list[str]:
        """The membership manager's view, self included (HyParView: active view + self)."""
        if self.peer_service is not None:
            members: list[str] = self.peer_service.members()
            return members
        return [self.name] if self.dist is None else self.dist.members()

    @property
    def faults(self) -> Faults:
        """This node's fault injector: drop, delay, duplicate, partition (docs/delivery.md)."""
        return self._faults

    # ---------------------------------------------------------- statistics

    def statistics(self) -> NodeStatistics:
        """Actor count, deepest mailboxes, messages routed locally/remotely, drops by cause."""
        runtime = self._runtime()
        stats = runtime.statistics()
        links_stats = None
        if self.links is not None:
            try:
                links_stats = self.links.statistics()
            except Exception:  # statistics must never take a caller down
                logger.exception("links.statistics() failed")
        return NodeStatistics(
            name=self.name,
            incarnation=self.incarnation,
            hidden=self.config.hidden,
            nodes=tuple(self.nodes()),
            actors=stats.actors,
            deepest_mailboxes=stats.deepest_mailboxes,
            routed_local=stats.routed_local,
            routed_remote=stats.routed_remote,
            received_remote=stats.received_remote,
            drops=stats.drops,
            runtime=stats,
            links=links_stats,
        )

    def __repr__(self) -> str:
        return f"<Node {self.spec or self.name} running={self.running}>"


def run(main: Any, **node_options: Any) -> Any:
    """Run ``main()`` (a coroutine function or coroutine) inside a fresh Node; return its result.

    `node_options` are `Node`'s keywords (``name``, ``port``, ``key_dir``,
    ``root``, ...). SIGTERM cancels ``main``; the node then stops gracefully
    (root tree in order, flush, close) and `run` returns None, so a script
    ending in ``partisan.run(main)`` exits 0.
    """
    import asyncio
    import inspect
    import signal

    async def _run() -> Any:
        async with Node(**node_options):
            result = main() if callable(main) else main
            if not inspect.isawaitable(result):
                return result
            # SIGTERM cancels main; the node then stops gracefully and run returns None
            # (exit status 0), as CONTRACT.md asks of a node.
            task = asyncio.ensure_future(result)
            loop = asyncio.get_running_loop()
            terminated = False

            def on_sigterm() -> None:
                nonlocal terminated
                terminated = True
                task.cancel()

            try:
                loop.add_signal_handler(signal.SIGTERM, on_sigterm)
                installed = True
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
                installed = False
            try:
                return await task
            except asyncio.CancelledError:
                if not terminated:
                    raise
                logger.info("SIGTERM: stopping node gracefully")
                return None
            finally:
                if installed:
                    loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(_run())


class _NodeModule(types.ModuleType):
    """`partisan.node` is this module *and* the module function `partisan.node()`.

    Importing the submodule ``partisan.node`` rebinds the package attribute
    ``partisan.node`` to the module, which would shadow the module function
    `node()`; making the module callable keeps both spellings working.
    """

    def __call__(self) -> str:
        return actor_api.node()


sys.modules[__name__].__class__ = _NodeModule

"""The application root: the supervision tree a `Node` starts at start-up and stops first.

``Node(..., root=...)`` takes a `SupervisorSpec`, a list of `ChildSpec`, a
single `ChildSpec` (wrapped in a one_for_one supervisor unless it is itself a
supervisor) or a `Supervisor` subclass. The node starts it once its transport
is up (a failing start fails the node's start) and, on a graceful stop (context
exit, SIGTERM), stops it *before* anything else: the tree terminates its
children in reverse start order, each within its shutdown time, while the
transport still works, so remote children and final messages go out; only
then are the remaining actors killed, queues flushed and sockets closed.

The node watches its root with a monitor (no message in the main pseudo-actor's
mailbox); if the tree gives up (its intensity was exceeded) the node logs it
and records the reason in `RootTree.exit_reason` — as OTP's application
controller reports a permanent application's exit; a node process's own
supervisor may then restart the whole node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from partisan.actors.api import spawn
from partisan.actors.gen_server import stop as stop_actor
from partisan.actors.process import current
from partisan.errors import CallExit, CallTimeout
from partisan.identity import Pid
from partisan.supervision.child_spec import ChildSpec, SupervisorSpec
from partisan.supervision.policy import ChildType
from partisan.supervision.supervisor import Supervisor

__all__ = ["RootTree", "start_root"]

logger = logging.getLogger(__name__)

#: The registered name of a node's root supervisor.
ROOT_NAME = "root_sup"


class RootTree:
    """A started root tree: its Pid, and why it exited if it did on its own."""

    def __init__(self, pid: Pid, watch: asyncio.Future[Any]) -> None:
        self.pid = pid
        self.exit_reason: Any = None
        self._stopping = False
        self._watch = watch
        watch.add_done_callback(self._exited)

    def _exited(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        self.exit_reason = exc.reason if isinstance(exc, CallExit) else exc
        if not self._stopping:
            logger.error("the root supervision tree %r exited: %r", self.pid, self.exit_reason)

    @property
    def alive(self) -> bool:
        return not self._watch.done()

    async def stop(self, timeout: float | None) -> None:
        """Stop the tree in order (children in reverse, each within its shutdown time)."""
        self._stopping = True
        if not self.alive:
            return
        try:
            await stop_actor(self.pid, "shutdown", timeout=timeout if timeout is not None else 3600)
        except CallTimeout:
            logger.error("the root tree did not stop within %s s; it will be killed", timeout)
        except CallExit as exc:
            logger.info("root tree was already gone: %r", exc.reason)


def _as_supervisor(root: Any) -> tuple[type[Supervisor], tuple[Any, ...], str | None]:
    if isinstance(root, type) and issubclass(root, Supervisor):
        return root, (), None
    if isinstance(root, SupervisorSpec):
        return Supervisor, (root,), None
    if isinstance(root, ChildSpec):
        start = root.start
        if root.child_type is ChildType.SUPERVISOR and isinstance(start, type):
            return start, root.args, root.name
        return Supervisor, (SupervisorSpec([root]),), None
    if isinstance(root, Iterable) and not isinstance(root, (str, bytes)):
        return Supervisor, (SupervisorSpec(list(root)),), None
    raise TypeError(
        f"root: expected a SupervisorSpec, ChildSpec, list of ChildSpec or Supervisor subclass, "
        f"got {root!r}"
    )


async def start_root(root: Any, *, timeout: float = 30.0) -> RootTree:
    """Start `root` from the current (main) pseudo-actor; raise what its start raised."""
    cls, args, name = _as_supervisor(root)
    pid = await spawn(cls, *args, name=name or ROOT_NAME, timeout=timeout)
    proc = current()
    watch: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    proc.runtime.monitor(proc, pid, future=watch)
    logger.info("root supervision tree started as %r", pid)
    return RootTree(pid, watch)

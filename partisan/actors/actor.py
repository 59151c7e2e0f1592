"""`Actor`: subclass it and write ``async def run(self)``; `spawn(MyActor, *args)` starts it.

The runtime creates the instance inside the new actor's task (so ``self.pid``
already works in ``__init__``), calls ``__init__(*args)``, then awaits
``run()``. Returning ends the actor with reason ``"normal"``; raising ends it
with `Crashed`. Set the class attribute ``trap_exit = True`` to receive exit
signals from links as `Exit` messages instead of dying with them.

Behaviours (`GenServer`, `StateMachine`, `Supervisor`) subclass `Behaviour`
and override `_partisan_start`; its ``waits_for_init = True`` makes
`spawn`/`start` return only once the behaviour called
``self._partisan_started()`` (or raise what its init raised).
"""

from __future__ import annotations

from typing import Any, ClassVar

from partisan.actors.api import spawn
from partisan.actors.loop_guard import needs_loop
from partisan.actors.process import Process
from partisan.identity import Pid

__all__ = ["Actor", "Behaviour"]


class Actor:
    """Base class of class-based actors: state on ``self``, behaviour in ``run``."""

    #: Receive exit signals from links as `Exit` messages instead of dying.
    trap_exit: ClassVar[bool] = False
    #: `spawn` waits until `_partisan_started()` is called (behaviours with an init).
    waits_for_init: ClassVar[bool] = False

    _process: Process

    @property
    def pid(self) -> Pid:
        """This actor's Pid."""
        return self._process.pid

    @property
    def node(self) -> str:
        """The name of the node this actor runs on."""
        return self._process.runtime.node

    async def run(self) -> None:
        """The actor's body. Override it."""
        raise NotImplementedError(f"{type(self).__name__} must define `async def run(self)`")

    # -- runtime protocol (documented in docs/actors.md) ------------------

    async def _partisan_start(self, *args: Any) -> None:
        """Run the actor: ``__init__(*args)`` then ``run()``."""
        type(self).__init__(self, *args)
        await self.run()

    def _partisan_started(self) -> None:
        """Tell the spawner that initialisation succeeded (behaviours call this)."""
        started = self._process.started
        if started is not None and not started.done():
            started.set_result(None)

    def _partisan_init_failed(self, exc: BaseException) -> None:
        """Hand `exc` to the spawner, and unlink it so it is not also killed by the crash."""
        proc = self._process
        started = proc.started
        if started is not None and not started.done():
            started.set_exception(exc)
            started.exception()  # mark retrieved: the starter may have timed out
        if proc.parent is not None and proc.links and proc.parent in proc.links:
            proc.runtime.unlink(proc, proc.parent)


class Behaviour(Actor):
    """Base of the OTP behaviours (`GenServer`, `StateMachine`, `Supervisor`).

    A behaviour has an init step: `start` returns its Pid only once init
    returned, and an exception in init is raised to the starter.
    """

    waits_for_init: ClassVar[bool] = True

    @classmethod
    @needs_loop("partisan.blocking.start({cls}, ...)", method=True)
    async def start(
        cls, *args: Any, name: str | None = None, node: str | None = None, timeout: float = 5.0
    ) -> Pid:
        """Start it (on `node`, registered as `name`); returns its Pid once init returned."""
        return await spawn(cls, *args, name=name, node=node, timeout=timeout)

    @classmethod
    @needs_loop("partisan.blocking.start_link({cls}, ...)", method=True)
    async def start_link(
        cls, *args: Any, name: str | None = None, node: str | None = None, timeout: float = 5.0
    ) -> Pid:
        """Like `start`, and link it to the caller (who then sees its exit)."""
        return await spawn(cls, *args, name=name, node=node, link=True, timeout=timeout)

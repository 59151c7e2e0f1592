"""`GenServer`: OTP's gen_server on the actor runtime.

State lives on ``self``. Callbacks may be ``def`` or ``async def``; the
server handles one message at a time, in mailbox order, as in OTP:

* ``init(*args)`` runs before `start`/`start_link` return; if it raises, the
  starter gets that exception (the server is unlinked first, so a
  `start_link` caller is not killed by it).
* ``handle_call(request, caller)``: the return value is the reply. Return
  `NoReply` and later call ``self.reply(caller, value)`` to defer it.
* ``handle_cast(request)``, ``handle_info(msg)`` (any other message: `Down`,
  `Exit`, plain sends, timers), ``terminate(reason)``.
* ``self.stop(reason)`` inside a callback ends the server after it returns;
  ``await gen_server.stop(dest, reason)`` does it from outside.

OTP details kept: ``terminate`` runs when the server stops itself, crashes
in a callback, or (trapping exits) gets an exit signal from its parent or a
node shutdown — never for the untrappable ``exit(pid, "kill")``; an
exception in a callback crashes the server and the caller of a pending
`call` gets `CallExit(Crashed(...))`; calling yourself is
``CallExit("calling_self")``; the default call timeout is 5 s.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any

from partisan.actors.actor import Behaviour
from partisan.actors.loop_guard import needs_loop
from partisan.actors.process import ActorExit, current
from partisan.actors.runtime import crashed_from
from partisan.actors.signals import Call, Cast, Exit, From, NoReply
from partisan.errors import CallExit, CallTimeout

__all__ = ["GenServer", "stop"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _StopRequest:
    reason: Any


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class GenServer(Behaviour):
    """Subclass and override the callbacks; start with ``await MyServer.start(...)``."""

    _stop_reason: Any = None

    # ------------------------------------------------------------ callbacks

    def init(self, *args: Any) -> Any:
        """Set up state from the start arguments."""

    def handle_call(self, request: Any, caller: From) -> Any:
        """Answer a `call`; the return value is the reply (or `NoReply`)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls ({request!r})")

    def handle_cast(self, request: Any) -> Any:
        """Handle a `cast`."""
        logger.warning("%s got an unexpected cast %r", type(self).__name__, request)

    def handle_info(self, msg: Any) -> Any:
        """Handle any other message."""
        logger.debug("%s ignored message %r", type(self).__name__, msg)

    def terminate(self, reason: Any) -> Any:
        """Clean up before the server exits with `reason`."""

    # ------------------------------------------------------------- helpers

    def reply(self, caller: From, value: Any) -> None:
        """Answer a call whose `handle_call` returned `NoReply`."""
        self._process.runtime.reply(self._process, caller, value)

    def stop(self, reason: Any = "normal") -> None:
        """End the server with `reason` once the current callback returns."""
        self._stop_reason = reason

    # ---------------------------------------------------------------- loop

    async def _partisan_start(self, *args: Any) -> None:
        proc = self._process
        try:
            await _maybe_await(self.init(*args))
        except BaseException as exc:
            self._partisan_init_failed(exc)
            raise
        self._partisan_started()
        try:
            while self._stop_reason is None:
                msg = await proc.receive()
                await self._dispatch(msg)
        except asyncio.CancelledError:
            # Cancelled by a kill. Trapping, terminate runs for a shutdown or a
            # parent's exit; never for the untrappable exit(pid, "kill")
            # (kill_reason "killed"), as in OTP.
            if proc.trap_exit and proc.kill_reason not in (None, "killed"):
                await self._terminate(proc.kill_reason)
            raise
        except Exception as exc:
            await self._terminate(crashed_from(exc))
            raise
        reason = self._stop_reason
        await self._terminate(reason)
        if reason != "normal":
            raise ActorExit(reason)

    async def _terminate(self, reason: Any) -> None:
        try:
            await _maybe_await(self.terminate(reason))
        except Exception:
            logger.exception("%s.terminate(%r) raised", type(self).__name__, reason)

    async def _dispatch(self, msg: Any) -> None:
        kind = type(msg)
        if kind is Call:
            result = await _maybe_await(self.handle_call(msg.request, msg.caller))
            if result is not NoReply:
                self.reply(msg.caller, result)
        elif kind is Cast:
            await _maybe_await(self.handle_cast(msg.request))
        elif kind is _StopRequest:
            self._stop_reason = msg.reason
        elif kind is Exit and msg.pid == self._process.parent and self._process.trap_exit:
            self._stop_reason = msg.reason  # OTP: an exit from the parent stops the server
        else:
            await _maybe_await(self.handle_info(msg))


@needs_loop("partisan.blocking.stop(...)")
async def stop(dest: Any, reason: Any = "normal", timeout: float = 5.0) -> None:
    """Stop a GenServer: it runs ``terminate(reason)`` and exits; returns once it has.

    Like OTP's proc_lib:stop: monitor the server, ask it to stop, wait for its
    `Down`. Raises `CallExit` if it was not running or died another way,
    `CallTimeout` after `timeout`.
    """
    proc = current()
    runtime = proc.runtime
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ref = runtime.monitor(proc, dest, future=future)
    try:
        runtime.route(proc, dest, _StopRequest(reason))
        async with asyncio.timeout(timeout):
            await future
    except CallExit as exc:
        if exc.reason != reason:
            raise
    except TimeoutError:
        raise CallTimeout(f"{dest!r} did not stop within {timeout} s") from None
    finally:
        runtime.demonitor(proc, ref)

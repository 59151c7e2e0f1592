"""`StateMachine`: OTP's gen_statem on the actor runtime; transitions are returned as data.

Write one method per state (the state is a ``str`` naming the method, or an
``Enum`` member whose lower-cased name does), or override a single
``handle_event(event_type, content, state)``. Each callback gets the event
type and its content and returns a transition: ``NextState(state,
*actions)``, ``KeepState(*actions)``, ``RepeatState(*actions)``,
``Stop(reason, replies)`` or None (keep state, no actions). Data lives on
``self``, as in our `GenServer`. Set ``state_enter = True`` to get
``(ENTER, old_state)`` calls on every state change (and for the initial
state). Callbacks may be ``def`` or ``async def``.

Event types: ``Call(caller)`` for a `call` (answer with the ``Reply(caller,
value)`` action, or later with ``self.reply``), `CAST`, `INFO` (any other
message: `Down`, `Exit`, plain sends), `INTERNAL` (from `NextEvent`),
`TIMEOUT`, `STATE_TIMEOUT`, ``NamedTimeout(name)`` and `ENTER`.

    class Door(StateMachine):
        def init(self):
            return "closed"

        def closed(self, event, content):
            if event is CAST and content == "open":
                return NextState("open", SetStateTimeout(5.0, "close"))

        def open(self, event, content):
            if event is STATE_TIMEOUT:
                return NextState("closed")
            if event is CAST:
                return KeepState(POSTPONE)  # handle it once closed again

The semantics (postpone, event order, timeouts) are the engine's:
`partisan.actors.state_machine_engine`. Timers are runtime timers that post
a private message to the machine's own mailbox, so they are ordered with
other messages; a stale one is ignored by its token.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from partisan.actors.actor import Behaviour
from partisan.actors.gen_server import _maybe_await, _StopRequest
from partisan.actors.process import ActorExit
from partisan.actors.runtime import crashed_from
from partisan.actors.signals import Call as _CallMsg
from partisan.actors.signals import Cast as _CastMsg
from partisan.actors.signals import Exit, From, Ref
from partisan.actors.state_machine_engine import Engine
from partisan.actors.state_machine_types import (
    CAST,
    ENTER,
    INFO,
    INTERNAL,
    POSTPONE,
    STATE_TIMEOUT,
    TIMEOUT,
    Call,
    CancelTimeout,
    CancelTimer,
    Effect,
    EventType,
    KeepState,
    NamedTimeout,
    NextEvent,
    NextState,
    RepeatState,
    Reply,
    SetEventTimeout,
    SetStateTimeout,
    SetTimeout,
    StartTimer,
    StateMachineError,
    Stop,
    Stopped,
    Transition,
)

__all__ = [
    "CAST",
    "ENTER",
    "INFO",
    "INTERNAL",
    "POSTPONE",
    "STATE_TIMEOUT",
    "TIMEOUT",
    "Call",
    "CancelTimeout",
    "KeepState",
    "NamedTimeout",
    "NextEvent",
    "NextState",
    "RepeatState",
    "Reply",
    "SetEventTimeout",
    "SetStateTimeout",
    "SetTimeout",
    "StateMachine",
    "StateMachineError",
    "Stop",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _TimerFired:
    """Posted to the machine's own mailbox when an engine timer comes due."""

    token: int


def state_function_name(state: Any) -> str:
    """The method that handles `state` in state-function mode."""
    if isinstance(state, str):
        return state
    if isinstance(state, enum.Enum):
        return state.name.lower()
    raise StateMachineError(
        f"state {state!r} names no method: use str or Enum states, or override handle_event"
    )


class StateMachine(Behaviour):
    """Subclass, write ``init`` and the state callbacks; start with ``await M.start(...)``."""

    #: Call the state callback with ``(ENTER, old_state)`` on each state change.
    state_enter: ClassVar[bool] = False

    _engine: Engine
    _timer_refs: dict[int, Ref]

    # ------------------------------------------------------------ callbacks

    def init(self, *args: Any) -> Any:
        """Set up data on ``self``; return the initial state (or ``NextState(state, *actions)``)."""
        raise NotImplementedError(f"{type(self).__name__} must define init() returning a state")

    def handle_event(self, event_type: EventType, content: Any, state: Any) -> Transition:
        """The single callback; the default calls the method named after `state`."""
        method = getattr(self, state_function_name(state), None)
        if method is None or not callable(method):
            raise StateMachineError(f"{type(self).__name__} has no method for state {state!r}")
        result: Transition = method(event_type, content)
        return result

    def terminate(self, reason: Any, state: Any) -> Any:
        """Clean up before the machine exits with `reason` in `state`."""

    # -------------------------------------------------------------- helpers

    @property
    def state(self) -> Any:
        """The current state."""
        return self._engine.state

    def reply(self, caller: From, value: Any) -> None:
        """Answer a call later (gen_statem:reply), instead of with a `Reply` action."""
        self._process.runtime.reply(self._process, caller, value)

    # ------------------------------------------------------------------ loop

    async def _partisan_start(self, *args: Any) -> None:
        proc = self._process
        self._timer_refs = {}
        self._engine = Engine(self.handle_event, state_enter=type(self).state_enter)
        try:
            initial = await _maybe_await(self.init(*args))
            effects = await self._engine.start_async(initial)
        except BaseException as exc:
            self._partisan_init_failed(exc)
            raise
        self._partisan_started()
        reason: Any = None
        try:
            reason = self._carry_out(effects)
            while reason is None:
                reason = await self._dispatch(await proc.receive())
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
        finally:
            self._cancel_timers()
        await self._terminate(reason)
        if reason != "normal":
            raise ActorExit(reason)

    async def _dispatch(self, msg: Any) -> Any:
        """Feed one mailbox message to the engine; returns a stop reason or None."""
        engine = self._engine
        kind = type(msg)
        if kind is _TimerFired:
            self._timer_refs.pop(msg.token, None)
            effects = await engine.fire_async(msg.token)
        elif kind is _CallMsg:
            effects = await engine.handle_async(Call(msg.caller), msg.request)
        elif kind is _CastMsg:
            effects = await engine.handle_async(CAST, msg.request)
        elif kind is _StopRequest:
            return msg.reason
        elif kind is Exit and msg.pid == self._process.parent and self._process.trap_exit:
            return msg.reason  # OTP: an exit from the parent stops the machine
        else:
            effects = await engine.handle_async(INFO, msg)
        return self._carry_out(effects)

    def _carry_out(self, effects: list[Effect]) -> Any:
        runtime = self._process.runtime
        stop: Any = None
        for effect in effects:
            if isinstance(effect, Reply):
                runtime.reply(self._process, effect.caller, effect.value)
            elif isinstance(effect, StartTimer):
                self._timer_refs[effect.token] = runtime.send_after(
                    self._process, effect.after, self._process.pid, _TimerFired(effect.token)
                )
            elif isinstance(effect, CancelTimer):
                ref = self._timer_refs.pop(effect.token, None)
                if ref is not None:
                    runtime.cancel_timer(ref)
            elif isinstance(effect, Stopped):
                stop = effect.reason
        return stop

    def _cancel_timers(self) -> None:
        runtime = self._process.runtime
        for ref in self._timer_refs.values():
            runtime.cancel_timer(ref)
        self._timer_refs.clear()

    async def _terminate(self, reason: Any) -> None:
        try:
            await _maybe_await(self.terminate(reason, self._engine.state))
        except Exception:
            logger.exception("%s.terminate(%r) raised", type(self).__name__, reason)

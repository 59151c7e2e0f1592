"""gen_statem's transition engine, pure: events in, effects out (no runtime, no clock).

Theory of operation
-------------------
This follows OTP's ``gen_statem`` (design principles, "gen_statem Behaviour").
A machine has a *state* (any hashable value) and data (on ``self``, like our
GenServer). Every event has a type — ``Call(caller)``, `CAST`, `INFO`,
`INTERNAL`, `TIMEOUT` (event timeout), `STATE_TIMEOUT`, ``NamedTimeout(name)``
(generic timeout) or `ENTER` — and a content. The callback for the current
state returns the transition *as data*: `NextState`, `KeepState`,
`RepeatState`, `Stop` (or None: keep state, no actions), each carrying
actions: `Reply`, `POSTPONE`, `NextEvent`, `SetEventTimeout`,
`SetStateTimeout`, `SetTimeout`, `CancelTimeout`.

The engine turns one external event into a list of *effects* for its driver
(`Reply`, `StartTimer`, `CancelTimer`, `Stopped`), processing everything that
follows from it before returning, in OTP's order:

* any event cancels a running event timeout (the timeout firing included);
* a postponed event is kept and retried after the next *state change*
  (`RepeatState`/`KeepState` do not count), oldest first;
* after a transition the engine's queue is: the transition's `NextEvent`s in
  the order given, then (on a state change) the postponed events, then the
  rest; so inserted events run before any new message;
* a state change cancels the state timeout, then runs the state-enter call
  (``callback(ENTER, old_state)``, when `state_enter` is set, also for the
  initial state and on `RepeatState`); an enter call may not change state,
  postpone, or insert events;
* a timeout of 0 is enqueued at once (an event timeout of 0 only if no event
  is queued, else it is cancelled); None cancels; a new value replaces the old
  timer of the same kind (or name);
* timers carry a token: a late firing of a cancelled or replaced timer is
  ignored, so the driver never has to win a race against the mailbox.

Deviations: OTP's absolute timeouts, ``update`` of a running timeout's
content, ``hibernate`` and ``change_callback_module`` are not provided.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from partisan.actors.state_machine_types import (
    ENTER,
    STATE_TIMEOUT,
    TIMEOUT,
    Action,
    CancelTimeout,
    CancelTimer,
    Effect,
    EventType,
    KeepState,
    NamedTimeout,
    NextEvent,
    NextState,
    Postpone,
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

__all__ = ["Callback", "Engine"]

Callback = Callable[[EventType, Any, Any], Transition | Awaitable[Transition]]

#: What the engine's step generator yields: a callback invocation to make.
_Request = tuple[EventType, Any, Any]
_Steps = Generator[_Request, Transition, None]


@dataclass(slots=True)
class _Timer:
    token: int
    event: tuple[EventType, Any]


@dataclass(slots=True)
class Engine:
    """Run one machine's transitions; `callback(event_type, content, state)` is the machine.

    ``effects = engine.start(initial)`` once, then ``engine.handle(type,
    content)`` for each external event and ``engine.fire(token)`` when a
    timer the engine started comes due. The ``*_async`` twins accept a
    callback that returns an awaitable (``async def`` state functions).
    Exceptions raised by the callback propagate (the actor crashes); the
    engine is then unusable.
    """

    callback: Callback
    state_enter: bool = False
    state: Any = None
    stopped: Any = None
    _queue: deque[tuple[EventType, Any]] = field(default_factory=deque)
    _postponed: list[tuple[EventType, Any]] = field(default_factory=list)
    _timers: dict[Any, _Timer] = field(default_factory=dict)  # kind or name -> timer
    _tokens: dict[int, Any] = field(default_factory=dict)  # token -> kind or name
    _next_token: int = 1
    _effects: list[Effect] = field(default_factory=list)

    # ------------------------------------------------------------ sync API

    def start(self, initial: Any) -> list[Effect]:
        """Enter the initial state: `initial` is a state or a `NextState` with actions."""
        return self._drive(self._start(initial))

    def handle(self, event_type: EventType, content: Any = None) -> list[Effect]:
        """Handle one external event (and everything that follows from it)."""
        return self._drive(self._handle(event_type, content))

    def fire(self, token: int) -> list[Effect]:
        """A timer came due; stale tokens (cancelled, replaced) are ignored."""
        return self._drive(self._fire(token))

    # ----------------------------------------------------------- async API

    async def start_async(self, initial: Any) -> list[Effect]:
        """`start`, awaiting callbacks that return awaitables."""
        return await self._drive_async(self._start(initial))

    async def handle_async(self, event_type: EventType, content: Any = None) -> list[Effect]:
        """`handle`, awaiting callbacks that return awaitables."""
        return await self._drive_async(self._handle(event_type, content))

    async def fire_async(self, token: int) -> list[Effect]:
        """`fire`, awaiting callbacks that return awaitables."""
        return await self._drive_async(self._fire(token))

    # ------------------------------------------------------------ queries

    def timers(self) -> dict[Any, int]:
        """Running timers: kind (`TIMEOUT`, `STATE_TIMEOUT`) or name -> token."""
        return {k: t.token for k, t in self._timers.items()}

    def postponed(self) -> list[tuple[EventType, Any]]:
        """Postponed events, oldest first."""
        return list(self._postponed)

    # ------------------------------------------------------------- drivers

    def _drive(self, steps: _Steps) -> list[Effect]:
        try:
            request = next(steps)
            while True:
                result = self.callback(*request)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()  # never awaited: close it to avoid a warning
                    raise StateMachineError(
                        "a callback returned an awaitable: use the *_async engine methods"
                    )
                request = steps.send(result)
        except StopIteration:
            pass
        return self._take()

    async def _drive_async(self, steps: _Steps) -> list[Effect]:
        try:
            request = next(steps)
            while True:
                result = self.callback(*request)
                if inspect.isawaitable(result):
                    result = await result
                request = steps.send(result)
        except StopIteration:
            pass
        return self._take()

    # ------------------------------------------------------------ the steps

    def _start(self, initial: Any) -> _Steps:
        if isinstance(initial, NextState):
            state, actions = initial.state, initial.actions
        elif isinstance(initial, (KeepState, RepeatState, Stop)) or initial is None:
            raise StateMachineError(f"init must return a state or NextState, not {initial!r}")
        else:
            state, actions = initial, ()
        self.state = state
        self._queue.extendleft(reversed(self._apply(actions, in_enter=False, event=None)))
        yield from self._enter(state)
        yield from self._run()

    def _handle(self, event_type: EventType, content: Any) -> _Steps:
        self._check_running()
        self._queue.append((event_type, content))
        yield from self._run()

    def _fire(self, token: int) -> _Steps:
        self._check_running()
        key = self._tokens.pop(token, None)
        if key is None:
            return
        timer = self._timers.pop(key)
        self._queue.append(timer.event)
        yield from self._run()

    def _check_running(self) -> None:
        if self.stopped is not None:
            raise StateMachineError(f"the machine has stopped ({self.stopped!r})")

    def _take(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def _run(self) -> _Steps:
        while self._queue and self.stopped is None:
            event = self._queue.popleft()
            self._cancel(TIMEOUT)  # any event cancels the event timeout
            result = yield (event[0], event[1], self.state)
            yield from self._transition(event, result)

    def _transition(self, event: tuple[EventType, Any], result: Transition) -> _Steps:
        if result is None:
            result = KeepState()
        if isinstance(result, Stop):
            self._effects.extend(result.replies)
            self._stop(result.reason)
            return
        if not isinstance(result, (NextState, KeepState, RepeatState)):
            raise StateMachineError(
                f"state {self.state!r} returned {result!r}; expected NextState, KeepState, "
                "RepeatState, Stop or None"
            )
        old = self.state
        changed = isinstance(result, NextState) and result.state != old
        inserted = self._apply(result.actions, in_enter=False, event=event)
        if changed:
            assert isinstance(result, NextState)
            self.state = result.state
            retry, self._postponed = self._postponed, []
            self._queue.extendleft(reversed(retry))
            self._cancel_unless_set(STATE_TIMEOUT, result.actions)
        self._queue.extendleft(reversed(inserted))
        if changed or isinstance(result, RepeatState):
            yield from self._enter(old)

    def _enter(self, old: Any) -> _Steps:
        if not self.state_enter or self.stopped is not None:
            return
        result = yield (ENTER, old, self.state)
        if result is None:
            return
        if isinstance(result, Stop):
            self._effects.extend(result.replies)
            self._stop(result.reason)
            return
        if isinstance(result, NextState) and result.state != self.state:
            raise StateMachineError(
                f"the enter call of {self.state!r} tried to change state to {result.state!r}"
            )
        if isinstance(result, RepeatState):
            raise StateMachineError("an enter call cannot return RepeatState")
        if not isinstance(result, (NextState, KeepState)):
            raise StateMachineError(f"enter call of {self.state!r} returned {result!r}")
        self._apply(result.actions, in_enter=True, event=None)

    def _apply(
        self, actions: tuple[Action, ...], *, in_enter: bool, event: tuple[EventType, Any] | None
    ) -> list[tuple[EventType, Any]]:
        inserted: list[tuple[EventType, Any]] = []
        for action in actions:
            if isinstance(action, Reply):
                self._effects.append(action)
            elif isinstance(action, Postpone):
                if in_enter or event is None:
                    raise StateMachineError("POSTPONE is not allowed in init or an enter call")
                self._postponed.append(event)
            elif isinstance(action, NextEvent):
                if in_enter:
                    raise StateMachineError("NextEvent is not allowed in an enter call")
                inserted.append((action.type, action.content))
            elif isinstance(action, SetEventTimeout):
                self._set(TIMEOUT, action.after, (TIMEOUT, action.content))
            elif isinstance(action, SetStateTimeout):
                self._set(STATE_TIMEOUT, action.after, (STATE_TIMEOUT, action.content))
            elif isinstance(action, SetTimeout):
                self._set(action.name, action.after, (NamedTimeout(action.name), action.content))
            elif isinstance(action, CancelTimeout):
                self._cancel(action.name)
            else:
                raise StateMachineError(f"unknown action {action!r}")
        return inserted

    def _set(self, key: Any, after: float | None, event: tuple[EventType, Any]) -> None:
        self._cancel(key)
        if after is None:
            return
        if after < 0:
            raise StateMachineError(f"timeout {key!r}: negative time {after!r}")
        if after == 0:
            # OTP: a zero timeout is enqueued at once, behind inserted and retried
            # events; a zero event timeout is then cancelled by whichever of those runs first.
            self._queue.append(event)
            return
        token = self._next_token
        self._next_token += 1
        self._timers[key] = _Timer(token, event)
        self._tokens[token] = key
        self._effects.append(StartTimer(token, float(after)))

    def _cancel(self, key: Any) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            del self._tokens[timer.token]
            self._effects.append(CancelTimer(timer.token))
        elif self._queue:
            # A zero timeout may already sit in the queue: it is cancelled too.
            kind = key if key is TIMEOUT or key is STATE_TIMEOUT else NamedTimeout(key)
            if any(e[0] == kind for e in self._queue):
                self._queue = deque(e for e in self._queue if e[0] != kind)

    def _cancel_unless_set(self, key: Any, actions: tuple[Action, ...]) -> None:
        if key is STATE_TIMEOUT and any(isinstance(a, SetStateTimeout) for a in actions):
            return
        self._cancel(key)

    def _stop(self, reason: Any) -> None:
        self.stopped = reason
        for key in list(self._timers):
            self._cancel(key)
        self._effects.append(Stopped(reason))

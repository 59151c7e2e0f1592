"""The gen_statem transition engine, event by event, on a virtual clock (no runtime)."""

from __future__ import annotations

import heapq
from typing import Any

import pytest

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
)


class Clock:
    """Drive an engine's timers on virtual time: `advance(dt)` fires what falls due, in order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = 0.0
        self.due: list[tuple[float, int]] = []
        self.cancelled: set[int] = set()
        self.replies: list[Reply] = []
        self.stopped: Any = None

    def apply(self, effects: list[Any]) -> list[Any]:
        for effect in effects:
            if isinstance(effect, StartTimer):
                heapq.heappush(self.due, (self.now + effect.after, effect.token))
            elif isinstance(effect, CancelTimer):
                self.cancelled.add(effect.token)
            elif isinstance(effect, Reply):
                self.replies.append(effect)
            elif isinstance(effect, Stopped):
                self.stopped = effect.reason
        return effects

    def advance(self, dt: float) -> None:
        until = self.now + dt
        while self.due and self.due[0][0] <= until:
            at, token = heapq.heappop(self.due)
            self.now = at
            if token not in self.cancelled:
                self.apply(self.engine.fire(token))
        self.now = until


class Recording:
    """A machine that records every callback and answers from a script."""

    def __init__(self, script: dict[tuple[Any, Any], Any] | None = None) -> None:
        self.seen: list[tuple[Any, Any, Any]] = []
        self.script = script or {}

    def __call__(self, etype: Any, content: Any, state: Any) -> Any:
        self.seen.append((etype, content, state))
        result = self.script.get((state, content))
        return result() if callable(result) else result


# ---------------------------------------------------------------- the code lock


class CodeLock:
    """OTP's code-lock example: buttons while open are postponed until it locks again."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.buttons = ""
        self.log: list[str] = []

    def __call__(self, etype: Any, content: Any, state: str) -> Any:
        return getattr(self, state)(etype, content)

    def locked(self, etype: Any, content: Any) -> Any:
        if etype is ENTER:
            self.buttons = ""
            self.log.append("lock")
            return None
        if etype is CAST and content[0] == "button":
            self.buttons += content[1]
            if self.buttons == self.code:
                return NextState("open")
            if len(self.buttons) >= len(self.code):
                self.buttons = ""
            return KeepState(SetEventTimeout(3.0, "idle"))  # forget a half-typed code
        if etype is TIMEOUT:
            self.buttons = ""
            return None
        if isinstance(etype, Call) and content == "status":
            return KeepState(Reply(etype.caller, ("locked", self.buttons)))
        raise AssertionError(f"unexpected {etype} {content} in locked")

    def open(self, etype: Any, content: Any) -> Any:
        if etype is ENTER:
            self.log.append("unlock")
            return KeepState(SetStateTimeout(10.0, "lock"))
        if etype is STATE_TIMEOUT:
            return NextState("locked")
        if etype is CAST:
            return KeepState(POSTPONE)
        if isinstance(etype, Call) and content == "status":
            return KeepState(Reply(etype.caller, ("open", "")))
        raise AssertionError(f"unexpected {etype} {content} in open")


def test_code_lock_event_by_event() -> None:
    lock = CodeLock("123")
    engine = Engine(lock, state_enter=True)
    clock = Clock(engine)
    clock.apply(engine.start("locked"))
    assert (engine.state, lock.log) == ("locked", ["lock"])

    effects = clock.apply(engine.handle(CAST, ("button", "1")))
    assert effects == [StartTimer(1, 3.0)]  # the idle event timeout
    effects = clock.apply(engine.handle(CAST, ("button", "2")))
    assert effects == [CancelTimer(1), StartTimer(2, 3.0)]  # any event cancels it; restarted
    clock.advance(3.0)  # idle too long: the half-typed code is forgotten
    assert lock.buttons == "" and engine.state == "locked"

    for digit in "123":
        clock.apply(engine.handle(CAST, ("button", digit)))
    assert (engine.state, lock.log) == ("open", ["lock", "unlock"])
    assert engine.timers() == {STATE_TIMEOUT: 5}

    # Buttons pressed while open are postponed, not lost and not handled yet.
    clock.apply(engine.handle(CAST, ("button", "9")))
    clock.apply(engine.handle(CAST, ("button", "8")))
    assert engine.postponed() == [(CAST, ("button", "9")), (CAST, ("button", "8"))]
    clock.apply(engine.handle(Call("c1"), "status"))
    assert clock.replies == [Reply("c1", ("open", ""))]

    clock.advance(9.9)
    assert engine.state == "open"  # the state timeout has not fired yet
    clock.advance(0.1)
    # Locked again: the enter call reset the buttons, then the postponed presses
    # were retried in arrival order.
    assert engine.state == "locked" and lock.log == ["lock", "unlock", "lock"]
    assert lock.buttons == "98" and engine.postponed() == []
    clock.apply(engine.handle(Call("c2"), "status"))
    assert clock.replies[-1] == Reply("c2", ("locked", "98"))


# ------------------------------------------------------------------ semantics


def test_postponed_events_are_retried_only_after_a_state_change() -> None:
    order: list[Any] = []

    def machine(etype: Any, content: Any, state: str) -> Any:
        order.append((state, content))
        if state == "a" and content in ("x", "y"):
            return KeepState(POSTPONE)
        if state == "a" and content == "same":
            return NextState("a")  # same state: not a change
        if state == "a" and content == "repeat":
            return RepeatState()
        if state == "a" and content == "go":
            return NextState("b")
        return None

    engine = Engine(machine)
    engine.start("a")
    for content in ("x", "y", "same", "repeat"):
        engine.handle(CAST, content)
    assert engine.postponed() == [(CAST, "x"), (CAST, "y")]
    engine.handle(CAST, "go")
    assert order[-3:] == [("a", "go"), ("b", "x"), ("b", "y")]
    assert engine.postponed() == []


def test_inserted_events_run_first_in_order_then_postponed() -> None:
    seen = Recording(
        {
            ("a", "p"): KeepState(POSTPONE),
            ("a", "go"): NextState("b", NextEvent(INTERNAL, "i1"), NextEvent(INFO, "i2")),
        }
    )
    engine = Engine(seen)
    engine.start("a")
    engine.handle(CAST, "p")
    engine.handle(CAST, "go")
    assert seen.seen[-3:] == [(INTERNAL, "i1", "b"), (INFO, "i2", "b"), (CAST, "p", "b")]


def test_postpone_and_change_state_retries_the_same_event_in_the_new_state() -> None:
    seen = Recording({("a", "e"): NextState("b", POSTPONE)})
    engine = Engine(seen)
    engine.start("a")
    engine.handle(CAST, "e")
    assert seen.seen == [(CAST, "e", "a"), (CAST, "e", "b")]


def test_state_timeout_is_cancelled_by_a_state_change_but_not_by_keep_state() -> None:
    seen = Recording(
        {
            ("a", "arm"): KeepState(SetStateTimeout(5, "st")),
            ("a", "noop"): None,
            ("a", "go"): NextState("b"),
        }
    )
    engine = Engine(seen)
    clock = Clock(engine)
    engine.start("a")
    clock.apply(engine.handle(CAST, "arm"))
    clock.apply(engine.handle(CAST, "noop"))
    assert STATE_TIMEOUT in engine.timers()
    effects = clock.apply(engine.handle(CAST, "go"))
    assert effects == [CancelTimer(1)] and engine.timers() == {}
    clock.advance(10)
    assert (STATE_TIMEOUT, "st", "b") not in seen.seen


def test_state_timeout_set_in_the_transition_that_changes_state_survives() -> None:
    seen = Recording({("a", "go"): NextState("b", SetStateTimeout(1, "st"))})
    engine = Engine(seen)
    clock = Clock(engine)
    engine.start("a")
    clock.apply(engine.handle(CAST, "go"))
    clock.advance(1)
    assert seen.seen[-1] == (STATE_TIMEOUT, "st", "b")


def test_generic_timeouts_survive_state_changes_and_can_be_cancelled_or_replaced() -> None:
    seen = Recording(
        {
            ("a", "arm"): NextState("b", SetTimeout("retry", 2, "r1"), SetTimeout("gone", 3)),
            ("b", "cancel"): KeepState(CancelTimeout("gone")),
            ("b", "rearm"): KeepState(SetTimeout("retry", 5, "r2")),
        }
    )
    engine = Engine(seen)
    clock = Clock(engine)
    engine.start("a")
    clock.apply(engine.handle(CAST, "arm"))
    clock.apply(engine.handle(CAST, "cancel"))
    clock.apply(engine.handle(CAST, "rearm"))  # replaces r1 (a late fire of r1 is stale)
    clock.advance(10)
    fired = [s for s in seen.seen if isinstance(s[0], NamedTimeout)]
    assert fired == [(NamedTimeout("retry"), "r2", "b")]
    assert engine.fire(1) == []  # the replaced timer's token is stale: ignored


def test_event_timeout_fires_when_idle_and_any_event_cancels_it() -> None:
    seen = Recording({("a", "arm"): KeepState(SetEventTimeout(1, "idle"))})
    engine = Engine(seen)
    clock = Clock(engine)
    engine.start("a")
    clock.apply(engine.handle(CAST, "arm"))
    clock.apply(engine.handle(INFO, "anything"))
    clock.advance(2)
    assert (TIMEOUT, "idle", "a") not in seen.seen
    clock.apply(engine.handle(CAST, "arm"))
    clock.advance(1)
    assert seen.seen[-1] == (TIMEOUT, "idle", "a")


def test_zero_timeouts_are_enqueued_at_once_behind_inserted_events() -> None:
    seen = Recording(
        {
            ("a", "z"): KeepState(SetStateTimeout(0, "st0"), NextEvent(INTERNAL, "first")),
            ("a", "ez"): KeepState(SetEventTimeout(0, "et0"), NextEvent(INTERNAL, "cancels")),
            ("a", "e1"): KeepState(SetEventTimeout(0, "et1")),
        }
    )
    engine = Engine(seen)
    engine.start("a")
    assert engine.handle(CAST, "z") == []  # no timer for a zero timeout
    assert seen.seen[-2:] == [(INTERNAL, "first", "a"), (STATE_TIMEOUT, "st0", "a")]
    engine.handle(CAST, "ez")
    assert seen.seen[-1] == (INTERNAL, "cancels", "a")  # the event timeout 0 was cancelled
    engine.handle(CAST, "e1")
    assert seen.seen[-1] == (TIMEOUT, "et1", "a")


def test_enter_calls_initial_on_change_and_repeat_not_on_keep() -> None:
    seen = Recording({("a", "keep"): KeepState(), ("a", "rep"): RepeatState()})
    seen.script[("a", "go")] = NextState("b")
    engine = Engine(seen, state_enter=True)
    engine.start("a")
    engine.handle(CAST, "keep")
    engine.handle(CAST, "rep")
    engine.handle(CAST, "go")
    enters = [(c, s) for e, c, s in seen.seen if e is ENTER]
    assert enters == [("a", "a"), ("a", "a"), ("a", "b")]  # (old state, new state)


def test_an_enter_call_may_not_change_state_or_postpone() -> None:
    engine = Engine(Recording({("a", "a"): NextState("b")}), state_enter=True)
    with pytest.raises(StateMachineError, match="change state"):
        engine.start("a")
    engine = Engine(Recording({("a", "a"): KeepState(POSTPONE)}), state_enter=True)
    with pytest.raises(StateMachineError, match="POSTPONE"):
        engine.start("a")
    engine = Engine(Recording({("a", "a"): KeepState(NextEvent(INTERNAL, 1))}), state_enter=True)
    with pytest.raises(StateMachineError, match="NextEvent"):
        engine.start("a")


def test_stop_sends_replies_cancels_timers_and_refuses_more_events() -> None:
    seen = Recording(
        {
            ("a", "arm"): KeepState(SetTimeout("t", 5)),
            ("a", "bye"): Stop("normal", (Reply("c", "ok"),)),
        }
    )
    engine = Engine(seen)
    engine.start("a")
    engine.handle(CAST, "arm")
    assert engine.handle(Call("c"), "bye") == [Reply("c", "ok"), CancelTimer(1), Stopped("normal")]
    with pytest.raises(StateMachineError, match="stopped"):
        engine.handle(CAST, "more")


def test_bad_returns_are_reported_as_machine_errors() -> None:
    engine = Engine(Recording({("a", "bad"): "b"}))
    engine.start("a")
    with pytest.raises(StateMachineError, match="returned 'b'"):
        engine.handle(CAST, "bad")
    with pytest.raises(StateMachineError, match="init must return"):
        Engine(Recording()).start(KeepState())
    engine = Engine(Recording({("a", "neg"): KeepState(SetStateTimeout(-1))}))
    engine.start("a")
    with pytest.raises(StateMachineError, match="negative"):
        engine.handle(CAST, "neg")


def test_init_actions_run_before_queued_events() -> None:
    seen = Recording()
    engine = Engine(seen)
    effects = engine.start(NextState("a", NextEvent(INTERNAL, "boot"), SetStateTimeout(2, "t")))
    assert effects == [StartTimer(1, 2.0)]
    assert seen.seen == [(INTERNAL, "boot", "a")]


async def _async_machine(etype: Any, content: Any, state: str) -> Any:
    return NextState("b") if content == "go" else None


def test_async_callbacks_need_the_async_driver() -> None:
    import asyncio

    engine = Engine(_async_machine)
    engine.start("a")  # no enter call: no callback yet
    with pytest.raises(StateMachineError, match="awaitable"):
        engine.handle(CAST, "go")

    async def main() -> None:
        engine2 = Engine(_async_machine)
        await engine2.start_async("a")
        await engine2.handle_async(CAST, "go")
        assert engine2.state == "b"

    asyncio.run(main())

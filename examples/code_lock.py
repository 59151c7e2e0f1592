"""A code lock as a `StateMachine` (OTP's gen_statem example), with a lockout.

States: ``locked`` -> (right code) -> ``open`` -> (state timeout) -> ``locked``;
three wrong codes -> ``suspended`` until a named timeout fires.

* Buttons pressed while ``open`` are *postponed*: they are handled, in order,
  once the door has locked again (nothing typed is lost).
* ``open`` closes itself with a *state timeout*: leaving the state cancels it.
* A half-typed code is forgotten by a *generic named timeout* (``"idle"``):
  each button restarts it; status calls do not disturb it (an *event*
  timeout would be cancelled by any event, a status call included).
* ``suspended`` ends with another state timeout; buttons are ignored meanwhile.
* Entering ``locked`` clears the typed buttons (a *state-enter* call).

Run it: ``python examples/code_lock.py`` (one local node, prints each step).
"""

from __future__ import annotations

from typing import Any

import partisan
from partisan.actors.state_machine import (
    CAST,
    ENTER,
    POSTPONE,
    STATE_TIMEOUT,
    Call,
    CancelTimeout,
    KeepState,
    NamedTimeout,
    NextState,
    Reply,
    SetStateTimeout,
    SetTimeout,
    StateMachine,
)


class CodeLock(StateMachine):
    """``cast(lock, ("button", digit))``; ``call(lock, "status")``; ``call(lock, "lock")``."""

    state_enter = True

    def init(
        self,
        code: str,
        open_time: float = 10.0,
        idle_time: float = 5.0,
        lockout_time: float = 30.0,
        max_wrong: int = 3,
    ) -> str:
        self.code = code
        self.open_time = open_time
        self.idle_time = idle_time
        self.lockout_time = lockout_time
        self.max_wrong = max_wrong
        self.buttons = ""
        self.wrong = 0
        self.opened = 0
        return "locked"

    def locked(self, event: Any, content: Any) -> Any:
        if event is ENTER:
            self.buttons = ""
            return None
        if event is CAST and content[0] == "button":
            self.buttons += content[1]
            if self.buttons == self.code:
                self.wrong = 0
                return NextState("open", CancelTimeout("idle"))
            if len(self.buttons) < len(self.code):
                return KeepState(SetTimeout("idle", self.idle_time))
            self.buttons = ""
            self.wrong += 1
            if self.wrong >= self.max_wrong:
                return NextState(
                    "suspended", CancelTimeout("idle"), SetStateTimeout(self.lockout_time)
                )
            return KeepState(CancelTimeout("idle"))
        if event == NamedTimeout("idle"):  # forget the half-typed code
            self.buttons = ""
            return None
        return self._common(event, content)

    def open(self, event: Any, content: Any) -> Any:
        if event is ENTER:
            self.opened += 1
            return KeepState(SetStateTimeout(self.open_time, "lock"))
        if event is STATE_TIMEOUT:
            return NextState("locked")
        if event is CAST:
            return KeepState(POSTPONE)  # typed while open: handle once locked again
        if isinstance(event, Call) and content == "lock":
            return NextState("locked", Reply(event.caller, "locked"))
        return self._common(event, content)

    def suspended(self, event: Any, content: Any) -> Any:
        if event is ENTER:
            return None
        if event is STATE_TIMEOUT:
            self.wrong = 0
            return NextState("locked")
        if event is CAST:
            return None  # ignored while suspended
        return self._common(event, content)

    def _common(self, event: Any, content: Any) -> Any:
        if isinstance(event, Call) and content == "status":
            return KeepState(Reply(event.caller, (self.state, self.buttons, self.opened)))
        if isinstance(event, Call):
            return KeepState(Reply(event.caller, ("error", f"unknown request {content!r}")))
        return None  # stray info messages are ignored


async def main() -> None:
    import asyncio

    lock = await CodeLock.start("123", 0.3, 0.2, 0.3)
    show = lambda label, st: print(f"{label:<34} -> {st[0]:<9} typed={st[1]!r}")  # noqa: E731

    for digit in "12":
        partisan.cast(lock, ("button", digit))
    show("pressed 1, 2", await partisan.call(lock, "status"))
    partisan.cast(lock, ("button", "3"))
    show("pressed 3", await partisan.call(lock, "status"))
    for digit in "45":
        partisan.cast(lock, ("button", digit))  # postponed while open
    show("pressed 4, 5 while open (postponed)", await partisan.call(lock, "status"))
    while (await partisan.call(lock, "status"))[0] == "open":
        await asyncio.sleep(0.05)
    show("the open state timed out", await partisan.call(lock, "status"))
    while (await partisan.call(lock, "status"))[1]:
        await asyncio.sleep(0.05)
    show("idle: half-typed code forgotten", await partisan.call(lock, "status"))
    for code in ("999", "999", "999"):
        for digit in code:
            partisan.cast(lock, ("button", digit))
    show("three wrong codes", await partisan.call(lock, "status"))
    while (await partisan.call(lock, "status"))[0] == "suspended":
        await asyncio.sleep(0.05)
    show("lockout over", await partisan.call(lock, "status"))


if __name__ == "__main__":
    partisan.run(main, name="code-lock", insecure=True)

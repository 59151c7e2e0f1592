"""The OTP supervision vocabulary shared by the actor and the OS-process supervisors.

Names and defaults follow Erlang/OTP's ``supervisor``: restart types
(`PERMANENT`, `TRANSIENT`, `TEMPORARY`), shutdown (seconds, `BRUTAL_KILL`,
`INFINITY`), child types (`WORKER`, `SUPERVISOR`), strategies and the restart
intensity (at most ``intensity`` restarts in any ``period`` seconds; defaults
1 in 5 s). This module is pure: `RestartIntensity` is handed the time, it never
reads a clock, so the rule is unit-tested exactly.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_INTENSITY",
    "DEFAULT_PERIOD",
    "DEFAULT_WORKER_SHUTDOWN",
    "INFINITY",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "SIMPLE_ONE_FOR_ONE",
    "SUPERVISOR",
    "TEMPORARY",
    "TRANSIENT",
    "WORKER",
    "ChildType",
    "Restart",
    "RestartIntensity",
    "Shutdown",
    "ShutdownValue",
    "Strategy",
    "check_shutdown",
    "is_normal_exit",
    "should_restart",
]


class Restart(enum.Enum):
    """When a child that exited is restarted."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never (and it is forgotten once it exits)


class Shutdown(enum.Enum):
    """The two non-numeric shutdown values; a number is a timeout in seconds."""

    BRUTAL_KILL = "brutal_kill"  # kill at once, no chance to clean up
    INFINITY = "infinity"  # wait as long as it takes (the default for supervisors)


class ChildType(enum.Enum):
    """A worker, or a supervisor (which changes only the default shutdown)."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


class Strategy(enum.Enum):
    """Which siblings are restarted together when one child exits."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


PERMANENT = Restart.PERMANENT
"""Restart the child whenever it exits (the default)."""
TRANSIENT = Restart.TRANSIENT
"""Restart the child only after an abnormal exit (not `normal`, `shutdown` or `("shutdown", x)`)."""
TEMPORARY = Restart.TEMPORARY
"""Never restart the child; forget it once it exits."""
BRUTAL_KILL = Shutdown.BRUTAL_KILL
"""Shutdown value: kill the child at once with the untrappable `exit(pid, "kill")`."""
INFINITY = Shutdown.INFINITY
"""Shutdown value: wait as long as the child takes (the default for supervisors)."""
WORKER = ChildType.WORKER
"""Child type of a worker (default shutdown 5 s)."""
SUPERVISOR = ChildType.SUPERVISOR
"""Child type of a supervisor (default shutdown `INFINITY`)."""
ONE_FOR_ONE = Strategy.ONE_FOR_ONE
"""Strategy: restart only the child that exited (the default)."""
ONE_FOR_ALL = Strategy.ONE_FOR_ALL
"""Strategy: when a child exits, stop all the others and restart them all."""
REST_FOR_ONE = Strategy.REST_FOR_ONE
"""Strategy: restart the child that exited and every child started after it."""
SIMPLE_ONE_FOR_ONE = Strategy.SIMPLE_ONE_FOR_ONE
"""Strategy: one template spec; `start_child(sup, extra_args)` adds children of it on demand."""

DEFAULT_INTENSITY = 1
DEFAULT_PERIOD = 5.0
DEFAULT_WORKER_SHUTDOWN = 5.0

#: What a `shutdown=` field holds: seconds, `BRUTAL_KILL` or `INFINITY`.
ShutdownValue = float | Shutdown

#: Exit reasons that count as a normal exit (OTP: ``normal``, ``shutdown``,
#: ``{shutdown, Term}``); a transient child is not restarted after these.
_NORMAL_REASONS = ("normal", "shutdown")


def is_normal_exit(reason: object) -> bool:
    """True for ``"normal"``, ``"shutdown"`` and ``("shutdown", anything)``."""
    if isinstance(reason, str):
        return reason in _NORMAL_REASONS
    return isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"


def should_restart(restart: Restart, reason: object) -> bool:
    """Whether a child of type `restart` that exited with `reason` is restarted."""
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return not is_normal_exit(reason)
    return False


def check_shutdown(value: object, *, field_name: str = "shutdown") -> ShutdownValue:
    """Validate a shutdown value; raise ``ValueError`` naming what is allowed."""
    if isinstance(value, Shutdown):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ValueError(
        f"{field_name}: invalid value {value!r}; expected seconds >= 0, BRUTAL_KILL or INFINITY"
    )


@dataclass(slots=True)
class RestartIntensity:
    """OTP's restart-intensity rule: more than `intensity` restarts within `period` seconds is too many.

    `add(now)` records a restart and returns False once the limit is exceeded,
    which is when the supervisor must give up (shut down its children and exit,
    escalating to its parent). With the defaults (1 in 5 s) the first crash is
    restarted and a second one within 5 s shuts the supervisor down;
    ``intensity=0`` means no restart at all.
    """

    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD
    _restarts: deque[float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int):
            raise ValueError(f"intensity: invalid value {self.intensity!r}; expected an int >= 0")
        if self.intensity < 0:
            raise ValueError(f"intensity: invalid value {self.intensity!r}; expected an int >= 0")
        if not isinstance(self.period, (int, float)) or self.period <= 0:
            raise ValueError(f"period: invalid value {self.period!r}; expected seconds > 0")
        self._restarts = deque()

    def add(self, now: float) -> bool:
        """Record a restart at `now`; False when it exceeds the intensity."""
        restarts = self._restarts
        assert restarts is not None  # set in __post_init__
        restarts.append(now)
        while restarts and now - restarts[0] > self.period:  # OTP keeps now - t <= period
            restarts.popleft()
        return len(restarts) <= self.intensity

    def recent(self, now: float) -> int:
        """How many restarts fall within the last `period` seconds."""
        assert self._restarts is not None
        return sum(1 for t in self._restarts if now - t <= self.period)

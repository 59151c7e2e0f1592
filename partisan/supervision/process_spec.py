"""Data of the node-process supervisor: specs in, immutable records and events out.

`ProcessSpec` says how to run one child; `ProcessInfo` and
`ProcessSupervisorStatistics` are the snapshots a live table renders; the
`ProcessEvent` classes are what listeners receive. All are frozen dataclasses,
so tests compare them and the CLI renders them without touching live state.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from partisan.supervision.policy import (
    DEFAULT_WORKER_SHUTDOWN,
    PERMANENT,
    Restart,
    ShutdownValue,
    check_shutdown,
)

__all__ = [
    "PORT_PLACEHOLDER",
    "ProcessEvent",
    "ProcessExited",
    "ProcessInfo",
    "ProcessSpec",
    "ProcessStartFailed",
    "ProcessStarted",
    "ProcessState",
    "ProcessSupervisorStatistics",
    "ProcessSupervisorStopped",
    "parse_ready_line",
]

#: Replaced in a spec's argv by the port: `ProcessSpec.port` at the first start,
#: the port the child reported in its ready line at every restart.
PORT_PLACEHOLDER = "{port}"


@dataclass(frozen=True, slots=True, eq=False)
class ProcessSpec:
    """How to run one supervised OS process.

    `argv` is run with `subprocess` in its own session (process group); the
    child must print one JSON object line on stdout once it serves (its
    "ready line", with ``address`` ``"host:port"``), and exit when its stdin
    reaches EOF, which is how it learns that its supervisor is gone.
    `shutdown` is the grace period between SIGTERM and SIGKILL (or
    `BRUTAL_KILL` / `INFINITY`). `stderr_path`, if set, receives the child's
    stderr (appended); otherwise its last lines are kept for error messages.
    """

    id: str
    argv: Sequence[str]
    restart: Restart = PERMANENT
    shutdown: ShutdownValue = DEFAULT_WORKER_SHUTDOWN
    port: int = 0
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    ready_timeout: float = 10.0
    stderr_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"id: invalid value {self.id!r}; expected a non-empty string")
        if isinstance(self.argv, str) or not self.argv:
            raise ValueError(
                f"argv: invalid value {self.argv!r}; expected a non-empty list of strings"
            )
        object.__setattr__(self, "argv", tuple(str(a) for a in self.argv))
        if not isinstance(self.restart, Restart):
            raise ValueError(
                f"restart: invalid value {self.restart!r}; expected PERMANENT, TRANSIENT or TEMPORARY"
            )
        object.__setattr__(self, "shutdown", check_shutdown(self.shutdown))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: invalid value {self.port!r}; expected 0..65535")
        if self.ready_timeout <= 0:
            raise ValueError(f"ready_timeout: invalid value {self.ready_timeout!r}; expected > 0")

    def command(self, port: int) -> list[str]:
        """The argv for a start on `port` (placeholders substituted)."""
        return [a.replace(PORT_PLACEHOLDER, str(port)) for a in self.argv]


class ProcessState(enum.Enum):
    """Where a supervised process is in its life."""

    STARTING = "starting"  # spawned, ready line not yet seen
    RUNNING = "running"
    RESTARTING = "restarting"  # died; a new incarnation is being started
    STOPPING = "stopping"  # we asked it to stop
    TERMINATED = "terminated"  # not running; its spec is kept (restart_child brings it back)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of one child (what `which_children` and the live table show)."""

    id: str
    state: ProcessState
    os_pid: int | None
    address: str | None
    port: int
    incarnation: int | None
    restarts: int
    started_at: float | None  # wall-clock time of the current incarnation's start
    last_exit: str | None  # "normal", "exit code 3", "killed by SIGKILL", ...
    ready: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProcessSupervisorStatistics:
    """A snapshot of the whole supervisor."""

    children: tuple[ProcessInfo, ...]
    restarts: int  # restarts performed since the supervisor started
    running: int
    stopped_reason: str | None  # None while the supervisor is alive


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """Child `id` is serving: it printed its ready line (`restart` counts earlier lives)."""

    id: str
    os_pid: int
    address: str | None
    incarnation: int | None
    restarts: int


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """Child `id` exited; `will_restart` says what the supervisor does about it."""

    id: str
    os_pid: int
    returncode: int
    reason: str
    expected: bool  # True when the supervisor stopped it
    will_restart: bool


@dataclass(frozen=True, slots=True)
class ProcessStartFailed:
    """A (re)start of child `id` failed before its ready line."""

    id: str
    error: str


@dataclass(frozen=True, slots=True)
class ProcessSupervisorStopped:
    """The supervisor stopped: ``"shutdown"`` on request, or it gave up."""

    reason: str


ProcessEvent = ProcessStarted | ProcessExited | ProcessStartFailed | ProcessSupervisorStopped


def parse_ready_line(line: bytes | str) -> dict[str, Any] | None:
    """Return the JSON object of a ready line, or None if `line` is not one.

    A ready line is one JSON object with an ``address`` (``"host:port"``) or a
    ``port``; any other output before it (banners, warnings) is ignored.
    """
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or ("address" not in obj and "port" not in obj):
        return None
    return obj


def ready_port(ready: Mapping[str, Any]) -> int | None:
    """The port a ready line reports (``port``, else the end of ``address``)."""
    port = ready.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    address = ready.get("address")
    if isinstance(address, str):
        _, sep, tail = address.rpartition(":")
        if sep and tail.isdigit():
            return int(tail)
    return None


def exit_reason(returncode: int) -> str:
    """Describe a return code: ``normal``, ``exit code N`` or ``killed by SIGX``."""
    import signal

    if returncode == 0:
        return "normal"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"

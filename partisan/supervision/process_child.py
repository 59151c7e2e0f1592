"""The process supervisor's mutable record of one child, and its immutable snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from partisan.supervision.os_process import OsProcess
from partisan.supervision.policy import RestartIntensity
from partisan.supervision.process_spec import ProcessInfo, ProcessSpec, ProcessState

__all__ = ["ChildRecord"]


@dataclass(slots=True)
class ChildRecord:
    """What the supervisor knows of one child; only the supervisor mutates it."""

    spec: ProcessSpec
    state: ProcessState = ProcessState.TERMINATED
    port: int = 0
    proc: OsProcess | None = None
    ready: dict[str, object] = field(default_factory=dict)
    restarts: int = 0
    started_at: float | None = None
    last_exit: str | None = None
    watcher: asyncio.Task[None] | None = None
    #: This child's own restart intensity (a supervisor with ``escalate=False``).
    intensity: RestartIntensity | None = None

    def info(self) -> ProcessInfo:
        """An immutable snapshot (what `which_children` returns)."""
        inc = self.ready.get("incarnation")
        address = self.ready.get("address")
        return ProcessInfo(
            id=self.spec.id,
            state=self.state,
            os_pid=self.proc.pid if self.proc is not None and self.proc.alive else None,
            address=address if isinstance(address, str) else None,
            port=self.port,
            incarnation=inc if isinstance(inc, int) else None,
            restarts=self.restarts,
            started_at=self.started_at,
            last_exit=self.last_exit,
            ready=dict(self.ready),
        )

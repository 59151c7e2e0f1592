"""Progress of ``cluster up`` on stderr: a rich bar on a terminal, a few plain lines otherwise.

A pipe or a CI log gets one line when a phase starts and one when it ends
(``partisan: starting nodes: 8/8 in 2.1 s``), never a line per update, so a
log stays readable. ``NO_COLOR`` and ``TERM=dumb`` are honoured (plain lines).
"""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "fancy"]


def fancy(stream: TextIO) -> bool:
    """True if `stream` is a terminal that can show a live bar."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


class Progress:
    """Phases with a bar each; `close` ends the display (idempotent)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._rich: Any = None
        self._task: Any = None
        self._phase: tuple[str, int, float] | None = None
        self._completed = 0
        if fancy(stream):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            console = Console(file=stream, no_color="NO_COLOR" in os.environ)
            self._rich = RichProgress(
                TextColumn("{task.description:<16}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self._rich.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def phase(self, description: str, total: int) -> None:
        """End the current phase and start the next."""
        self._end_phase()
        self._phase = (description, total, time.monotonic())
        self._completed = 0
        if self._rich is not None:
            self._task = self._rich.add_task(description, total=total, detail="")
        else:
            print(f"partisan: {description}...", file=self.stream, flush=True)

    def update(self, completed: int, detail: str = "") -> None:
        self._completed = completed
        if self._rich is not None and self._task is not None:
            self._rich.update(self._task, completed=completed, detail=detail)

    def close(self) -> None:
        self._end_phase()
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def _end_phase(self) -> None:
        if self._phase is None:
            return
        description, total, began = self._phase
        self._phase = None
        if self._rich is None:
            took = time.monotonic() - began
            print(
                f"partisan: {description}: {self._completed}/{total} in {took:.1f} s",
                file=self.stream,
                flush=True,
            )

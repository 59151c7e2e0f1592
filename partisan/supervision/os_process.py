"""One running OS process, watched from the event loop without polling.

`OsProcess.spawn` starts the child with `subprocess.Popen` (``fork_exec`` in C,
so no Python code runs between fork and exec: no fork-after-zmq hazard) in a
new session, with pipes on stdin, stdout and (unless it goes to a file)
stderr. Its death is noticed through a pidfd registered with the loop
(Linux >= 5.3): the fd becomes readable the moment the child exits, and the
callback reaps it with ``waitpid(WNOHANG)``. Where pidfds are missing a
daemon thread blocks in ``waitpid`` instead. Either way nobody polls, and a
grandchild that inherited a pipe cannot delay the notice (asyncio's own
subprocess ``wait()`` waits for every pipe to close).

stdout is read as lines: the first JSON object line is the ready line, later
lines are kept as a short tail. The write end of stdin is held open for the
child's whole life; closing it (or our own death) is the child's cue to exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from partisan.supervision.process_spec import exit_reason, parse_ready_line

__all__ = ["OsProcess"]

log = logging.getLogger(__name__)

_TAIL_LINES = 40


class _LineReader:
    """Read a non-blocking pipe from the loop, splitting lines; EOF removes the reader."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pipe: IO[bytes], on_line: Callable[[bytes], None]
    ) -> None:
        self._loop = loop
        self._pipe = pipe
        self._fd = pipe.fileno()
        self._on_line = on_line
        self._partial = b""
        self.closed = False
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        while True:  # drain until EAGAIN or EOF
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                if self._partial:
                    self._on_line(self._partial)
                    self._partial = b""
                self.close()
                return
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                self._on_line(line)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._loop.remove_reader(self._fd)
            self._pipe.close()


class OsProcess:
    """A child process: `ready` resolves with its ready line, `exited` with its return code."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._loop = loop
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.output: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.errors: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._readers: list[_LineReader] = []
        self._pidfd: int | None = None
        assert popen.stdout is not None
        self._readers.append(_LineReader(loop, popen.stdout, self._on_stdout))
        if popen.stderr is not None:
            self._readers.append(_LineReader(loop, popen.stderr, self._on_stderr))
        self._watch()

    @classmethod
    def spawn(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stderr_path: str | None = None,
    ) -> OsProcess:
        """Start `argv` in its own session; must be called on the running loop."""
        loop = asyncio.get_running_loop()
        environ = None if env is None else {**os.environ, **env}
        err: Any = subprocess.PIPE
        if stderr_path is not None:
            err = open(stderr_path, "ab")  # noqa: SIM115  # closed right after the spawn
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=environ,
                cwd=cwd,
                close_fds=True,
                start_new_session=True,  # own process group: Ctrl-C at our terminal is ours alone
            )
        finally:
            if stderr_path is not None:
                err.close()
        return cls(popen, loop)

    # ------------------------------------------------------------------ watching

    def _watch(self) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(self.pid)
            except OSError:  # kernel without pidfd: fall back to a waiting thread
                self._pidfd = None
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._reap)
            return
        thread = threading.Thread(target=self._wait_thread, name=f"waitpid-{self.pid}", daemon=True)
        thread.start()

    def _wait_thread(self) -> None:
        code = self.popen.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody to tell
            self._loop.call_soon_threadsafe(self._set_exited, code)

    def _reap(self) -> None:
        code = self.popen.poll()
        if code is None:  # spurious wake-up; the pidfd stays registered
            return
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._set_exited(code)

    def _set_exited(self, code: int) -> None:
        if self.exited.done():
            return
        # Read what the child wrote before dying (its last words explain the crash).
        for reader in self._readers:
            if not reader.closed:
                reader._readable()
        if not self.ready.done():
            self.ready.set_exception(ChildProcessError(self._died_before_ready(code)))
            self.ready.exception()  # mark retrieved: the starter may already have given up
        self.exited.set_result(code)

    def _died_before_ready(self, code: int) -> str:
        tail = "\n".join(self.errors) or "\n".join(self.output)
        message = f"exited before its ready line ({exit_reason(code)})"
        return f"{message}; last output:\n{tail}" if tail else message

    def _on_stdout(self, line: bytes) -> None:
        if not self.ready.done():
            ready = parse_ready_line(line)
            if ready is not None:
                self.ready.set_result(ready)
                return
        self.output.append(line.decode("utf-8", "replace"))

    def _on_stderr(self, line: bytes) -> None:
        self.errors.append(line.decode("utf-8", "replace"))

    # ------------------------------------------------------------------ control

    @property
    def alive(self) -> bool:
        """False once the child has been reaped."""
        return not self.exited.done()

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send `sig` to the child (or its whole process group) while it is unreaped.

        Until it is reaped its pid (and so its group id) cannot be reused, so
        this never hits a stranger.
        """
        if self.exited.done() or self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the child's whole process group."""
        self.signal(signal.SIGKILL, group=True)

    def close_stdin(self) -> None:
        """Close our end of the child's stdin: its cue that the supervisor is gone."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()

    def close(self) -> None:
        """Release every fd we hold for this child (after it exited)."""
        self.close_stdin()
        for reader in self._readers:
            reader.close()
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def stderr_tail(self) -> str:
        """The last lines of stderr (or stdout), for error messages."""
        return "\n".join(self.errors) or "\n".join(self.output)

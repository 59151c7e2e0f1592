"""Node processes for tests: start with the ready-line protocol, talk JSON lines, stop cleanly.

A node process prints one JSON ready line on stdout once it listens; the
harness reads it (so ports are whatever the node bound with ``--port 0`` —
never guessed) and keeps the node's stdin open: closing it, or the harness
dying, stops the node, so nothing outlives the test run.

`NodeProcess.start_scripted` runs `partisan.testing.testnode`, which also
takes commands on stdin and answers on stdout, one JSON object per line, each
answer carrying the command's ``id`` (see that module for the commands).
`NodeProcess.start` runs ``partisan node start`` itself.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from partisan.identity import NodeSpec

__all__ = ["NodeProcess", "NodeProcessError"]


class NodeProcessError(RuntimeError):
    """A node process did not start, answered an error, or died unexpectedly."""


class NodeProcess:
    """One node OS process owned by a test (use as a context manager or call `stop`)."""

    def __init__(
        self, argv: Sequence[str], *, ready_timeout: float = 20.0, env: dict[str, str] | None = None
    ) -> None:
        self.argv = list(argv)
        self._stderr = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed in stop()
            prefix="partisan-node-", suffix=".log", delete=False
        )
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=environment,
            text=True,
            bufsize=1,
        )
        self._tail: str | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._replies: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        try:
            self.ready = self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.name: str = self.ready["name"]
        self.address: str = self.ready["address"]
        self.incarnation: int = self.ready["incarnation"]
        self.public_key: str | None = self.ready.get("public_key")

    # ------------------------------------------------------------ starting

    @classmethod
    def start(cls, name: str, *args: str, ready_timeout: float = 20.0) -> NodeProcess:
        """Run ``partisan node start NAME ARGS...`` and wait for its ready line."""
        argv = [sys.executable, "-m", "partisan", "node", "start", name, *args]
        return cls(argv, ready_timeout=ready_timeout)

    @classmethod
    def start_scripted(
        cls,
        name: str,
        *args: str,
        keys: str | os.PathLike[str] | None = None,
        settings: dict[str, object] | None = None,
        ready_timeout: float = 20.0,
    ) -> NodeProcess:
        """Run the scriptable test node (`partisan.testing.testnode`) and wait until ready.

        `keys` is the CURVE key directory (else the node runs ``--insecure``);
        `settings` become ``--set field=value`` (e.g. heartbeat_timeout=0.5).
        """
        argv = [sys.executable, "-m", "partisan.testing.testnode", name, *args]
        argv += ["--keys", str(keys)] if keys is not None else ["--insecure"]
        for field, value in (settings or {}).items():
            argv += ["--set", f"{field}={value}"]
        return cls(argv, ready_timeout=ready_timeout)

    # ------------------------------------------------------------ identity

    @property
    def spec(self) -> NodeSpec:
        """The node's spec as announced in its ready line."""
        return NodeSpec.parse(
            f"{self.name}@{self.address}",
            incarnation=self.incarnation,
            public_key=self.public_key,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __str__(self) -> str:
        return f"{self.name}@{self.address} (pid {self.pid})"

    # ------------------------------------------------------------ commands

    def send_command(self, cmd: str, **args: Any) -> int:
        """Send one command to a scripted node without waiting; return its id."""
        ident = next(self._ids)
        line = json.dumps({"id": ident, "cmd": cmd, **args})
        if self.proc.stdin is None or self.proc.poll() is not None:
            raise NodeProcessError(f"{self} is not running: {self.stderr_tail()}")
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise NodeProcessError(f"{self} stopped reading commands: {exc}") from None
        return ident

    def reply(self, ident: int, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the answer to command `ident`; raise `NodeProcessError` on an error."""
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeProcessError(f"{self}: no answer to command {ident} in {timeout} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise NodeProcessError(f"{self} exited: {self.stderr_tail()}")
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and "id" in message:
                    self._replies[message["id"]] = message
        answer = self._replies.pop(ident)
        if not answer.get("ok", False):
            raise NodeProcessError(f"{self}: {answer.get('error')}: {answer.get('message')}")
        return answer

    def request(self, cmd: str, *, reply_timeout: float = 20.0, **args: Any) -> dict[str, Any]:
        """Send a command and wait (up to `reply_timeout`) for its answer."""
        return self.reply(self.send_command(cmd, **args), reply_timeout)

    # ------------------------------------------------------------ signals and stopping

    def signal(self, sig: int) -> None:
        """Send `sig` to the node (e.g. SIGSTOP / SIGCONT)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the node and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the node: close stdin, then SIGTERM, then SIGKILL; reap it; return its exit code."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGCONT)  # a paused node cannot exit
            with contextlib.suppress(OSError, ValueError):
                if proc.stdin is not None:
                    proc.stdin.close()
            try:
                proc.wait(timeout=timeout / 2)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout / 2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        self._reader.join(timeout=5)
        if not self._stderr.closed:
            self._stderr.close()
            self._tail = self.stderr_tail(200)
            with contextlib.suppress(OSError):
                os.unlink(self._stderr.name)
        return proc.returncode

    def stderr_tail(self, lines: int = 30) -> str:
        """The last lines the node wrote to stderr (for failure messages)."""
        if self._tail is not None:
            return "\n".join(self._tail.splitlines()[-lines:])
        try:
            text = Path(self._stderr.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ internals

    def _read_stdout(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                self._lines.put(line.strip())
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NodeProcessError(
                    f"{self.argv[3:5]} printed no ready line in {timeout} s: {self.stderr_tail()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise NodeProcessError(
                    f"node exited with {self.proc.returncode} before it was ready:\n{self.stderr_tail()}"
                )
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and "address" in message and "name" in message:
                    return message

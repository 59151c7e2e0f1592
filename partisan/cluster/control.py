"""The cluster daemon's control socket: one JSON object per line each way.

A CLI verb that changes the cluster (``kill``, ``stop``, ``start``,
``restart``, ``down``) asks the daemon rather than acting on a pid itself:
the daemon owns the processes, knows which pid is current, and must know that
a stop was asked for (so it does not restart the node). Requests::

    {"op": "ping"}                              -> {"ok": true, "pid": 123}
    {"op": "kill", "node": "n3", "signal": "KILL"}
    {"op": "stop" | "start" | "restart", "node": "n3"}
    {"op": "detach"}                            stop watching the launching `up`
    {"op": "down"}                              answered once every node stopped

Every answer has ``ok``; a refusal has ``"ok": false, "error": "one line"``,
which the CLI prints as is. The socket lives in DIR (mode 0600 via the
directory's permissions); AF_UNIX paths are limited to about 107 bytes, so a
long DIR is reached through ``/proc/self/fd`` of an open directory handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from partisan.errors import ClusterError

__all__ = ["SIGNALS", "ControlServer", "request", "socket_path"]

#: Signals `kill` accepts, by the names the CLI takes.
SIGNALS = ("KILL", "TERM", "STOP", "CONT")
#: Longest path AF_UNIX accepts on Linux (108 bytes with the NUL).
_MAX_UNIX_PATH = 100
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@contextlib.contextmanager
def socket_path(path: Path) -> Iterator[str]:
    """A path to `path` short enough for AF_UNIX, valid inside the block."""
    if len(os.fsencode(str(path))) <= _MAX_UNIX_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def request(path: Path, op: str, *, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
    """Send one request to the daemon and return its answer; ClusterError on failure.

    A refusal (``ok: false``) raises ClusterError with the daemon's own line.
    """
    message = json.dumps({"op": op, **args}).encode() + b"\n"
    try:
        with socket_path(path) as where, socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(where)
            sock.sendall(message)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ClusterError(f"the cluster daemon is not answering at {path}") from None
    except TimeoutError:
        raise ClusterError(
            f"the cluster daemon did not answer {op!r} within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise ClusterError(f"cannot reach the cluster daemon at {path}: {exc.strerror}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ClusterError(f"the cluster daemon closed the connection during {op!r}") from None
    if not answer.get("ok"):
        raise ClusterError(str(answer.get("error") or f"{op!r} failed"))
    return dict(answer)


class ControlServer:
    """Serve control requests on a Unix socket with one async handler."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._serving: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with socket_path(self.path) as where:
            self._server = await asyncio.start_unix_server(self._serve, path=where)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop listening, let answers in flight (a ``down``'s) go out, remove the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._serving:
            await asyncio.wait(self._serving, timeout=2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        try:
            line = await reader.readline()
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
                    raise ValueError
            except ValueError:
                answer: dict[str, Any] = {"ok": False, "error": "malformed control request"}
            else:
                try:
                    answer = await self._handler(msg)
                except ClusterError as exc:
                    answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

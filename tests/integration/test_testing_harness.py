"""The harness itself: leak checks catch leaks, node start failures say why, waits time out."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from partisan.testing import (
    NodeProcess,
    NodeProcessError,
    Snapshot,
    WaitTimeout,
    async_wait_until,
    wait_until,
)


@pytest.mark.timeout(30)
def test_snapshot_names_a_leaked_child_socket_and_descriptor() -> None:
    before = Snapshot.take()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        problems = Snapshot.take().leaks_since(before, grace=0.0)
        text = "\n".join(problems)
        assert f"{child.pid} " in text and "child processes" in text
        assert f"127.0.0.1:{listener.getsockname()[1]}" in text
        assert "file descriptors" in text
    finally:
        os.close(fd)
        listener.close()
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
    assert Snapshot.take().leaks_since(before) == []


@pytest.mark.timeout(30)
def test_a_node_that_cannot_start_raises_with_its_error_output() -> None:
    with pytest.raises(NodeProcessError, match="heartbeat_timeout"):
        NodeProcess.start("x", "--insecure", "--set", "heartbeat_timeout=never")


def test_wait_until_returns_the_value_or_times_out_with_the_last_state() -> None:
    values = iter([0, 0, 7])
    assert wait_until(lambda: next(values), 1.0, interval=0.001) == 7
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.05 s waiting for state=3"):
        wait_until(lambda: False, 0.05, message=lambda: "state=3")


def test_async_wait_until_accepts_async_predicates() -> None:
    import asyncio

    async def main() -> int:
        calls = 0

        async def ready() -> int:
            nonlocal calls
            calls += 1
            return calls if calls >= 3 else 0

        return await async_wait_until(ready, 1.0, interval=0.001)

    assert asyncio.run(main()) == 3

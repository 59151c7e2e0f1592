"""Integration tier: real node processes and real ZeroMQ sockets on 127.0.0.1.

Every test here is checked for leaks (child processes, inet sockets, file
descriptors) by the autouse `_leak_check`; the `partisan.testing.plugin`
fixtures (`node_factory`, `key_dir`, `fast_heartbeats`, `no_leaks`) are
available to every test in this directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from partisan.testing import NodeProcess
from partisan.testing.leaks import Snapshot
from partisan.testing.plugin import fast_heartbeats, key_dir, no_leaks, node_factory

__all__ = ["fast_heartbeats", "key_dir", "no_leaks", "node_factory"]


@pytest.fixture(autouse=True)
def _leak_check() -> Iterator[None]:
    """Fail any integration test that leaves a process, a socket or a descriptor behind."""
    before = Snapshot.take()
    yield
    problems = Snapshot.take().leaks_since(before)
    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


#: Fast timers for the delivery tests (acked, causal, the checker's planted run).
DELIVERY_SETTINGS = {
    "heartbeat_interval": 0.1,
    "heartbeat_timeout": 0.5,
    "gossip_interval": 0.2,
    "connection_interval": 0.2,
    "handshake_timeout": 1.0,
    "ack_interval": 0.05,
    "ack_interval_max": 0.5,
}


@pytest.fixture
def delivery_members(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``start(name, keys, channels, *args)``: a membernode writing ``tmp_path/<name>.jsonl``."""
    started: list[NodeProcess] = []

    def start(name: str, keys: Path, channels: str, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
        argv += ["--channels", channels, "--event-log", str(tmp_path / f"{name}.jsonl")]
        for field, value in DELIVERY_SETTINGS.items():
            argv += ["--set", f"{field}={value}"]
        node = NodeProcess([*argv, *args], env=dict(os.environ))
        started.append(node)
        return node

    yield start
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: n.stop(), reversed(started)))

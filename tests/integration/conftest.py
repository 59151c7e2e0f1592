"""Integration tier: real node processes and real ZeroMQ sockets on 127.0.0.1.

Every test here is checked for leaks (child processes, inet sockets, file
descriptors) by the autouse `_leak_check`; the `partisan.testing.plugin`
fixtures (`node_factory`, `key_dir`, `fast_heartbeats`, `no_leaks`) are
available to every test in this directory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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

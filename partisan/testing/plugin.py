"""pytest fixtures for testing code built on partisan (load with ``-p partisan.testing.plugin``).

``no_leaks``
    Fails the test if it leaves a child process, an inet socket or a file
    descriptor behind (after a short grace period for asynchronous cleanup).
    The failure names the leftovers. Use it explicitly or make it autouse in
    a conftest.
``node_factory``
    ``node_factory("a", keys=key_dir, settings={...})`` starts a scripted
    node process (`NodeProcess.start_scripted`); every node it started is
    stopped at teardown, even when the test failed.
``key_dir``
    ``key_dir("a", "b")`` creates CURVE keys for those node names in a
    temporary directory and returns it.
``fast_heartbeats``
    Config settings for quick failure detection in tests (0.1 s / 0.5 s).
``partisan_cluster``
    ``partisan_cluster(4, manager="hyparview", run="myapp:main")`` starts a
    real local cluster (`partisan.testing.cluster.Cluster`, through
    ``partisan cluster up``) in the test's ``tmp_path``, which pytest keeps,
    node logs included; every cluster it started is taken down at teardown,
    and a process left behind fails the test.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: loading the pytest plugin does not import zmq
# or the cluster machinery; fixtures do when used. None closes an import cycle
# (tests/unit/test_imports.py).
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from partisan.testing.leaks import Snapshot
from partisan.testing.process import NodeProcess

if TYPE_CHECKING:
    from partisan.testing.cluster import Cluster

__all__ = ["fast_heartbeats", "key_dir", "no_leaks", "node_factory", "partisan_cluster"]

FAST_HEARTBEATS = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaks a child process, a socket or a file descriptor."""
    before = Snapshot.take()
    yield
    problems = Snapshot.take().leaks_since(before)
    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def node_factory() -> Iterator[Callable[..., NodeProcess]]:
    """Start scripted node processes; all are stopped at teardown."""
    started: list[NodeProcess] = []

    def start(name: str, *args: str, **kwargs: Any) -> NodeProcess:
        node = NodeProcess.start_scripted(name, *args, **kwargs)
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


@pytest.fixture
def key_dir(tmp_path: Path) -> Callable[..., Path]:
    """``key_dir(*names)``: a fresh CURVE key directory with keys for `names`."""
    from partisan.transport.keys import create_keys

    counter = iter(range(1_000_000))

    def make(*names: str) -> Path:
        directory = tmp_path / f"keys{next(counter)}"
        create_keys(directory, names)
        return directory

    return make


@pytest.fixture
def fast_heartbeats() -> dict[str, float]:
    """Settings for fast failure detection (heartbeat 0.1 s, timeout 0.5 s)."""
    return dict(FAST_HEARTBEATS)


@pytest.fixture
def partisan_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``partisan_cluster(n, **options)``: a started `Cluster` in tmp_path; all downed at teardown.

    Teardown stops every cluster even if one fails to stop, then fails the
    test with every leftover it found (a leaked cluster must not become the
    next test's failure).
    """
    from partisan.testing.cluster import Cluster

    started: list[Cluster] = []

    def start(n: int = 3, **options: Any) -> Cluster:
        options.setdefault("directory", tmp_path / f"cluster{len(started)}")
        cluster = Cluster(n, **options)
        cluster.start()
        started.append(cluster)
        return cluster

    yield start
    problems = []
    for cluster in reversed(started):
        try:
            cluster.close()
        except AssertionError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)

"""`ClusterClient`: a hidden node joined to a running local cluster, so a test can reach its actors.

Split from `partisan.testing.cluster` (which re-exports it): `Cluster.client()`
and `connect(directory)` return one. Hidden, it is in nobody's membership
view, so the test does not change the overlay it observes; it has a key of
its own in the cluster's key directory (nodes admit new keys without a
restart), removed when it stops.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: the key store (zmq) is imported only by a
# client that joins. None closes an import cycle (tests/unit/test_imports.py).
import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import partisan
from partisan.testing.cluster_processes import ClusterCommandError

__all__ = ["ClusterClient", "connect"]

_clients = itertools.count(1)


class ClusterClient:
    """A hidden `partisan.Node` joined to a running cluster: reach its actors from a test.

    `node` is the `partisan.Node` (the current node of this task, so
    ``partisan.call``/``cast``/``rpc`` work directly once `connect` linked the
    target). `call` and `rpc` link to the target's node first, so they also
    work right after a node restarted.
    """

    def __init__(self, directory: Path, node: Any) -> None:
        self.dir = directory
        self.node = node

    @property
    def name(self) -> str:
        return str(self.node.name)

    def entries(self) -> dict[str, dict[str, Any]]:
        """cluster.json's node entries by name (state, address, incarnation, ...)."""
        doc = json.loads((self.dir / "cluster.json").read_text())
        return {e["name"]: e for e in doc.get("nodes", []) if isinstance(e, dict) and "name" in e}

    async def connect(self, names: Iterable[str] | None = None, *, timeout: float = 15.0) -> None:
        """Link to `names` (default: every node not down), each at its current incarnation.

        Waits for nodes that are not up yet (cluster.json says ``starting``:
        e.g. being restarted) and dials again a node that restarted, since
        the link to its previous incarnation is dead; `ClusterCommandError`
        naming the unreachable ones at `timeout`. By default a node that is
        down (stopped, or past its restart limit) is skipped: waiting for it
        would only delay the error to the first call that needs it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wanted = None if names is None else list(names)
        errors: dict[str, str] = {}
        while True:
            entries = self.entries()
            missing: list[tuple[str, str]] = []
            linked = {spec.name: spec for spec in self.node.links.peers()}
            for name in wanted if wanted is not None else list(entries):
                entry = entries.get(name)
                if entry is None:
                    raise ClusterCommandError(f"no node {name!r} in {self.dir}")
                address, incarnation = entry.get("address"), entry.get("incarnation")
                if wanted is None and entry.get("state") == "down":
                    continue
                if entry.get("state") != "up" or not address:
                    errors[name] = f"state {entry.get('state')}"
                    missing.append((name, ""))
                    continue
                spec = linked.get(name)
                if spec is not None and (incarnation is None or spec.incarnation >= incarnation):
                    continue
                if spec is not None:  # a link to the previous incarnation
                    await self.node.leave(name)
                missing.append((name, f"{name}@{address}"))
            if not missing:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                why = ", ".join(f"{n} ({errors.get(n, 'not linked')})" for n, _ in missing)
                raise ClusterCommandError(f"{self.name} could not reach {why} in {timeout:g} s")
            dials = [(n, c) for n, c in missing if c]
            results = await asyncio.gather(
                *(self.node.join(c, timeout=min(remaining, 5.0)) for _, c in dials),
                return_exceptions=True,
            )
            for (name, _), result in zip(dials, results, strict=True):
                if isinstance(result, BaseException):
                    errors[name] = f"{type(result).__name__}: {result}"
            if len(dials) < len(missing) or any(isinstance(r, BaseException) for r in results):
                await asyncio.sleep(0.1)

    async def call(self, dest: Any, request: Any, *, timeout: float | None = 5.0) -> Any:
        """``partisan.call(dest, request)``, linking to `dest`'s node first if needed."""

        await self._reach(_node_of(dest))
        with self.node.as_current():
            return await partisan.call(dest, request, timeout=timeout)

    async def rpc(self, node: str, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """``partisan.rpc(node, fn, *args)``, linking to `node` first if needed."""

        await self._reach(node)
        with self.node.as_current():
            return await partisan.rpc(node, fn, *args, timeout=timeout)

    def cast(self, dest: Any, request: Any) -> None:
        """``partisan.cast(dest, request)`` (the node must be linked: see `connect`)."""

        with self.node.as_current():
            partisan.cast(dest, request)

    async def _reach(self, name: str) -> None:
        """Link to `name` unless linked to its current incarnation (it may have restarted)."""
        if name != self.name:
            await self.connect([name])


@contextlib.asynccontextmanager
async def connect(
    directory: str | os.PathLike[str], *, timeout: float = 15.0, **node_options: Any
) -> AsyncIterator[ClusterClient]:
    """A `ClusterClient` for the cluster in `directory`, linked to its nodes; stopped on exit.

    Creates a key ``client-<pid>-<k>`` in DIR/keys (removed on exit);
    `node_options` go to `partisan.Node` (e.g. ``heartbeat_timeout``).
    """
    from partisan.transport.keys import add_key, public_key_path, secret_key_path

    root = Path(directory).resolve()
    keys = root / "keys"
    name = f"client-{os.getpid()}-{next(_clients)}"
    add_key(keys, name)
    try:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, **node_options}
        async with partisan.Node(name, hidden=True, key_dir=str(keys), **options) as node:
            client = ClusterClient(root, node)
            await client.connect(timeout=timeout)
            yield client
    finally:
        for path in (public_key_path(keys, name), secret_key_path(keys, name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _node_of(dest: Any) -> str:
    if isinstance(dest, tuple) and len(dest) == 2:
        return str(dest[1])
    return str(dest.node)

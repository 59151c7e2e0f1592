"""KeyWatch: a removed or replaced public key ends that peer's link, once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from partisan.identity import NodeSpec
from partisan.testing import async_wait_until
from partisan.transport.keys import KeyStore, create_keys, public_key_path
from partisan.transport.peer import Peer, PeerTable
from partisan.transport.revocation import REVOKED, KeyWatch


def _setup(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> tuple[KeyWatch, list[tuple[str, str]]]:
    pairs = create_keys(tmp_path, ["a", "b", "c"])
    table = PeerTable(1 << 20)
    for name in ("b", "c"):
        peer = table.add(name, "10.0.0.1", 9100, loop)
        peer.spec = NodeSpec(name, "10.0.0.1", 9100, public_key=pairs[name].public, incarnation=1)
    torn: list[tuple[str, str]] = []

    def teardown(peer: Peer, reason: str) -> None:
        torn.append((peer.name, reason))
        table.remove(peer)

    return KeyWatch(KeyStore(tmp_path, "a"), table, teardown, interval=1.0), torn


@pytest.mark.timeout(10)
def test_a_removed_key_ends_the_link_once(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        watch, torn = _setup(tmp_path, loop)
        assert watch.check() == []  # nothing changed
        public_key_path(tmp_path, "b").unlink()
        assert watch.check() == ["b"]
        assert torn == [("b", REVOKED)]
        assert watch.check() == []
        assert watch.revoked == 1
    finally:
        loop.close()


@pytest.mark.timeout(10)
def test_a_replaced_key_ends_the_link(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        watch, torn = _setup(tmp_path, loop)
        other = tmp_path / "other"
        create_keys(other, ["c"])
        public_key_path(tmp_path, "c").unlink()
        public_key_path(tmp_path, "c").write_bytes(public_key_path(other, "c").read_bytes())
        assert watch.check() == ["c"]
        assert torn == [("c", REVOKED)]
    finally:
        loop.close()


@pytest.mark.timeout(10)
def test_the_watch_runs_on_its_timer(tmp_path: Path) -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        watch, torn = _setup(tmp_path, loop)
        watch.interval = 0.05
        watch.start(loop)
        start = time.monotonic()
        public_key_path(tmp_path, "b").unlink()
        await async_wait_until(lambda: torn, 5, message="the timer never revoked b")
        watch.stop()
        return time.monotonic() - start

    assert asyncio.run(main()) < 1.0

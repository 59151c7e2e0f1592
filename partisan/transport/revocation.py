"""Key revocation: a public key removed from the key directory ends that peer's links.

Theory of operation
-------------------
The ZAP handler (`auth.py`) decides only at handshake time, so on its own a
removed key would keep every live session it already authenticated. Every
`key_refresh_interval` (default 1 s) `KeyWatch` asks the `KeyStore` to re-read
``public_keys/`` (one ``stat`` when nothing changed) and, when the admitted
keys changed (`KeyStore.generation` moved, whoever triggered the re-read),
tears down the link of every peer whose name no longer has a key, or now has
a different key from the one it announced at HELLO. The teardown is the
ordinary one (`Detection.teardown`): our DEALERs close, a BYE tells the peer,
queued messages are counted as dropped and `NodeDown(peer, "revoked")` fires.
The peer's own re-dial then fails in the ZAP handler (unknown key), which
re-reads the directory on every miss.

Stated time: a removed key refuses new handshakes and closes live sessions
within ``key_refresh_interval`` (1 s) of the change, plus one loop turn.

ZeroMQ cannot close one peer's connection to a ROUTER, so a revoked peer that
ignores our BYE keeps its TCP connection to us open until it closes it; every
frame it sends there is dropped before decoding (its session is gone, so the
frame is ``unknown_session``), and a new session needs a new handshake, which
the ZAP handler refuses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from partisan.transport.keys import KeyStore
from partisan.transport.peer import Peer, PeerTable
from partisan.transport.ticks import call_on_grid

__all__ = ["REVOKED", "KeyWatch"]

log = logging.getLogger(__name__)

#: The `NodeDown` reason of a peer whose key was removed.
REVOKED = "revoked"


class KeyWatch:
    """Re-read the key directory on a timer; end the links of revoked peers."""

    def __init__(
        self,
        keystore: KeyStore,
        table: PeerTable,
        teardown: Callable[[Peer, str], None],
        *,
        interval: float,
    ) -> None:
        self.keystore = keystore
        self._table = table
        self._teardown = teardown
        self.interval = interval
        self._generation = keystore.generation
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Peers whose links were closed because their key went away.
        self.revoked = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = call_on_grid(loop, self.interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _tick(self) -> None:
        try:
            self.check()
        except Exception:  # a watcher must never stop the node; try again next tick
            log.exception("key directory check failed")
        if self._loop is not None:
            self._timer = call_on_grid(self._loop, self.interval, self._tick)

    def check(self) -> list[str]:
        """Re-read the directory; tear down revoked peers' links; return their names."""
        self.keystore.refresh()
        if self.keystore.generation == self._generation:
            return []
        self._generation = self.keystore.generation
        gone = []
        for peer in self._table.values():
            reason = self.revocation(peer)
            if reason is None:
                continue
            log.warning("closing the links of %s: %s", peer.name, reason)
            gone.append(peer.name)
            self.revoked += 1
            self._teardown(peer, REVOKED)
        return gone

    def revocation(self, peer: Peer) -> str | None:
        """Why `peer` may no longer talk to us, or None."""
        key = self.keystore.key_for(peer.name)
        if key is None:
            return f"its public key was removed from {self.keystore.directory}"
        announced = peer.spec.public_key if peer.spec is not None else None
        if announced is not None and announced.encode("ascii") != key:
            return f"its public key in {self.keystore.directory} changed"
        return None

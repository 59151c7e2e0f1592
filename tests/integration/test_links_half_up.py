"""A link reported up before our own half is up: a peer that dies then is still reported down.

A peer is reported up as soon as its HELLO is accepted, while our half of the
link — the dial-back, or an earlier dial of ours still re-dialling its address
— may not be up yet. A peer SIGKILLed in that window used to stay "connected"
forever: the monitor ignored DISCONNECTED on a half still handshaking, libzmq
re-dials a dead port without a word, and nothing else watched the link (the
cluster CLI found it: a node killed ~10 ms after a restart never left the
others' views). The observer here is `Links` in the test process, so the peer
— a real node process — is killed at the exact moment. Killed once our
dial-back's CURVE handshake succeeded, or while an earlier dial of ours still
re-dials, it stayed up forever before the fix, every time; killed at PeerUp it
dies during our dial-back's handshake (always reported) or before its connect
(not reported before the fix), by timing. A live peer in the same state must
not be reported down.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.testing import NodeProcess, async_wait_until, detection_deadline
from partisan.transport.lanes import OutLane
from partisan.transport.links import Links
from partisan.transport.peer import Peer

SETTINGS: dict[str, Any] = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5}
#: The observer's own dial re-tries this rarely, so the peer's dial reaches it first.
SLOW_REDIAL: dict[str, Any] = {
    "reconnect_interval": 5.0,
    "reconnect_interval_max": 5.0,
    "handshake_timeout": 10.0,
}


class Recorder:
    """The observer's handler: link events with times; kills `kill_on_up` at the next PeerUp."""

    def __init__(self) -> None:
        self.ups: list[tuple[str, float]] = []
        self.downs: list[tuple[str, str, float]] = []
        self.kill_on_up: NodeProcess | None = None
        self.killed_at = 0.0

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        pass

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        self.ups.append((peer.name, time.monotonic()))
        if self.kill_on_up is not None:
            self.kill(self.kill_on_up)

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        self.downs.append((peer.name, reason, time.monotonic()))

    def kill(self, node: NodeProcess) -> None:
        self.kill_on_up = None
        node.kill()  # SIGKILL and reap: it is dead when this returns
        self.killed_at = time.monotonic()


class Observer(Links):
    """`Links` that can kill a peer where our dial-back's CURVE handshake has just succeeded.

    That is the widest window: the peer's HELLO made the link up, our DEALER
    is connected and about to send its own HELLO, and no WELCOME can come.
    """

    kill_before_dial_back_hello: NodeProcess | None = None

    def __init__(self, config: Config, *, incarnation: int, handler: Recorder) -> None:
        super().__init__(config, incarnation=incarnation, handler=handler)
        send_hello = self._handshake.send_hello

        def hooked(peer: Peer, lane: OutLane) -> None:
            victim = self.kill_before_dial_back_hello
            if victim is not None and peer.reply_to is not None:
                self.kill_before_dial_back_hello = None
                handler.kill(victim)
            send_hello(peer, lane)

        # Detection sends HELLO through this attribute when the lane connects.
        self._handshake.send_hello = hooked  # type: ignore[method-assign]  # a test hook


def _observer(keys: Path, **settings: Any) -> tuple[Observer, Recorder]:
    recorder = Recorder()
    config = Config.load(env={}, name="a", key_dir=str(keys), **{**SETTINGS, **settings})
    return Observer(config, incarnation=time.time_ns(), handler=recorder), recorder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _redialling_a_restarted_peer(
    keys: Path, node_factory: Callable[..., NodeProcess], *, kill_on_up: bool
) -> AsyncIterator[tuple[Observer, Recorder, NodeProcess]]:
    """`a` dials a port with nothing behind it (libzmq re-dials in 5-10 s); then `b`
    starts on that port (a restart, as the cluster CLI does) and dials `a` first."""
    a, recorder = _observer(keys, **SLOW_REDIAL)
    await a.start()
    port = _free_port()
    dial = asyncio.ensure_future(a.connect(f"b@127.0.0.1:{port}", timeout=10))
    try:
        await asyncio.sleep(0)  # ok-sleep: a yield; the dial starts
        b = node_factory("b", "--port", str(port), keys=keys, settings=SETTINGS)
        if kill_on_up:
            recorder.kill_on_up = b
        b.send_command("connect", target=str(a.spec))
        yield a, recorder, b
    finally:
        dial.cancel()
        await asyncio.gather(dial, return_exceptions=True)
        await a.close(flush_timeout=1.0)


async def _down_in_time(a: Observer, recorder: Recorder) -> None:
    deadline = detection_deadline(a.config)
    await async_wait_until(lambda: recorder.downs, deadline, message="a to report b down")
    name, reason, at = recorder.downs[0]
    assert name == "b"
    assert reason in ("connection_closed", "heartbeat_timeout")
    assert at - recorder.killed_at <= deadline
    assert not a.is_connected("b")
    assert a.peers() == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("moment", ["on_peer_up", "dial_back_handshake_succeeded"])
def test_a_peer_killed_before_our_dial_back_is_up_is_reported_down(
    moment: str,
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        a, recorder = _observer(keys)
        await a.start()
        try:
            b = node_factory("b", keys=keys, settings=SETTINGS)
            if moment == "on_peer_up":
                recorder.kill_on_up = b  # our dial-back has just been started
            else:
                a.kill_before_dial_back_hello = b
            b.send_command("connect", target=str(a.spec))
            await async_wait_until(lambda: recorder.killed_at, 10, message="b's link up")
            assert recorder.ups and recorder.ups[0][0] == "b"
            await _down_in_time(a, recorder)
        finally:
            await a.close(flush_timeout=1.0)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_peer_killed_while_our_own_earlier_dial_still_redials_is_reported_down(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        async with _redialling_a_restarted_peer(keys, node_factory, kill_on_up=True) as (
            a,
            recorder,
            _b,
        ):
            await async_wait_until(lambda: recorder.killed_at, 10, message="b's link up")
            await _down_in_time(a, recorder)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_live_peer_is_not_reported_down_while_our_half_is_still_dialling(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("a", "b")

    async def main() -> None:
        async with _redialling_a_restarted_peer(keys, node_factory, kill_on_up=False) as (
            a,
            recorder,
            b,
        ):
            await async_wait_until(lambda: recorder.ups, 10, message="b's link up")
            up_at = recorder.ups[0][1]
            # Queued until our own half is up: a's dial re-tries in 5-10 s, well
            # past the detection deadline, and only then delivers it.
            a.send("b", "default", "sink", "hello")
            await async_wait_until(
                lambda: b.request("received")["counts"].get("a/default") == 1,
                15,
                interval=0.1,
                message="a's message to reach b over a's own half",
            )
            assert time.monotonic() - up_at > detection_deadline(a.config)
            assert recorder.downs == []
            assert a.is_connected("b")
            assert [e for e in b.request("events")["events"] if e["event"] == "down"] == []
            # Our PINGs through the ROUTER reached a live b and were accepted.
            assert b.request("stats")["stats"]["peers"][0]["rejects"] == 0

    asyncio.run(main())

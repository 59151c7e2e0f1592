"""The ZAP handler behind real CURVE sockets on 127.0.0.1, driven by an asyncio loop.

One server (a CURVE ROUTER whose context runs our Authenticator) and clients
in their own context. A refused client must never deliver a frame: after each
refusal is observed (a handshake-failure event on the server), an admitted
client sends a marker, and the marker must be the first thing the server sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from partisan.config import Config
from partisan.transport.auth import Authenticator
from partisan.transport.keys import KeyStore, add_key, create_keys, load_keypair

#: Deadline for one handshake and its verdict, from the config under test.
DEADLINE = Config().handshake_timeout

_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class Server:
    """A CURVE ROUTER on 127.0.0.1 plus a monitor of its handshake events."""

    def __init__(self, ctx: zmq.asyncio.Context, store: KeyStore) -> None:
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.curve_server = True
        self.sock.curve_secretkey = store.secret_key
        self.sock.curve_publickey = store.public_key.encode()
        # Fail closed: without this, a CURVE server with no ZAP handler bound
        # admits any client key (see the last test).
        self.sock.zap_domain = b"partisan"
        self.sock.zap_enforce_domain = 1
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAILED)
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.last_endpoint.decode()
        self.events: list[int] = []

    async def wait_event(self, mask: int) -> int:
        """Wait (within DEADLINE) for the next handshake event matching `mask`."""

        async def next_matching() -> int:
            while True:
                event = parse_monitor_message(await self.monitor.recv_multipart())
                self.events.append(event["event"])
                if event["event"] & mask:
                    return int(event["event"])

        return await asyncio.wait_for(next_matching(), DEADLINE)

    async def receive(self) -> list[zmq.Frame]:
        return await asyncio.wait_for(self.sock.recv_multipart(copy=False), DEADLINE)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


def client(
    ctx: zmq.Context,  # type: ignore[type-arg]
    endpoint: str,
    *,
    server_key: bytes | None,
    keypair: tuple[bytes, bytes] | None,
) -> zmq.Socket:  # type: ignore[type-arg]
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    if server_key is not None and keypair is not None:
        sock.curve_serverkey = server_key
        sock.curve_publickey, sock.curve_secretkey = keypair
    sock.connect(endpoint)
    return sock


def run_scenario(
    tmp_path: Path,
    scenario: Callable[[Server, Authenticator, Callable[..., Any], Path], Awaitable[None]],
) -> None:
    create_keys(tmp_path, ["server", "good", "other"])

    async def main() -> None:
        server_ctx = zmq.asyncio.Context()
        client_ctx = zmq.Context()
        auth = Authenticator(server_ctx, KeyStore(tmp_path, "server"))
        auth.start()
        server = Server(server_ctx, auth.keystore)
        clients: list[zmq.Socket] = []  # type: ignore[type-arg]

        def make_client(**kwargs: Any) -> zmq.Socket:  # type: ignore[type-arg]
            sock = client(client_ctx, server.endpoint, **kwargs)
            clients.append(sock)
            return sock

        try:
            await scenario(server, auth, make_client, tmp_path)
        finally:
            for sock in clients:
                sock.close(linger=0)
            server.close()
            auth.stop()
            client_ctx.term()
            server_ctx.term()

    asyncio.run(main())


def keypair(directory: Path, name: str) -> tuple[bytes, bytes]:
    pair = load_keypair(directory, name)
    return pair.public.encode(), pair.secret.encode()


async def expect_marker_first(server: Server, make_client: Callable[..., Any], keys: Path) -> None:
    """An admitted client's marker is the first frame the server ever receives."""
    good = make_client(
        server_key=load_keypair(keys, "server").public.encode(), keypair=keypair(keys, "good")
    )
    good.send(b"marker")
    frames = await server.receive()
    assert frames[-1].bytes == b"marker"
    assert frames[-1].get("User-Id") == load_keypair(keys, "good").public


@pytest.mark.timeout(30)
def test_listed_key_is_admitted_and_identified(tmp_path: Path) -> None:
    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        await expect_marker_first(server, make_client, keys)
        assert auth.statistics().admitted == 1
        assert auth.keystore.name_for(load_keypair(keys, "good").public) == "good"

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_unlisted_key_never_delivers(tmp_path: Path) -> None:
    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        stranger = zmq.curve_keypair()
        intruder = make_client(server_key=auth.keystore.public_key.encode(), keypair=stranger)
        intruder.send(b"let me in")
        assert await server.wait_event(_FAILED) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert auth.statistics().rejected_unknown_key == 1
        assert auth.statistics().recent_rejections[-1].public_key == stranger[0].decode()
        await expect_marker_first(server, make_client, keys)

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_plaintext_client_never_delivers(tmp_path: Path) -> None:
    evil = tmp_path / "pwned"

    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        plain = make_client(server_key=None, keypair=None)
        # A pickle that would create a file if anyone ever unpickled it.
        plain.send_multipart([b"PZ", f"cos\nsystem\n(S'touch {evil}'\ntR.".encode()])
        # A mechanism mismatch: libzmq reports it as PROTOCOL or NO_DETAIL (timing).
        assert await server.wait_event(_FAILED) != zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert auth.statistics().admitted == 0
        await expect_marker_first(server, make_client, keys)
        assert not evil.exists()

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_client_with_the_wrong_server_key_never_delivers(tmp_path: Path) -> None:
    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        # A listed client key, but it takes "other"'s key for the server's.
        confused = make_client(
            server_key=load_keypair(keys, "other").public.encode(), keypair=keypair(keys, "good")
        )
        confused.send(b"hello?")
        await server.wait_event(_FAILED)
        await expect_marker_first(server, make_client, keys)
        assert auth.statistics().admitted == 1  # the marker client only

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_key_added_after_start_is_admitted_without_restart(tmp_path: Path) -> None:
    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        late = add_key(keys, "late")
        sock = make_client(
            server_key=auth.keystore.public_key.encode(),
            keypair=(late.public.encode(), late.secret.encode()),
        )
        sock.send(b"new here")
        frames = await server.receive()
        assert frames[-1].bytes == b"new here"
        assert auth.keystore.name_for(frames[-1].get("User-Id")) == "late"

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_stop_unbinds_so_a_new_handler_can_start(tmp_path: Path) -> None:
    create_keys(tmp_path, ["server"])

    async def main() -> None:
        ctx = zmq.asyncio.Context()
        store = KeyStore(tmp_path, "server")
        first = Authenticator(ctx, store)
        first.start()
        second = Authenticator(ctx, store)
        with pytest.raises(zmq.ZMQError):
            second.start()  # one ZAP handler per context
        with pytest.raises(RuntimeError):
            first.start()
        first.stop()
        first.stop()  # idempotent
        second.start()
        assert second.started
        second.stop()
        ctx.term()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_concurrent_handshakes_are_all_answered_from_the_loop(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(16)]

    async def scenario(server: Server, auth: Authenticator, make_client: Any, keys: Path) -> None:
        create_keys(keys, names)
        server_key = auth.keystore.public_key.encode()
        stranger = make_client(server_key=server_key, keypair=zmq.curve_keypair())
        stranger.send(b"x")
        for name in names:  # all dial at once; the ZAP requests queue up together
            make_client(server_key=server_key, keypair=keypair(keys, name)).send(name.encode())
        seen = set()
        while len(seen) < len(names):
            frames = await server.receive()
            seen.add(frames[-1].bytes.decode())
            assert auth.keystore.name_for(frames[-1].get("User-Id")) == frames[-1].bytes.decode()
        assert seen == set(names)
        await server.wait_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH)  # the stranger's verdict
        stats = auth.statistics()
        assert stats.admitted == len(names)
        assert stats.rejected_unknown_key == 1

    run_scenario(tmp_path, scenario)


@pytest.mark.timeout(30)
def test_without_a_handler_an_enforcing_server_admits_no_one(tmp_path: Path) -> None:
    """Why the links set ZAP_ENFORCE_DOMAIN: a handler that is not (yet, or any
    more) bound must mean "refuse", not "admit everyone"."""
    create_keys(tmp_path, ["server", "good"])

    async def main() -> None:
        server_ctx = zmq.asyncio.Context()
        client_ctx = zmq.Context()
        store = KeyStore(tmp_path, "server")
        server = Server(server_ctx, store)  # no Authenticator started
        auth = Authenticator(server_ctx, store)
        clients = []
        try:
            for text in (b"too early", b"after start"):
                sock = client(
                    client_ctx,
                    server.endpoint,
                    server_key=store.public_key.encode(),
                    keypair=keypair(tmp_path, "good"),
                )
                clients.append(sock)
                sock.send(text)
                if not auth.started:
                    assert await server.wait_event(_FAILED) == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    auth.start()
            frames = await server.receive()
            assert frames[-1].bytes == b"after start"  # the early one never arrives
        finally:
            for sock in clients:
                sock.close(linger=0)
            server.close()
            auth.stop()
            client_ctx.term()
            server_ctx.term()

    asyncio.run(main())

"""ZAP policy without sockets: requests in, replies out (tests/integration/test_auth.py
runs the same handler behind real CURVE sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from partisan.transport.auth import Authenticator
from partisan.transport.keys import KeyStore, add_key, create_keys

ENVELOPE = [b"\x00\x01\x02\x03\x04", b""]


def request(mechanism: bytes, *credentials: bytes, version: bytes = b"1.0") -> list[bytes]:
    return [*ENVELOPE, version, b"req-7", b"", b"127.0.0.1", b"", mechanism, *credentials]


def raw(key_z85: str) -> bytes:
    return z85.decode(key_z85.encode())


@pytest.fixture
def context() -> Iterator[zmq.Context]:  # type: ignore[type-arg]
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    create_keys(tmp_path, ["a", "b"])
    return KeyStore(tmp_path, "a")


def test_listed_curve_key_is_admitted_with_its_key_as_user_id(
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
) -> None:
    auth = Authenticator(context, store)
    b_key = store.key_for("b")
    assert b_key is not None
    reply = auth.handle_request(request(b"CURVE", raw(b_key.decode())))
    assert reply == [*ENVELOPE, b"1.0", b"req-7", b"200", b"OK", b_key, b""]
    assert auth.statistics().admitted == 1
    assert auth.statistics().rejected == 0


@pytest.mark.parametrize(
    ("frames", "status_text", "counter"),
    [
        (request(b"CURVE", bytes(32)), b"unknown key", "rejected_unknown_key"),
        (request(b"NULL"), b"mechanism not allowed", "rejected_mechanism"),
        (request(b"PLAIN", b"user", b"password"), b"mechanism not allowed", "rejected_mechanism"),
        (request(b"CURVE", b"short"), b"bad credentials", "malformed"),
        (request(b"CURVE"), b"bad credentials", "malformed"),
        (request(b"CURVE", bytes(32), version=b"2.0"), b"bad ZAP version", "malformed"),
    ],
)
def test_everything_else_is_refused(
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
    frames: list[bytes],
    status_text: bytes,
    counter: str,
) -> None:
    auth = Authenticator(context, store)
    reply = auth.handle_request(frames)
    assert reply == [*ENVELOPE, b"1.0", frames[3], b"400", status_text, b"", b""]
    stats = auth.statistics()
    assert getattr(stats, counter) == 1
    assert stats.rejected == 1 and stats.admitted == 0
    assert stats.recent_rejections[-1].reason == status_text.decode()
    assert stats.recent_rejections[-1].address == "127.0.0.1"


def test_request_without_envelope_gets_no_reply(
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
) -> None:
    auth = Authenticator(context, store)
    assert auth.handle_request([b"id", b"not empty", b"1.0"]) is None
    assert auth.handle_request([b"id"]) is None
    assert auth.statistics().malformed == 2


def test_key_added_later_is_admitted_without_restart(
    tmp_path: Path,
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
) -> None:
    auth = Authenticator(context, store)
    late = add_key(tmp_path, "late")
    reply = auth.handle_request(request(b"CURVE", raw(late.public)))
    assert reply is not None and reply[4] == b"200"


def test_removed_key_is_refused_after_the_refresh_interval(
    tmp_path: Path,
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
) -> None:
    auth = Authenticator(context, store, refresh_interval=0.0)  # refresh on every request
    b_key = store.key_for("b")
    assert b_key is not None
    assert auth.handle_request(request(b"CURVE", raw(b_key.decode())))[4] == b"200"  # type: ignore[index]
    (tmp_path / "public_keys" / "b.key").unlink()
    assert auth.handle_request(request(b"CURVE", raw(b_key.decode())))[4] == b"400"  # type: ignore[index]


def test_recent_rejections_are_bounded(
    context: zmq.Context,  # type: ignore[type-arg]
    store: KeyStore,
) -> None:
    auth = Authenticator(context, store)
    for i in range(100):
        auth.handle_request(request(b"CURVE", bytes([i]) * 32))
    stats = auth.statistics()
    assert stats.rejected_unknown_key == 100
    assert len(stats.recent_rejections) == 32
    assert stats.recent_rejections[-1].public_key == z85.encode(bytes([99]) * 32).decode()

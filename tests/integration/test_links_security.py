"""Who gets in: unlisted keys, a borrowed name, a plaintext client with a hostile pickle.

None of them may get a frame to the payload decoder (the node's ``decoded``
counter covers exactly the legitimate peer's messages), the file the hostile
pickle would create never appears, and the node keeps serving its real peer.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from partisan.testing import NodeProcess, NodeProcessError, wait_until
from partisan.transport.keys import create_keys, load_keypair, public_key_path
from partisan.transport.session import Greeting, decode_refusal, new_session_id, routing_id
from partisan.transport.wire import WIRE_VERSION, Header, Kind, decode_header, encode_header


class FileCreator:
    """Unpickling this creates a file: proof that a payload was decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


def _data(sender: str, evil: bytes) -> list[bytes]:
    header = encode_header(Header(Kind.DATA, sender, time.time_ns(), "default", "sink", 1, 0))
    return [header, evil]


@pytest.mark.timeout(60)
def test_unlisted_key_borrowed_name_and_plaintext_pickle_are_all_rejected(
    node_factory: Callable[..., NodeProcess],
    key_dir: Callable[..., Path],
    tmp_path: Path,
    zmq_context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    keys = key_dir("v", "a", "m")  # m is listed: a member with its own key
    v = node_factory("v", keys=keys)
    a = node_factory("a", keys=keys)
    a.request("connect", target=str(v.spec))
    a.request("send", peer="v", count=100)
    wait_until(lambda: v.request("received")["counts"].get("a/default") == 100, 10)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(FileCreator(str(marker)))
    endpoint = f"tcp://{v.address}"

    # 1. A node process whose key is not listed: the ZAP handler refuses it.
    outsider_keys = tmp_path / "outsider"
    create_keys(outsider_keys, ["x"])
    shutil.copy(public_key_path(keys, "v"), public_key_path(outsider_keys, "v"))
    x = node_factory("x", keys=outsider_keys)
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*rejected our key"):
        x.request("connect", target=str(v.spec))

    # 2. A listed member (m, with its own key) claiming to be a: HELLO refused,
    #    and the data it sends anyway belongs to no session.
    m_pair = load_keypair(keys, "m")
    impostor = zmq_context.socket(zmq.DEALER)
    session = new_session_id()
    impostor.setsockopt(zmq.ROUTING_ID, routing_id(session, 0))
    impostor.setsockopt(zmq.CURVE_SERVERKEY, v.public_key.encode())  # type: ignore[union-attr]
    impostor.setsockopt(zmq.CURVE_PUBLICKEY, m_pair.public.encode())
    impostor.setsockopt(zmq.CURVE_SECRETKEY, m_pair.secret.encode())
    impostor.setsockopt(zmq.LINGER, 0)
    impostor.connect(endpoint)
    incarnation = time.time_ns()
    hello = Greeting(
        name="a",
        incarnation=incarnation,
        manager="full-mesh",
        wire_version=WIRE_VERSION,
        hidden=False,
        host="127.0.0.1",
        port=1,
        role=None,
        public_key=m_pair.public,
        session=session,
        target="v",
    )
    header = encode_header(Header(Kind.HELLO, "a", incarnation, "membership", "", 0, 0))
    impostor.send_multipart([header, hello.to_bytes()])
    assert impostor.poll(10_000), "no answer to the impostor's HELLO"
    answer = impostor.recv_multipart()
    assert decode_header(answer[0]).kind is Kind.REFUSE
    reason, _ = decode_refusal(answer[1])
    assert "belongs to 'm', not to 'a'" in reason
    impostor.send_multipart(_data("a", evil))

    # 3. A plaintext ZeroMQ client: the CURVE server never completes its handshake.
    plain = zmq_context.socket(zmq.DEALER)
    plain.setsockopt(zmq.LINGER, 0)
    plain.connect(endpoint)
    plain.send_multipart(_data("a", evil))

    # The node keeps serving its real peer, and nothing else was decoded.
    a.request("send", peer="v", count=100)
    wait_until(lambda: v.request("received")["counts"].get("a/default") == 200, 10)
    wait_until(
        lambda: v.request("stats")["stats"]["rejected"].get("unknown_session", 0) >= 1,
        5,
        message="the impostor's data frame to be dropped",
    )
    impostor.close()
    plain.close()
    stats = v.request("stats")["stats"]
    assert stats["decoded"] == 200, "a frame other than a's reached the decoder"
    assert stats["refused"] == 1
    assert v.request("received")["counts"] == {"a/default": 200}
    assert not marker.exists() and not os.path.exists(marker)

"""Hostile clients for the security scenarios, run inside a simulated host.

``python tests/chaos/attacks.py ATTACK 'JSON-ARGS'`` runs one attack and
prints one JSON line with what it observed. Each attack bounds its own time;
nothing here waits forever.

- ``plaintext`` (endpoint, marker): a plain (NULL mechanism) ZeroMQ DEALER
  and a raw TCP client send a pickle whose unpickling would create `marker`;
  reports how the server ended each connection.
- ``insider`` (endpoint, key_dir, name, server, server_name, steps): a raw
  CURVE DEALER with a *listed* key that speaks the wire protocol by hand, as
  a buggy or malicious cluster member would: ``hello`` as itself or under a
  borrowed name, ``data`` frames with a forged sender, duplicated sequence
  numbers, oversize frames, many parts, an oversize header.
- ``flood`` (host, port, count, slow, seconds): `count` TCP connections that
  never complete a handshake plus `slow` slowloris senders (one greeting byte
  per second); reports when the server closed each.
- ``proxy`` / ``replay``: record a client's byte stream through a TCP relay,
  then replay it verbatim on a new connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import selectors
import socket
import sys
import threading
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from partisan.transport.codec import encode_payload
from partisan.transport.keys import load_keypair
from partisan.transport.session import Greeting, new_session_id, routing_id
from partisan.transport.wire import WIRE_VERSION, Header, Kind, decode_header, encode_header

# A ZMTP 3.0 greeting offering the NULL mechanism (64 bytes).
_NULL_GREETING = (
    b"\xff"
    + b"\x00" * 8
    + b"\x7f"
    + b"\x03\x00"
    + b"NULL".ljust(20, b"\x00")
    + b"\x00"
    + b"\x00" * 31
)


class _Touch:
    """Unpickling this runs ``touch marker``: what must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def plaintext(endpoint: str, marker: str) -> dict[str, Any]:
    payload = pickle.dumps(_Touch(marker))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    for _ in range(3):
        with contextlib.suppress(zmq.Again):
            sock.send_multipart([payload, payload], zmq.NOBLOCK)
    events = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "HANDSHAKE_FAILED_PROTOCOL" not in events:
        if monitor.poll(100):
            events.append(zmq.Event(recv_monitor_message(monitor)["event"]).name)
    sock.close()
    monitor.close()
    ctx.term()
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5)
    closed = None
    try:
        raw.sendall(_NULL_GREETING)
        raw.sendall(payload)  # where the server expects a READY command
        start = time.monotonic()
        while time.monotonic() - start < 5:
            try:
                if not raw.recv(65536):
                    closed = time.monotonic() - start
                    break
            except (ConnectionResetError, BrokenPipeError):
                closed = time.monotonic() - start
                break
            except TimeoutError:
                break
    finally:
        raw.close()
    return {"zmq_events": events, "raw_closed_after": closed}


def _hello(name: str, incarnation: int, session: int, target: str, key: str) -> list[bytes]:
    header = encode_header(Header(Kind.HELLO, name, incarnation, "membership", "", 0, 0))
    greeting = Greeting(
        name=name,
        incarnation=incarnation,
        manager=os.environ.get("ATTACK_MANAGER", "hyparview"),
        wire_version=WIRE_VERSION,
        hidden=True,  # no dial-back: answers come back over our own connection
        host="127.0.0.1",
        port=1,
        role=None,
        public_key=key,
        session=session,
        target=target,
    )
    return [header, greeting.to_bytes()]


def _data(sender: str, incarnation: int, seq: int, obj: object, dest: str = "nobody") -> list[Any]:
    flags, frames = encode_payload(obj)
    header = encode_header(Header(Kind.DATA, sender, incarnation, "membership", dest, seq, flags))
    return [header, *frames]


def insider(
    endpoint: str, key_dir: str, name: str, server: str, server_name: str, steps: list[list[Any]]
) -> dict[str, Any]:
    pair = load_keypair(key_dir, name)
    ctx = zmq.Context()
    session = new_session_id()
    incarnation = time.time_ns()

    def connect() -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_publickey = pair.public.encode()
        sock.curve_secretkey = pair.secret.encode()
        sock.curve_serverkey = server.encode()
        sock.routing_id = routing_id(session, 0)
        monitor = sock.get_monitor_socket()
        sock.connect(endpoint)
        return sock, monitor

    sock, monitor = connect()
    seen: list[str] = []
    answers: list[str] = []

    def pump(until: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while monitor.poll(0):
                seen.append(zmq.Event(recv_monitor_message(monitor)["event"]).name)
                if until is not None and seen[-1] == until:
                    return True
            if sock.poll(20):
                frames = sock.recv_multipart()
                try:
                    answers.append(decode_header(frames[0]).kind.name)
                except Exception as exc:  # reported, not raised
                    answers.append(f"undecodable: {exc}")
                if until is not None and answers[-1] == until:
                    return True
        return False

    results: dict[str, Any] = {}
    for step in steps:
        op, args = step[0], step[1:]
        if op == "hello":  # hello CLAIMED_NAME
            sock.send_multipart(_hello(args[0], incarnation, session, server_name, pair.public))
            ok = pump("WELCOME", 3.0) or "REFUSE" in answers
            results.setdefault("hello", []).append(
                answers[-1] if answers else ("none" if ok else "timeout")
            )
        elif op == "data":  # data SENDER SEQ [COUNT]
            for i in range(args[2] if len(args) > 2 else 1):
                sock.send_multipart(_data(args[0], incarnation, args[1] + i, ("x", i)))
        elif op == "oversize":  # oversize BYTES
            start = time.monotonic()
            sock.send(b"\0" * args[0])
            dropped = pump("DISCONNECTED", 5.0)
            back = pump("HANDSHAKE_SUCCEEDED", 10.0)
            results["oversize"] = {
                "disconnected": dropped,
                "reconnected": back,
                "after": time.monotonic() - start,
            }
        elif op == "parts":  # parts COUNT
            frames = _data(name, incarnation, 0, "p")
            sock.send_multipart(frames + [b"x"] * (args[0] - len(frames)))
        elif op == "header":  # header BYTES: a DATA header whose dest is BYTES long
            flags, frames = encode_payload("h")
            big = Header(Kind.DATA, name, incarnation, "membership", "d", 0, flags)
            raw = encode_header(big)
            sock.send_multipart([raw + b"d" * args[0], *frames])
        elif op == "wait":
            pump(None, args[0])
    pump(None, 0.2)
    sock.close()
    monitor.close()
    ctx.term()
    results["events"] = seen
    results["answers"] = answers
    return results


def flood(host: str, port: int, count: int, slow: int, seconds: float) -> dict[str, Any]:
    """Open `count` silent and `slow` slowloris connections; time how long each stays open.

    A connection's clock starts when the TCP connect completes (the server
    accepted it into its backlog); one still in SYN_SENT holds nothing of the
    server's but a backlog slot, and is counted separately.
    """
    selector = selectors.DefaultSelector()
    established: dict[socket.socket, float] = {}
    start = time.monotonic()
    for i in range(count + slow):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        selector.register(s, selectors.EVENT_WRITE, "slow" if i >= count else "junk")
    lifetimes: dict[str, list[float]] = {"junk": [], "slow": []}
    slow_socks = {k.fileobj: k.data == "slow" for k in selector.get_map().values()}
    sent = connected = 0
    next_byte = start
    while time.monotonic() - start < seconds and selector.get_map():
        now = time.monotonic()
        if now >= next_byte and sent < len(_NULL_GREETING):
            for s in list(established):
                if slow_socks.get(s):
                    with contextlib.suppress(OSError):
                        s.send(_NULL_GREETING[sent : sent + 1])
            sent += 1
            next_byte = now + 1.0
        for key, events in selector.select(0.05):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if events & selectors.EVENT_WRITE:  # the connect finished
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    selector.unregister(s)
                    s.close()
                    continue
                established[s] = time.monotonic()
                connected += 1
                selector.modify(s, selectors.EVENT_READ, key.data)
                continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the server closed it
                lifetimes[key.data].append(time.monotonic() - established.pop(s))
                selector.unregister(s)
                s.close()
    end = time.monotonic()
    still_open = [end - established[k.fileobj] for k in selector.get_map().values()
                  if k.fileobj in established]  # type: ignore[comparison-overlap]  # fmt: skip
    pending = len(selector.get_map()) - len(still_open)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return {
        "established": connected,
        "junk_closed": len(lifetimes["junk"]),
        "slow_closed": len(lifetimes["slow"]),
        "longest_open": max(lifetimes["junk"] + lifetimes["slow"] + still_open, default=0.0),
        "still_open": len(still_open),
        "never_connected": pending,
    }


def proxy(listen_host: str, listen_port: int, target: str, record: str, seconds: float) -> None:
    """Relay one TCP connection to `target`, appending client->server bytes to `record`."""
    server = socket.create_server((listen_host, listen_port))
    print(json.dumps({"listening": True}), flush=True)
    server.settimeout(seconds)
    host, port = target.rsplit(":", 1)
    deadline = time.monotonic() + seconds
    threads = []
    try:
        while time.monotonic() < deadline:
            try:
                client, _ = server.accept()
            except TimeoutError:
                break
            upstream = socket.create_connection((host, int(port)))
            first = not threads
            for src, dst, rec in ((client, upstream, first), (upstream, client, False)):
                t = threading.Thread(
                    target=_pipe, args=(src, dst, record if rec else None), daemon=True
                )
                t.start()
                threads.append(t)
    finally:
        server.close()


def _pipe(src: socket.socket, dst: socket.socket, record: str | None) -> None:
    out = open(record, "ab") if record else None  # noqa: SIM115  # closed below
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if out is not None:
                out.write(data)
                out.flush()
            dst.sendall(data)
    except OSError:
        pass
    finally:
        if out is not None:
            out.close()
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def replay(host: str, port: int, record: str) -> dict[str, Any]:
    data = open(record, "rb").read()  # noqa: SIM115  # tiny, read once
    s = socket.create_connection((host, port), timeout=5)
    start = time.monotonic()
    closed = None
    got = 0
    try:
        s.sendall(data)
        while time.monotonic() - start < 5:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except TimeoutError:
                break
            if not chunk:
                closed = time.monotonic() - start
                break
            got += len(chunk)
    except OSError:
        closed = time.monotonic() - start
    finally:
        s.close()
    return {"replayed_bytes": len(data), "received_bytes": got, "closed_after": closed}


if __name__ == "__main__":
    result = globals()[sys.argv[1]](**json.loads(sys.argv[2]))
    if result is not None:
        print(json.dumps(result), flush=True)

"""Tiny network probes for the nemesis tests, run inside a simulated host.

``python tests/chaos/netprobe.py serve PORT`` listens on PORT for TCP and UDP
and prints ``ready``: a TCP client that sends ``?`` gets the number of UDP
datagrams received so far (the socket is drained first, so every datagram
already delivered is counted); any other TCP client's bytes are read to EOF
and answered ``ok``.

``python tests/chaos/netprobe.py OP 'JSON-ARGS'`` runs one probe and prints
one JSON line: ``connect`` (host, port, timeout) -> result ``ok`` /
``timeout`` / ``refused`` and the seconds it took · ``udp`` (host, port,
count) sends `count` datagrams · ``count`` (host, port) -> the server's UDP
count · ``send`` (host, port, size) -> seconds to send `size` bytes and get
the answer. Every probe bounds its own time.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any


def serve(port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    udp.bind(("0.0.0.0", port))
    udp.setblocking(False)
    lock = threading.Lock()
    received = [0]

    def drain() -> int:
        with lock:
            while True:
                try:
                    udp.recv(2048)
                except BlockingIOError:
                    return received[0]
                received[0] += 1

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            first = conn.recv(1)
            if first == b"?":
                conn.sendall(str(drain()).encode())
                return
            while conn.recv(65536):
                pass
            conn.sendall(b"ok")

    server = socket.create_server(("0.0.0.0", port), reuse_port=True)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def connect(host: str, port: int, timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"x")
            conn.shutdown(socket.SHUT_WR)
            result = "ok" if conn.recv(16) == b"ok" else "closed"
    except TimeoutError:
        result = "timeout"
    except ConnectionRefusedError:
        result = "refused"
    except ConnectionResetError:
        result = "reset"
    return {"result": result, "seconds": time.monotonic() - start}


def udp(host: str, port: int, count: int) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(i.to_bytes(4, "big"), (host, port))
            if i % 50 == 49:
                time.sleep(0.001)  # ok-sleep: pace the burst so no socket buffer overflows
    return {"sent": count}


def count(host: str, port: int) -> dict[str, Any]:
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(b"?")
        return {"count": int(conn.recv(64))}


def send(host: str, port: int, size: int) -> dict[str, Any]:
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(b"y" * size)
        conn.shutdown(socket.SHUT_WR)
        answer = conn.recv(16)
    return {"answer": answer.decode(), "seconds": time.monotonic() - start}


if __name__ == "__main__":
    op = sys.argv[1]
    if op == "serve":
        serve(int(sys.argv[2]))
    else:
        probes = {"connect": connect, "udp": udp, "count": count, "send": send}
        print(json.dumps(probes[op](**json.loads(sys.argv[2]))), flush=True)

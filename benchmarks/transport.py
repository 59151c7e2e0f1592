"""Transport throughput: our links vs raw synchronous pyzmq, both with CURVE on.

Baseline (DESIGN.md, Benchmarks): a DEALER->ROUTER pair between two processes,
the sender in a tight synchronous loop pickling each message, the receiver
unpickling each one, CURVE on as ours. Ours: two processes running `Links`
(CURVE + ZAP), the sender calling `send` in a loop (awaiting room only when
`Overloaded`), the receiver's handler counting deliveries. Both measure
one-way throughput at the receiver, from the first message to the last.

Also: the cost of one lane's CURVE handshake (connect to HANDSHAKE_SUCCEEDED),
ours (`open_all_lanes` over 16 lanes) vs a raw CURVE DEALER.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pickle
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

SIZES = ((100, 200_000, 20_000), (10_000, 40_000, 4_000), (1_000_000, 600, 100))
GOALS = {100: 0.5, 1_000_000: 0.8}
LANES = 16


# ---------------------------------------------------------------- raw pyzmq


def _raw_receiver(conn: Connection, keys: str, count: int) -> None:
    import zmq
    import zmq.auth

    public, secret = zmq.auth.load_certificate(f"{keys}/private_keys/r.key_secret")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.rcvhwm = 1_000_000
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    conn.send(port)
    loads = pickle.loads
    _, first = sock.recv_multipart()
    loads(first)
    started = time.perf_counter()
    for _ in range(count - 1):
        _, frame = sock.recv_multipart()
        loads(frame)
    conn.send(time.perf_counter() - started)
    sock.close(linger=0)
    ctx.term()


def _raw_sender(conn: Connection, keys: str, port: int, count: int, size: int) -> None:
    import zmq
    import zmq.auth

    public, secret = zmq.auth.load_certificate(f"{keys}/private_keys/s.key_secret")
    server, _ = zmq.auth.load_certificate(f"{keys}/public_keys/r.key")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey = server
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.sndhwm = 1_000_000
    sock.connect(f"tcp://127.0.0.1:{port}")
    payload = ("msg", 0, b"x" * size)
    dumps = pickle.dumps
    for i in range(count):
        sock.send(dumps((payload[0], i, payload[2]), 5))
    conn.recv()  # the receiver is done
    sock.close(linger=0)
    ctx.term()


# ---------------------------------------------------------------- our links


class _Counter:
    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.started = 0.0
        self.done = asyncio.Event()

    def on_message(self, sender: Any, channel: str, dest: str, payload: object) -> None:
        self.seen += 1
        if self.seen == 1:
            self.started = time.perf_counter()
        elif self.seen == self.count:
            self.done.set()

    def on_peer_up(self, peer: Any, hidden: bool) -> None:
        pass

    def on_peer_down(self, peer: Any, reason: str) -> None:
        pass


def _config(name: str, keys: str) -> Any:
    from partisan.config import Config

    return Config.load(env={}, name=name, key_dir=keys, channels=f"bench:{LANES}")


def _links_receiver(conn: Connection, keys: str, count: int) -> None:
    from partisan.transport.links import Links

    async def main() -> None:
        counter = _Counter(count)
        links = Links(_config("r", keys), incarnation=time.time_ns(), handler=counter)
        spec = await links.start()
        conn.send(str(spec))
        await counter.done.wait()
        conn.send(time.perf_counter() - counter.started)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await links.close(flush_timeout=1.0)

    asyncio.run(main())


def _links_sender(conn: Connection, keys: str, target: str, count: int, size: int) -> None:
    from partisan.errors import Overloaded
    from partisan.transport.links import Links

    async def main() -> None:
        links = Links(_config("s", keys), incarnation=time.time_ns(), handler=_Counter(0))
        await links.start()
        await links.connect(target)
        started = time.perf_counter()
        await links.open_all_lanes("r")
        conn.send((time.perf_counter() - started) / LANES)  # default and membership are open
        pad = b"x" * size
        send = links.send
        for i in range(count):
            try:
                send("r", "default", "sink", ("msg", i, pad))
            except Overloaded:
                await links.send_wait("r", "default", "sink", ("msg", i, pad))
            if i & 255 == 255:
                await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await links.close(flush_timeout=1.0)

    asyncio.run(main())


def _raw_handshake(keys: str) -> float:
    """Seconds from connect to HANDSHAKE_SUCCEEDED for one raw CURVE DEALER."""
    import zmq
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message

    ctx = zmq.Context()
    public, secret = zmq.auth.load_certificate(f"{keys}/private_keys/r.key_secret")
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey, router.curve_secretkey = public, secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    spub, ssec = zmq.auth.load_certificate(f"{keys}/private_keys/s.key_secret")
    total = 0.0
    for _ in range(LANES):
        dealer = ctx.socket(zmq.DEALER)
        dealer.curve_serverkey, dealer.curve_publickey, dealer.curve_secretkey = public, spub, ssec
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        started = time.perf_counter()
        dealer.connect(f"tcp://127.0.0.1:{port}")
        recv_monitor_message(monitor)
        total += time.perf_counter() - started
        dealer.disable_monitor()
        monitor.close(linger=0)
        dealer.close(linger=0)
    router.close(linger=0)
    ctx.term()
    return total / LANES


# ---------------------------------------------------------------- driver


def _pair(
    receiver: Any, sender: Any, keys: str, count: int, size: int
) -> tuple[float, float | None]:
    """Run receiver and sender processes; return (messages per second, handshake s/lane)."""
    mp = multiprocessing.get_context("spawn")
    r_parent, r_child = mp.Pipe()
    s_parent, s_child = mp.Pipe()
    rp = mp.Process(target=receiver, args=(r_child, keys, count))
    rp.start()
    address = r_parent.recv()
    sp = mp.Process(target=sender, args=(s_child, keys, address, count, size))
    sp.start()
    handshake = s_parent.recv() if receiver is _links_receiver else None
    if not r_parent.poll(300):
        rp.kill()
        sp.kill()
        raise RuntimeError("benchmark receiver did not finish")
    elapsed = r_parent.recv()
    s_parent.send("done")
    r_parent.send("done")
    for proc in (sp, rp):
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return (count - 1) / elapsed, handshake


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from partisan.transport.keys import create_keys

    quick = getattr(args, "quick", False)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as keys:
        create_keys(keys, ["r", "s"])
        handshake = None
        for size, count, quick_count in SIZES:
            n = quick_count if quick else count
            raw, _ = _pair(_raw_receiver, _raw_sender, keys, n, size)
            ours, lane_cost = _pair(_links_receiver, _links_sender, keys, n, size)
            handshake = handshake or lane_cost
            label = f"{size:,} B" if size < 1_000_000 else f"{size // 1_000_000} MB"
            rows.append(
                {
                    "name": f"one-way throughput, {label} messages",
                    "value": ours,
                    "unit": "msg/s",
                    "baseline": raw,
                    "ratio": ours / raw,
                    "goal": GOALS.get(size),
                    "note": f"{ours * size / 1e6:,.0f} MB/s ours vs {raw * size / 1e6:,.0f} MB/s raw; {n:,} messages",
                }
            )
        raw_handshake = _raw_handshake(keys)
        if handshake is not None:
            rows.append(
                {
                    "name": "CURVE handshake per lane",
                    "value": handshake * 1e3,
                    "unit": "ms",
                    "baseline": raw_handshake * 1e3,
                    "ratio": raw_handshake / handshake,
                    "goal": None,
                    "note": f"open_all_lanes over {LANES} lanes vs one raw CURVE DEALER; ratio > 1 is better",
                }
            )
    return rows

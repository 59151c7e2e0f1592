"""ZeroMQ socket construction: the options every link socket needs, in one place.

Why each option (reliability.md §1, §4):

* ``ROUTER_MANDATORY`` — a default ROUTER silently drops messages to a full or
  unknown pipe; mandatory turns that into EAGAIN / EHOSTUNREACH we can see.
* ``HEARTBEAT_IVL/TIMEOUT/TTL`` — a SIGSTOPped peer is never noticed without
  ZMTP heartbeats; libzmq's I/O thread answers them, so a busy Python loop
  causes no false timeout.
* ``MAXMSGSIZE`` — a frame over the cap drops that connection before any
  allocation; the node survives.
* ``HANDSHAKE_IVL`` — a half-open handshake must not hold resources for
  libzmq's default 30 s (ours: a little over ``handshake_timeout``).
* ``BACKLOG`` (ROUTER) — libzmq's default listen backlog of 100 lets a flood of
  half-open connections fill the kernel's accept queue: connections queued
  there are neither handshaken nor timed out by ``HANDSHAKE_IVL`` until
  libzmq accepts them (a chaos scenario saw junk clients held 14 s).
* ``RECONNECT_IVL(_MAX)`` — how fast a DEALER re-dials; sessions above decide
  what a reconnect means.
* High-water marks are message counts; our byte budget bounds memory, so they
  are set high enough never to be the first limit.
* CURVE: the ROUTER is a CURVE server checked by the ZAP handler; each DEALER
  is a CURVE client that must know the peer's server key, so both ends are
  authenticated.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
from typing import Any

import zmq

from partisan.config import Config
from partisan.errors import BindError
from partisan.transport.keys import KeyStore

__all__ = [
    "MONITOR_EVENTS",
    "ZAP_DOMAIN",
    "make_dealer",
    "make_router",
    "raise_nofile_limit",
]

log = logging.getLogger(__name__)

ZAP_DOMAIN = b"partisan"
_HWM = 1_000_000  # messages; the byte budget is the real bound
_BACKLOG = 1024  # pending connections the ROUTER's listen socket queues (libzmq: 100)
MONITOR_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `wanted` (capped by the hard limit).

    Every lane costs a TCP connection plus ZeroMQ's internal descriptors, so a
    node with many peers runs out of the common 1024 default long before it
    runs out of anything else. Returns the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, target, exc)
    return soft


def heartbeat_ttl(config: Config) -> float:
    """Seconds the peer's ROUTER keeps our silent control connection: timeout + 4 intervals.

    Longer than our own DEALER's detection (up to timeout + one interval)
    plus the grace interval before a loss is confirmed, with an interval to
    spare: when we confirm a silent peer lost, its connection to our ROUTER
    still exists if it is frozen and is gone if it closed, which is how we
    tell ``heartbeat_timeout`` from ``connection_closed`` without PINGing
    idle links (`Detection._inbound_gone`). The cost: a hidden peer, or a
    half-up link watched only through our ROUTER, is found frozen this long
    after it fell silent rather than after ``heartbeat_timeout``.
    """
    return config.heartbeat_timeout + 4 * config.heartbeat_interval


def _common(sock: zmq.Socket[Any], config: Config, *, heartbeat: bool) -> None:
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_frame_bytes)
    if heartbeat:
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(config.heartbeat_interval * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(config.heartbeat_timeout * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(heartbeat_ttl(config) * 1000))
    # Longer than our own handshake deadline, so a silent peer ends as our
    # CallTimeout, not as libzmq's HANDSHAKE_FAILED_NO_DETAIL (which would
    # read as a key problem).
    slack = max(1.0, config.handshake_timeout / 2)
    sock.setsockopt(zmq.HANDSHAKE_IVL, int((config.handshake_timeout + slack) * 1000))
    sock.setsockopt(zmq.SNDHWM, _HWM)
    sock.setsockopt(zmq.RCVHWM, _HWM)
    sock.setsockopt(zmq.LINGER, 0)


def make_router(
    context: zmq.Context[Any], config: Config, keystore: KeyStore | None
) -> tuple[zmq.Socket[bytes], int]:
    """Bind this node's one ROUTER on ``config.host:config.port``; return (socket, port)."""
    sock: zmq.Socket[bytes] = zmq.Socket(context, zmq.ROUTER)
    try:
        # No heartbeats of its own: each peer's control lane PINGs this
        # ROUTER with a TTL, which drops that connection when the peer falls
        # silent (EHOSTUNREACH for our sends to it). Pinging every inbound
        # connection from here too doubled the heartbeat traffic of every link.
        _common(sock, config, heartbeat=False)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.BACKLOG, _BACKLOG)
        if keystore is not None:
            sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
            # Fail closed: with no ZAP handler bound, libzmq would otherwise admit any key.
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keystore.secret_key)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keystore.public_key.encode("ascii"))
        host = f"[{config.host}]" if ":" in config.host else config.host
        if ":" in config.host:
            sock.setsockopt(zmq.IPV6, 1)
        try:
            if config.port:
                sock.bind(f"tcp://{host}:{config.port}")
                port = config.port
            else:
                port = sock.bind_to_random_port(f"tcp://{host}")
        except zmq.ZMQError as exc:
            # One readable line for the CLI, not a ZeroMQ traceback.
            where = f"{host}:{config.port}" if config.port else f"any port of {host}"
            detail = zmq.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                detail += " (is another node running there? --port 0 picks a free port)"
            raise BindError(f"cannot listen on {where}: {detail}", exc.errno) from None
    except BaseException:
        sock.close(linger=0)
        raise
    return sock, port


def make_dealer(
    context: zmq.Context[Any],
    config: Config,
    keystore: KeyStore | None,
    *,
    routing_id: bytes,
    server_key: bytes | None,
    endpoint: str,
    heartbeat: bool = True,
    bulk: bool = False,
) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    """Create a DEALER lane towards `endpoint` and its monitor; return (dealer, monitor).

    The DEALER connects at once; ZeroMQ queues what we send until the
    handshake completes (the monitor reports HANDSHAKE_SUCCEEDED). Only a
    link's control lane needs `heartbeat`: a DISCONNECTED on any lane ends
    the whole link, so one heartbeating connection per direction detects a
    silent peer, and the other lanes still see a closed TCP connection at once.
    """
    sock: zmq.Socket[bytes] = zmq.Socket(context, zmq.DEALER)
    monitor: zmq.Socket[bytes] | None = None
    try:
        _common(sock, config, heartbeat=heartbeat)
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
        # I/O thread 1 for `default` and `membership`, thread 2 for the rest:
        # libzmq encrypts a message whole, so an 8 MB frame on a bulk channel
        # would otherwise hold the control and call traffic behind it.
        if context.get(zmq.IO_THREADS) > 1:
            sock.setsockopt(zmq.AFFINITY, 2 if bulk else 1)
        sock.setsockopt(zmq.RECONNECT_IVL, max(1, int(config.reconnect_interval * 1000)))
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, int(config.reconnect_interval_max * 1000)))
        sock.setsockopt(zmq.CONNECT_TIMEOUT, max(1, int(config.handshake_timeout * 1000)))
        if keystore is not None:
            if server_key is None:
                raise ValueError("a CURVE client needs the server's public key")
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keystore.public_key.encode("ascii"))
            sock.setsockopt(zmq.CURVE_SECRETKEY, keystore.secret_key)
        if "[" in endpoint:
            sock.setsockopt(zmq.IPV6, 1)
        monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        sock.connect(endpoint)
    except BaseException:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(linger=0)
        sock.close(linger=0)
        raise
    return sock, monitor


def close_dealer(sock: zmq.Socket[Any], monitor: zmq.Socket[Any] | None) -> None:
    """Close a DEALER lane now: linger 0 discards what it still holds."""
    if monitor is not None:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        monitor.close(linger=0)
    sock.close(linger=0)

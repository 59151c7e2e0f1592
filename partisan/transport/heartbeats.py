"""One end of a link heartbeats it; the other finds a frozen peer through its ROUTER.

Theory of operation
-------------------
A link between two nodes has a control connection in each direction: each
node's control DEALER (``membership`` lane 0) to the other's ROUTER. Full
ZMTP heartbeats on both doubled what an idle cluster spends: in a 32-node full
mesh, libzmq's I/O threads answering PINGs were about two thirds of the idle
CPU (issue 10). So one end of a link heartbeats its control DEALER every
``heartbeat_interval`` (`heartbeats`: the node whose name sorts first, or a
hidden node, whose peers have no DEALER to it), and the other, *passive*, end
only every ``heartbeat_timeout`` (`control_heartbeat`).

The passive end learns of a frozen or cut-off peer from the heartbeats that
arrive at its ROUTER: each PING carries a TTL of timeout + one interval, and
libzmq drops a connection whose PINGs stop for that long. The last PING came
at most one interval before the freeze, so the drop comes ``heartbeat_timeout``
to timeout + one interval after it: the window the heartbeating end sees
through its DEALER's own timeout. `RouterWatch` reads the ROUTER's monitor;
when a connection drops, it asks, for each peer whose fast heartbeats we
receive rather than send, whether that peer's control connection is still
there (a ROUTER_MANDATORY send to its routing id fails with EHOSTUNREACH once
libzmq dropped it). A peer found gone is handed to `Detection.link_lost`, as
a DEALER's DISCONNECTED would be: the same grace period, BYE check and reason
rules (`Detection._crashed` tells a freeze from a crash).

libzmq sends the first PING one interval after the handshake, so a peer that
froze within that interval of its link coming up never arms the TTL. The
passive end's own slow heartbeats are the backstop for that case: it then
finds the freeze after ``heartbeat_timeout`` to twice that. Their PINGs carry
no TTL, so the heartbeating end's ROUTER keeps the passive end's connection
for as long as its kernel does, which is how that end tells a crash from a
freeze.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from partisan.transport.sockets import Heartbeat

if TYPE_CHECKING:
    from partisan.config import Config
    from partisan.transport.detection import Detection
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.peer import Peer, PeerTable

__all__ = ["RouterWatch", "control_heartbeat", "heartbeats"]

log = logging.getLogger(__name__)

#: Seconds after a dropped connection to ask once more: the monitor event can
#: reach us before libzmq has removed the connection from the ROUTER.
_RECHECK = 0.1


def heartbeats(local_name: str, local_hidden: bool, peer_name: str) -> bool:
    """Whether our control DEALER to `peer_name` carries the link's (fast) ZMTP heartbeats."""
    return local_hidden or local_name < peer_name


def control_heartbeat(
    config: Config, local_name: str, local_hidden: bool, peer_name: str
) -> Heartbeat:
    """The ZMTP heartbeat options of our control DEALER to `peer_name`."""
    if heartbeats(local_name, local_hidden, peer_name):
        ttl = config.heartbeat_timeout + config.heartbeat_interval
        return Heartbeat(config.heartbeat_interval, config.heartbeat_timeout, ttl)
    return Heartbeat(config.heartbeat_timeout, config.heartbeat_timeout, 0.0)  # the backstop


class RouterWatch:
    """Find peers whose heartbeating connection to our ROUTER libzmq dropped."""

    def __init__(self, local: Endpoint, table: PeerTable, detection: Detection) -> None:
        self._local = local
        self._table = table
        self._detection = detection
        self._monitor: zmq.Socket[Any] | None = None
        self._recheck: Any = None  # the pending `_RECHECK` timer

    def start(self) -> None:
        """Watch the ROUTER's dropped connections (a node that is hidden dials, never passive)."""
        local = self._local
        if local.router is None or local.hidden:
            return
        self._monitor = local.router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        loop = local.running()
        loop.add_reader(self._monitor.FD, self._on_monitor)
        loop.call_soon(self._on_monitor)  # the FD only signals edges: read once to arm it

    def stop(self) -> None:
        """Close the monitor (before the ROUTER closes)."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        local = self._local
        if local.loop is not None and not local.loop.is_closed():
            local.loop.remove_reader(monitor.FD)
        if local.router is not None:
            with contextlib.suppress(zmq.ZMQError):
                local.router.disable_monitor()
        monitor.close(linger=0)

    def _on_monitor(self) -> None:
        dropped = False
        monitor = self._monitor
        while monitor is not None and not monitor.closed:
            try:
                recv_monitor_message(monitor, zmq.NOBLOCK)
            except (zmq.Again, zmq.ZMQError):
                break
            dropped = True
        if not dropped:
            return
        self.check()
        if self._recheck is None:
            self._recheck = self._local.running().call_later(_RECHECK, self._check_again)

    def _check_again(self) -> None:
        self._recheck = None
        self.check()

    def check(self) -> None:
        """Hand every passive peer whose control connection to our ROUTER is gone to Detection."""
        local = self._local
        if local.router is None or local.closed:
            return
        detection = self._detection
        for peer in list(self._table.values()):
            if self._watched(peer) and detection.router_gone(peer.control_rid):
                log.info("%s: %s's control connection to us dropped", local.name, peer.name)
                detection.link_lost(peer, detection.down_reason(peer))

    def _watched(self, peer: Peer) -> bool:
        return (
            peer.up_reported
            and not peer.hidden
            and peer.control_rid is not None
            and not heartbeats(self._local.name, self._local.hidden, peer.name)
            and self._table.current(peer)
        )

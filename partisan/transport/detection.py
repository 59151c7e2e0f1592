"""Failure detection and teardown: the one place a link ends.

Theory of operation
-------------------
ZMTP heartbeats run on every socket (libzmq's I/O thread answers them, so a
busy Python loop causes no false alarm) and a monitor watches every DEALER.
On an established session a DISCONNECTED or failed handshake on *any* lane
ends the whole link: every DEALER to the peer is closed with linger 0 (libzmq
would otherwise reconnect silently and lose or delay frames), queued messages
are counted as dropped, and `on_peer_down(peer, reason)` fires once — after
reading what already arrived and, if no BYE explained the failure, one grace
heartbeat interval later (a leaving peer's BYE can trail the close of its
other connections; `link_lost`). The
reason is ``heartbeat_timeout`` when the peer has been silent past the
heartbeat allowance and its own connection to our ROUTER is still there (a
frozen peer's kernel keeps it; a crashed or closing peer's closes it), else
``connection_closed``. Idle links are not PINGed: only ZMTP heartbeats run
on them, in libzmq. A hidden peer has no
DEALER of ours: we PING it through the ROUTER, whose ROUTER_MANDATORY answers
EHOSTUNREACH once libzmq dropped the connection. A peer reported up through
its own dial while ours (a dial-back, or an earlier dial still re-dialling) is
not up is PINGed the same way: until our half is up, its connection to our
ROUTER is the only one that can tell us it died (`_ping_inbound`).

A failed CURVE handshake while dialling becomes `JoinRefused` with a diagnosis,
and the (name, address) is backed off for 1, 2, 4 ... 60 s: libzmq would retry
a wrong server key every 100 ms forever (reliability.md §1).

This part owns the grace timers of failed links (`_lost`), the backoff per
(name, address) and the housekeeping timer; every other part that must end
a link (a BYE, a sequence gap, a refused dial) asks `teardown`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import zmq
from zmq.utils.monitor import recv_monitor_message

from partisan.errors import CallTimeout, JoinRefused
from partisan.transport.lanes import OutLane
from partisan.transport.peer import OutState, Peer, PeerTable
from partisan.transport.statistics import Rejections
from partisan.transport.ticks import call_on_grid
from partisan.transport.wire import Header, Kind, encode_header

if TYPE_CHECKING:
    from partisan.transport.credits import Credits
    from partisan.transport.endpoint import Endpoint
    from partisan.transport.flow import Flow
    from partisan.transport.handshake import Handshake
    from partisan.transport.outbound import Outbound
    from partisan.transport.receive import Receiver

__all__ = ["Detection"]

log = logging.getLogger(__name__)

_FAILED_EVENTS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no_detail",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
}


class Detection:
    """Monitors, heartbeats, PINGs, backoff and the one place a link ends."""

    def __init__(
        self,
        local: Endpoint,
        table: PeerTable,
        reject: Rejections,
        *,
        receiver: Receiver,
        outbound: Outbound,
        credits: Credits,
        flow: Flow,
    ) -> None:
        self._local = local
        self._table = table
        self._reject = reject
        self._receiver = receiver
        self._outbound = outbound
        self._credits = credits
        self._flow = flow
        #: Links whose connection failed, waiting one grace period for a BYE (`link_lost`).
        self._lost: dict[Peer, asyncio.TimerHandle] = {}
        #: (name, host, port) -> (refused until, last interval, reason), after an auth failure.
        self._backoff: dict[tuple[str, str, int], tuple[float, float, str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, *, handshake: Handshake) -> None:
        """Meet the handshake (built after this one): a connected control lane sends its HELLO."""
        self._handshake = handshake

    def start(self) -> None:
        """Run housekeeping every heartbeat interval from now on."""
        loop = self._local.running()
        self._timer = call_on_grid(loop, self._local.config.heartbeat_interval, self._housekeeping)

    def stop(self) -> None:
        """Cancel housekeeping and the grace timers of failed links (closing)."""
        for handle in self._lost.values():
            handle.cancel()
        self._lost.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def backoff(self, name: str, host: str, port: int) -> tuple[float, str] | None:
        """(seconds left, reason) while dials of (name, address) are refused, else None."""
        entry = self._backoff.get((name, host, port))
        if entry is None:
            return None
        remaining = entry[0] - self._local.running().time()
        return (remaining, entry[2]) if remaining > 0 else None

    # ------------------------------------------------------------ noticing

    def on_monitor(self, peer: Peer, lane: OutLane) -> None:
        """Read a lane's monitor events (the loop's reader callback)."""
        monitor = lane.monitor
        while monitor is not None and not monitor.closed:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except (zmq.Again, zmq.ZMQError):
                return
            if not self._table.current(peer) or lane.sock.closed:
                return
            kind = event["event"]
            log.debug("%s: %r on lane %s to %s", self._local.name, kind, lane, peer.name)
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                lane.up = True
                if peer.out_state is OutState.HANDSHAKING and lane is peer.control_lane():
                    self._handshake.send_hello(peer, lane)
                else:
                    self._outbound.flush(peer, lane)
                peer.room.set()
            elif kind == zmq.EVENT_DISCONNECTED:
                lane.up = False
                if peer.out_state is OutState.UP or peer.up_reported:
                    # Reported up (also through the peer's own dial while our
                    # half still handshakes): this connection was its to lose.
                    self.link_lost(peer, self._down_reason(peer))
                    return
                # Still dialling: libzmq re-dials and HELLO is sent again.
            elif kind in _FAILED_EVENTS:
                self._handshake_failed(peer, _FAILED_EVENTS[kind])
                return

    def link_lost(self, peer: Peer, reason: str, error: BaseException | None = None) -> None:
        """A connection of a reported-up link failed: end the link, unless a BYE explains it.

        A peer stopping gracefully sends BYE on one connection and then closes
        the others; our monitor may report one of those closes before libzmq's
        I/O thread has even read the BYE from its socket (under load, measured
        ~1 in 40 stops right after a join). So we read what already arrived
        and, if the link is still ours, look once more after a grace of one
        heartbeat interval before reporting the failure with the reason seen
        now. A crash is thus reported at most one interval later.
        """
        self._drain_before_down(peer)
        if not self._table.current(peer):
            return  # the BYE (or something else) ended it
        if peer in self._lost:
            return  # already waiting
        loop = self._local.running()
        self._lost[peer] = loop.call_later(
            self._local.config.heartbeat_interval, self._confirm_lost, peer, reason, error
        )

    def _confirm_lost(self, peer: Peer, reason: str, error: BaseException | None) -> None:
        self._lost.pop(peer, None)
        if not self._table.current(peer):
            return
        self._drain_before_down(peer)
        if not self._table.current(peer):
            return
        if reason == "heartbeat_timeout" and self._inbound_gone(peer):
            reason = "connection_closed"
        self.teardown(peer, reason, error=error)

    def _drain_before_down(self, peer: Peer) -> None:
        """Read what already arrived before declaring a peer down.

        A monitor event and the frames that preceded it on the wire come
        through different sockets, in no fixed order. Reading first means a
        peer's last messages are delivered before its PeerDown (as Erlang
        orders nodedown after them), and a BYE it sent on its way out is seen
        (so a graceful stop is reported as ``left``, not a failure).
        """
        self._receiver.on_router_readable()
        for lane in list(peer.lanes.values()):
            if not self._table.current(peer):
                return
            if not lane.sock.closed:
                self._receiver.on_dealer_readable(peer, lane)

    def _handshake_failed(self, peer: Peer, how: str) -> None:
        name = self._local.name
        where = f"{peer.name}@{peer.address}"
        if how != "auth" and (peer.out_state is OutState.UP or peer.in_session is not None):
            # The peer already proved its key to us (a live session, or it
            # dialled us and this is our dial-back): a failed handshake now is
            # the peer going away (e.g. mid-shutdown), not a key problem.
            log.info("%s: handshake with %s failed (%s) on a live link", name, where, how)
            self.link_lost(peer, "connection_closed")
            return
        if how == "auth":
            reason = f"{where} rejected our key: is {name}'s public key in its key directory?"
        elif how == "protocol":
            reason = f"security handshake with {where} failed: is one side insecure?"
        elif self._local.keystore is None:
            reason = f"handshake with {where} failed"
        else:
            reason = (
                f"could not authenticate {where}: the node there does not hold {peer.name}'s "
                "key (did another node take that address?)"
            )
        log.warning("%s: %s", name, reason)
        self._reject("handshake_failed")
        if peer.out_state is OutState.UP:
            self.link_lost(peer, "connection_closed")
            return
        if peer.in_session is None:  # a dial of ours, not a dial-back
            self._backoff_address(peer, reason)
        elif peer.up_reported:  # our dial-back: the peer may be leaving (its BYE wins)
            self.link_lost(peer, "unreachable", JoinRefused(reason))
            return
        self.teardown(peer, "unreachable", notify=peer.up_reported, error=JoinRefused(reason))

    def _housekeeping(self) -> None:
        """Every heartbeat interval: handshake deadlines, PINGs, credits, expired backoffs."""
        local = self._local
        loop = local.running()
        now = loop.time()
        for peer in self._table.values():
            if not peer.up_reported and peer.deadline and now > peer.deadline:
                error = CallTimeout(f"handshake with {peer.name}@{peer.address} timed out")
                self.teardown(peer, "unreachable", notify=False, error=error)
            elif peer.up_reported and peer.out_state is not OutState.UP:
                self._ping_inbound(peer)
            elif (
                peer.up_reported
                and (peer.router_lane is not None or local.hidden)
                and not peer.sent_recently
            ):
                # Links with a hidden end keep PINGs: the hidden end has no
                # DEALER of its peer's to ask (`_inbound_gone`), so silence
                # must mean something on both ends. Other links rely on ZMTP.
                self.send_control(peer, Kind.PING)
            peer.sent_recently = False
            if peer.router_lane is not None and peer.router_lane.queue:
                self._outbound.flush(peer, peer.router_lane)
            if peer.heard_recently:
                peer.heard_recently = False
                peer.last_heard = now
        self._credits.send(force=True)
        for address, (until, _, _) in list(self._backoff.items()):
            if until < now - 600:
                del self._backoff[address]
        if not local.closed:
            self._timer = call_on_grid(loop, local.config.heartbeat_interval, self._housekeeping)

    def _ping_inbound(self, peer: Peer) -> None:
        """PING a reported-up peer whose outbound half is not up, through its own connection.

        Such a link rests on the peer's DEALER connected to our ROUTER (its
        HELLO made it up) while our dial (a dial-back, or an earlier dial of
        ours) still connects: libzmq re-dials a dead address silently, so
        no monitor of ours would ever report a peer that died in this
        window. The ROUTER's connection has ZMTP heartbeats; ROUTER_MANDATORY
        answers EHOSTUNREACH once libzmq dropped it (a crash at once, a
        frozen peer after ``heartbeat_timeout``), and that loses the link.
        """
        local = self._local
        if peer.credit_rid is None or local.router is None:
            return
        header = encode_header(Header(Kind.PING, local.name, local.incarnation, "", "", 0, 0))
        try:
            local.router.send_multipart([peer.credit_rid, header], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                log.info("%s: %s's connection to us is gone", local.name, peer.name)
                self.link_lost(peer, self._down_reason(peer))
            return  # EAGAIN: its pipe is full, so it is not gone
        self._receiver.recheck_router()

    def _inbound_gone(self, peer: Peer) -> bool:
        """Whether a silent peer's own connection to our ROUTER is gone (it closed, not froze).

        We do not PING idle links that have a DEALER of ours (issue 10: those
        PINGs were half of an idle cluster's CPU), so silence alone cannot
        tell a crash on an idle link from a frozen peer. Its control lane's
        connection to our ROUTER can: a crashed or closing peer's kernel
        closed it with the rest, while a frozen peer's stays until the TTL
        of its heartbeats runs out, which `sockets.heartbeat_ttl` sets past
        this check (our DEALER's timeout plus the grace interval). Only for
        links whose half of ours is up: a half-up link is PINGed, so its
        silence means what it says.
        """
        local = self._local
        if (
            peer.out_state is not OutState.UP
            or peer.router_lane is not None
            or peer.credit_rid is None
            or local.router is None
        ):
            return False
        header = encode_header(Header(Kind.PING, local.name, local.incarnation, "", "", 0, 0))
        try:
            local.router.send_multipart([peer.credit_rid, header], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            return exc.errno == zmq.EHOSTUNREACH
        return False

    def _down_reason(self, peer: Peer) -> str:
        """``heartbeat_timeout`` if the peer has been silent past the heartbeat allowance.

        For a link we do not PING (see `_inbound_gone`) this is only the
        first guess: `_confirm_lost` asks the peer's connection to our ROUTER.
        """
        if peer.heard_recently:
            return "connection_closed"  # heard from within this heartbeat interval
        config = self._local.config
        silent = self._local.running().time() - peer.last_heard
        threshold = (config.heartbeat_interval + config.heartbeat_timeout) / 2
        return "heartbeat_timeout" if silent >= threshold else "connection_closed"

    def _backoff_address(self, peer: Peer, reason: str) -> None:
        """Stop re-dialling (name, address) after an authentication failure, for a growing while.

        libzmq would retry a CURVE handshake with the wrong server key every
        100 ms forever (reliability.md §1); we close the DEALER instead and
        refuse further dials of that combination for 1, 2, 4 ... 60 s.
        """
        key = (peer.name, peer.host, peer.port)
        previous = self._backoff.get(key)
        interval = min(60.0, previous[1] * 2) if previous else 1.0
        self._backoff[key] = (self._local.running().time() + interval, interval, reason)

    # ------------------------------------------------------------ ending

    def teardown(
        self,
        peer: Peer,
        reason: str,
        *,
        notify: bool = True,
        error: BaseException | None = None,
        linger: int = 0,
        tell: bool = True,
    ) -> None:
        """End the link to `peer`: close its lanes, drop its sessions, report it once."""
        if not self._table.current(peer):
            return
        if tell and peer.up_reported and reason not in ("left", "disconnected"):
            # Best effort: a live peer must not keep sending into a dead session.
            self.say_bye(peer, "connection_closed")
        self._table.remove(peer)
        peer.out_state = OutState.NONE
        lanes = list(peer.lanes.values())
        for lane in lanes:
            self._outbound.close_lane(lane, linger)
        dropped = sum(len(lane.queue) for lane in lanes)
        if peer.router_lane is not None:
            dropped += len(peer.router_lane.queue)
        peer.counters.dropped += dropped
        self._credits.forget(list(peer.inflows.values()))
        self._flow.wake_all(peer)
        if not peer.ready.done():
            peer.ready.set_exception(error or JoinRefused(f"link to {peer.name} closed: {reason}"))
            peer.ready.exception()  # retrieved: connect() may not be waiting
        peer.room.set()
        self._flow.flushed.set()
        if peer.up_reported and notify and peer.spec is not None:
            log.info("%s: link to %s down (%s)", self._local.name, peer.spec, reason)
            try:
                self._local.handler.on_peer_down(peer.spec, reason)
            except Exception:
                log.exception("on_peer_down handler failed for %s", peer.spec)

    def say_bye(self, peer: Peer, reason: str) -> None:
        """Send BYE by the path most likely alive: our ROUTER to the peer's DEALER, else ours."""
        local = self._local
        if peer.credit_rid is not None and local.router is not None:
            header = encode_header(Header(Kind.BYE, local.name, local.incarnation, "", "", 0, 0))
            if self._receiver.router_send([peer.credit_rid, header, reason.encode()]):
                return
        self.send_control(peer, Kind.BYE, reason.encode())

    def defer_teardown(self, peer: Peer, reason: str) -> None:
        """Tear down from a send path (after the caller's bookkeeping)."""
        self._local.running().call_soon(self.teardown, peer, reason)

    def send_control(self, peer: Peer, kind: Kind, payload: bytes = b"", seq: int = 0) -> bool:
        """Send a control frame on the control lane, bypassing the data queues."""
        lane = peer.control_lane()
        if lane is None:
            return False
        local = self._local
        header = encode_header(Header(kind, local.name, local.incarnation, "", "", seq, 0))
        frames = [*lane.prefix, header] + ([payload] if payload else [])
        try:
            lane.sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH and lane.routed:
                self.defer_teardown(peer, self._down_reason(peer))
            return False
        peer.sent_recently = True
        self._receiver.mark_dirty(peer, lane)
        return True

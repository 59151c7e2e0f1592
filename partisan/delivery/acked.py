"""Acked channels: sequence numbers, retransmission, deduplication; exactly once, in order.

Theory of operation
-------------------
Partisan's ``ack => true`` (reference §5.1) stores each message under a
vector clock and re-casts every outstanding one each second until acked: no
deduplication (at-least-once), no bound, full-mesh manager only. Ours:

* **Streams.** The sender numbers messages per (receiver node, channel,
  lane) from 1; the lane is the transport's (`lane_for(partition_key)`), so
  one partition key is one stream. A stream belongs to one sender
  incarnation and one receiver incarnation: each `Data` names the receiver
  incarnation it is for (0 until one is known), and the receiver drops data
  for another incarnation of itself.
* **Receiver.** Per (sender name, sender incarnation, channel, lane) it keeps
  the next sequence it expects and a bounded buffer of later ones (faults
  reorder and drop); a sequence below it is a duplicate, dropped and
  acknowledged again. In-order data is handed up (to `causal.Causal` on a
  causal channel, else straight to the actor), so delivery is exactly once
  and in order per stream while both incarnations live. Acknowledgements are
  coalesced (one `Ack` per stream per loop iteration) and selective: a
  cumulative point plus up to `SACK_RANGES` ranges of what arrived beyond it
  (held in the reorder buffer, or waiting for a causal dependency).
* **Sender.** Unacknowledged messages stay in the stream, bounded twice:
  at most `ack_window` per stream, and at most `send_buffer_bytes` of them
  per (receiver, channel) — the transport's byte budget, so an acked channel
  holds no more memory than a plain one may have in flight (a message is
  admitted while the total is under the budget: it may pass it by that one
  message). Over either bound `send` raises `Overloaded` and ``wait=True``
  waits for room. The size is the message's bytes on the wire, which the
  caller reports after transmitting (`account`). A timer resends only what
  the receiver has not reported (neither below the cumulative point nor in
  the latest ack's ranges) and what was last sent at least one retransmission
  timeout ago: `ack_interval`, doubling up to `ack_interval_max` while no
  ack progresses. After each reconnect everything unreported is resent at
  once (what was in flight on the old link is gone). Each tick resends at most
  `BURST` messages per stream. After `ack_timeout` seconds
  without progress the stream gives up; a new receiver incarnation (or its
  leave) ends it at once. Either way every unacknowledged message fails its
  waiting sender with `DeliveryError(reason)`, is counted (``lost``) and
  written as a ``delivery.lost`` event.

Sans-IO apart from the loop's timers: sending and handing up are callables
the `Distribution` passes in, so this module imports nothing of the actor
runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from partisan.config import ChannelSpec, Config
from partisan.delivery.causal import Causal
from partisan.delivery.streams import (
    BURST,
    Ack,
    Data,
    DeliveryStatistics,
    HeldBytes,
    InStream,
    OutStream,
    Wire,
    holes,
    sack_ranges,
)
from partisan.errors import DeliveryError, Overloaded
from partisan.identity import NodeSpec
from partisan.transport.lanes import lane_for

__all__ = ["Ack", "Data", "Delivery", "DeliveryStatistics"]

logger = logging.getLogger(__name__)


class Delivery:
    """One node's acked and causal channels (owned by the `Distribution`)."""

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        incarnation: int,
        transmit: Callable[[str, str, Any, Any], bool],
        deliver: Callable[[NodeSpec, str, str, Any], None],
        record: Callable[..., None] | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.incarnation = incarnation
        self.channels: dict[str, ChannelSpec] = {
            c.name: c for c in config.all_channels() if c.acked
        }
        self._transmit = transmit
        self._deliver = deliver
        self._record = record
        self.out: dict[tuple[str, str, int], OutStream] = {}
        #: unacknowledged bytes per (node, channel), against `send_buffer_bytes`
        self.held = HeldBytes()
        self.bytes = self.held.bytes  # the same dict, for statistics and tests
        self.inp: dict[tuple[str, int, str, int], InStream] = {}
        self.causal = Causal(name, incarnation, self._hand_up, self._event)
        self._dirty: dict[tuple[str, int, str, int], NodeSpec] = {}
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.sent = self.retransmitted = self.acked = self.delivered = 0
        self.duplicates = self.stale = self.lost = 0

    # ------------------------------------------------------------ sending

    def prepare(
        self, node: str, peer_inc: int, channel: str, dest: str, payload: Any, key: Any,
        waiter: asyncio.Future[None] | None = None,
    ) -> Wire:  # fmt: skip
        """Number and keep a message for `node`; the caller transmits it (or `unprepare`s).

        Raises `Overloaded` when the stream already holds `ack_window` messages
        or the channel to `node` holds `send_buffer_bytes` unacknowledged.
        """
        spec = self.channels[channel]
        lane = 0 if spec.causal else lane_for(key, spec.parallelism)
        skey = (node, channel, lane)
        stream = self.out.get(skey)
        if stream is not None and peer_inc and stream.peer_inc and stream.peer_inc < peer_inc:
            self._end(skey, "restarted")
            stream = None
        if stream is None:
            stream = self.out[skey] = OutStream(peer_inc, rto=self.config.ack_interval)
            stream.progress = self._now()
        elif not stream.peer_inc:
            stream.peer_inc = peer_inc
        if len(stream.unacked) >= self.config.ack_window:
            raise Overloaded(
                f"acked channel {channel!r} to {node!r}: {len(stream.unacked)} messages "
                "unacknowledged (ack_window)"
            )
        held = self.held.of(node, channel)
        if held >= self.config.send_buffer_bytes:
            raise Overloaded(
                f"acked channel {channel!r} to {node!r}: {held} bytes unacknowledged "
                f"(send_buffer_bytes {self.config.send_buffer_bytes})"
            )
        seq = stream.next_seq
        stream.next_seq = seq + 1
        deps = self.causal.stamp(node, stream.peer_inc, channel, seq) if spec.causal else None
        data = (channel, lane, stream.peer_inc, seq, dest, payload, deps)  # a `Data`, plain
        if not stream.unacked:
            stream.progress = stream.last_tx = self._now()
        stream.unacked[seq] = (data, key, waiter, self._now(), 0)
        self.sent += 1
        self._arm()
        return data

    def account(self, node: str, wire: Wire, size: int) -> None:
        """`wire` (just prepared) takes `size` bytes on the wire: count it against the budget."""
        channel = wire[0]  # Data fields by index: this runs once per acked message
        stream = self.out.get((node, channel, wire[1]))
        if stream is None:
            return
        unacked = stream.unacked
        seq = wire[3]
        entry = unacked.get(seq)
        if entry is None:
            return  # already acknowledged
        unacked[seq] = (entry[0], entry[1], entry[2], entry[3], size)
        self.held.add(node, channel, size)

    def unprepare(self, node: str, wire: Wire) -> None:
        """The newest message could not be sent at all: forget it (its caller gets the error)."""
        data = Data._make(wire)
        stream = self.out.get((node, data.channel, data.lane))
        if stream is not None and stream.next_seq == data.seq + 1:
            entry = stream.unacked.pop(data.seq, None)
            if entry is not None:
                self.held.release(node, data.channel, entry[4])
            stream.next_seq = data.seq
            self.sent -= 1
            if data.deps is not None:
                self.causal.unstamp(node, stream.peer_inc, data.channel, data.seq)

    def holds(self, node: str) -> bool:
        """True while a stream to `node` is open (messages then wait for its reconnect)."""
        return any(k[0] == node for k in self.out)

    async def room(self, node: str, channel: str, key: Any, timeout: float | None) -> None:
        """Wait until the stream `key` maps to has room (else `Overloaded` at `timeout`)."""
        spec = self.channels[channel]
        lane = 0 if spec.causal else lane_for(key, spec.parallelism)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._full(node, channel, lane):
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await self.held.changed(node, channel, remaining)
            except TimeoutError:
                raise Overloaded(f"acked channel {channel!r} to {node!r}: no room") from None

    def _full(self, node: str, channel: str, lane: int) -> bool:
        stream = self.out.get((node, channel, lane))
        if stream is None:
            return False
        return (
            len(stream.unacked) >= self.config.ack_window
            or self.held.of(node, channel) >= self.config.send_buffer_bytes
        )

    # ----------------------------------------------------------- receiving

    def on_data(self, sender: NodeSpec, wire: Wire) -> None:
        """A `Data` (as its plain tuple) from `sender`, authenticated: dedupe, order, hand up, ack.

        Raises TypeError for a malformed tuple (the caller counts it as a peer's bad input).
        """
        data = Data._make(wire)
        if data.to_inc and data.to_inc != self.incarnation:
            self.stale += 1  # for an older incarnation of this node
            return
        key = (sender.name, sender.incarnation, data.channel, data.lane)
        stream = self.inp.get(key)
        if stream is None:
            if data.channel not in self.channels:
                self.stale += 1  # not an acked channel here: a misconfigured peer
                return
            self._forget_older(sender)
            stream = self.inp[key] = InStream()
        seq = data.seq
        if seq < stream.expected:
            self.duplicates += 1
        elif seq == stream.expected:
            causal = data.deps is not None
            self._accept(sender, key, stream, data, causal)
            buffer = stream.buffer
            while buffer and stream.expected in buffer:
                self._accept(sender, key, stream, buffer.pop(stream.expected), causal)
        elif seq - stream.expected < self.config.ack_window:
            if seq in stream.buffer:
                self.duplicates += 1
            stream.buffer[seq] = data
        self._ack_soon(key, sender)

    def _accept(
        self,
        sender: NodeSpec,
        key: tuple[str, int, str, int],
        stream: InStream,
        data: Data,
        causal: bool,
    ) -> None:
        stream.expected = data.seq + 1
        if causal:
            self.causal.now = self._now()
            self.causal.offer(sender, key, data)
        else:
            stream.acked = data.seq
            self._hand_up(sender, key, data)

    def _hand_up(self, sender: NodeSpec, key: tuple[str, int, str, int], data: Data) -> None:
        """Deliver to the actor; for a causal stream also move its ack point."""
        if data.deps is not None:
            stream = self.inp.get(key)
            if stream is not None:
                stream.acked = max(stream.acked, data.seq)
                self._ack_soon(key, sender)
        self.delivered += 1
        try:
            self._deliver(sender, data.channel, data.dest, data.payload)
        except Exception:  # a local delivery bug must not stop the stream
            logger.exception("delivering an acked message from %s failed", sender.name)

    def on_ack(self, sender: NodeSpec, ack: Ack) -> None:
        """An `Ack` from `sender`: release what it covers, wake waiting senders."""
        if ack.to_inc != self.incarnation:
            return
        stream = self.out.get((sender.name, ack.channel, ack.lane))
        if stream is None:
            return
        if not stream.peer_inc:
            stream.peer_inc = sender.incarnation
        elif stream.peer_inc != sender.incarnation:
            return
        if ack.seq >= stream.sack_seq:  # a late (reordered) ack must not shrink what we know
            stream.sack_seq, stream.sacked = ack.seq, ack.ranges
        unacked = stream.unacked
        done = freed = 0
        upto = ack.seq
        while unacked:
            seq = next(iter(unacked))  # the oldest: entries are kept in sequence order
            if seq > upto:
                break
            entry = unacked.pop(seq)
            waiter = entry[2]
            if entry[4]:
                freed += entry[4]
            done += 1
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if done:
            self.acked += done
            stream.progress = self._now()
            stream.rto = self.config.ack_interval
            self.held.release(sender.name, ack.channel, freed)
            self.held.wake(sender.name, ack.channel)

    def _ack_soon(self, key: tuple[str, int, str, int], sender: NodeSpec) -> None:
        self._dirty[key] = sender
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for key, sender in dirty.items():
            stream = self.inp.get(key)
            if stream is None or not stream.acked:
                continue
            ack = Ack(key[2], key[3], key[1], stream.acked, sack_ranges(stream))
            self._transmit(sender.name, key[2], ack, None)

    # ------------------------------------------------------ peers, timers

    def peer_up(self, peer: NodeSpec) -> None:
        """A session with `peer` is up: end streams to its older incarnations, resend the rest."""
        for skey, stream in list(self.out.items()):
            if skey[0] != peer.name:
                continue
            if stream.peer_inc and stream.peer_inc < peer.incarnation:
                self._end(skey, "restarted")
            else:
                stream.rto = self.config.ack_interval
                self._resend(skey, stream, self._now(), 0.0, True)
        self._forget_older(peer)
        if peer.incarnation:  # a restart seen only as a new HELLO: the old incarnation is over
            self.causal.incarnation_ended(peer.name, peer.incarnation - 1)

    def peer_gone(self, peer: NodeSpec, reason: str) -> None:
        """`peer` restarted or left: its streams will never be acknowledged."""
        if reason not in ("restarted", "left"):
            return  # a reconnect may still come: keep retransmitting until ack_timeout
        for skey, stream in list(self.out.items()):
            if skey[0] == peer.name and (
                not stream.peer_inc or stream.peer_inc <= peer.incarnation
            ):
                self._end(skey, reason)
        self.causal.incarnation_ended(peer.name, peer.incarnation)

    def _forget_older(self, peer: NodeSpec) -> None:
        for key in [k for k in self.inp if k[0] == peer.name and k[1] < peer.incarnation]:
            del self.inp[key]
            self.causal.incarnation_ended(key[0], key[1])

    def _end(self, skey: tuple[str, str, int], reason: str) -> None:
        stream = self.out.pop(skey, None)
        if stream is None:
            return
        lost = len(stream.unacked)
        if lost:
            self.lost += lost
            logger.warning(
                "%s: %d acked messages to %s on %r not delivered (%s)",
                self.name, lost, skey[0], skey[1], reason,
            )  # fmt: skip
            self._event(
                "delivery.lost", peer=skey[0], peer_incarnation=stream.peer_inc or None,
                reason=reason, channel=skey[1], count=lost,
            )  # fmt: skip
        for entry in stream.unacked.values():
            self.held.release(skey[0], skey[1], entry[4])
            waiter = entry[2]
            if waiter is not None and not waiter.done():
                waiter.set_exception(DeliveryError(reason))
        self.held.wake(skey[0], skey[1])

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.ack_interval / 2, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._now()
        timeout = self.config.ack_timeout
        busy = False
        for skey, stream in list(self.out.items()):
            if not stream.unacked:
                continue
            if now - stream.progress > timeout:
                self._end(skey, "timeout")
                continue
            busy = True
            if now - max(stream.last_tx, stream.progress) >= stream.rto and self._resend(
                skey, stream, now, stream.rto, False
            ):
                stream.rto = min(stream.rto * 2, self.config.ack_interval_max)
        self.causal.expire(now, timeout)
        if busy or self.causal.waiting:
            self._arm()

    def _resend(
        self, skey: tuple[str, str, int], stream: OutStream, now: float, age: float,
        everything: bool,
    ) -> int:  # fmt: skip
        """Resend `holes(...)`; how many went (a send that cannot go now ends the burst)."""
        node, channel = skey[0], skey[1]
        unacked = stream.unacked
        count = 0
        for seq in holes(stream, now, age, everything, BURST):
            entry = unacked[seq]
            if not self._transmit(node, channel, entry[0], entry[1]):
                break
            unacked[seq] = (entry[0], entry[1], entry[2], now, entry[4])
            count += 1
        if count:
            stream.last_tx = now
            self.retransmitted += count
        return count

    def _event(self, event: str, **fields: Any) -> None:
        if self._record is not None:
            try:
                self._record(event, **fields)
            except Exception:
                logger.exception("event log: %s failed", event)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def close(self) -> None:
        """This node stops: waiting senders fail with ``closed``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for skey in list(self.out):
            stream = self.out.pop(skey)
            for entry in stream.unacked.values():
                waiter = entry[2]
                if waiter is not None and not waiter.done():
                    waiter.set_exception(DeliveryError("closed"))

    def statistics(self) -> DeliveryStatistics:
        """Counters, as an immutable record."""
        return DeliveryStatistics(
            self.sent, self.retransmitted, self.acked, self.delivered, self.duplicates,
            self.stale, self.lost, sum(len(s.unacked) for s in self.out.values()),
            self.causal.waiting, self.causal.released, self.causal.held,
        )  # fmt: skip

"""Acked and causal channels inside `Distribution`: the glue to `partisan.delivery.acked`.

`Distribution.send` hands a message on an acked (or causal) channel here
instead of to the transport: `Delivery.prepare` numbers and keeps it, and
this mixin transmits it to the peer's ``$runtime`` (directly, queued behind
a link being dialled on use, or through the relay for ``transitive=True``).
Retransmissions and acknowledgements come back through `_transmit`, which
never raises: a message that cannot go now waits for the next tick or the
next reconnect. Receiving is `Inbound.on_message`'s business (data as plain
tuples at ``$acked``, `Ack` envelopes at ``$runtime``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from partisan.actors.remote_inbound import RUNTIME_DEST, Inbound
from partisan.actors.runtime import Dest
from partisan.delivery.acked import Ack, Delivery
from partisan.delivery.streams import ACKED_DEST
from partisan.errors import CallTimeout, NotConnected, Overloaded
from partisan.identity import NodeSpec, Pid
from partisan.transport.codec import encode_payload

if TYPE_CHECKING:
    from partisan.actors.runtime import Runtime

__all__ = ["AckedSends"]

logger = logging.getLogger(__name__)


class AckedSends:
    """Sending on acked and causal channels (a mixin of `Distribution`)."""

    if TYPE_CHECKING:  # provided by Distribution
        runtime: Runtime
        links: Any
        relay: Any
        record: Any
        up: dict[str, NodeSpec]
        down: set[str]
        incarnations: dict[str, int]
        _waiting: Any

        def _stale(self, pid: Pid) -> bool: ...

        def _indirect(
            self, node: str, channel: str, dest: str, msg: Any, key: Any, transitive: bool
        ) -> bool: ...

    #: Acked and causal channels (`enable_delivery`); `reliable` names them.
    delivery: Delivery | None = None
    reliable: frozenset[str] = frozenset()

    def enable_delivery(self, config: Any) -> None:
        """Carry the config's acked/causal channels through `partisan.delivery.acked`."""
        delivery = Delivery(
            config,
            name=self.runtime.node,
            incarnation=self.runtime.incarnation,
            transmit=self._transmit,
            deliver=Inbound.on_message.__get__(self),
            record=self.record,
        )
        if delivery.channels:
            self.delivery = delivery
            self.reliable = frozenset(delivery.channels)

    def _target(self, dest: Dest) -> tuple[str, str] | None:
        if isinstance(dest, Pid):
            if self._stale(dest):
                self.runtime.drops["stale_incarnation"] += 1
                return None
            return dest.node, str(dest)
        return dest[1], dest[0]

    def _send_acked(
        self, dest: Dest, msg: Any, channel: str, key: Any, transitive: bool,
        waiter: asyncio.Future[None] | None,
    ) -> bool:  # fmt: skip
        """Number, keep and transmit one acked message; False if it was dropped as stale."""
        target = self._target(dest)
        if target is None:
            return False
        node, wire_dest = target
        delivery = self.delivery
        assert delivery is not None
        spec = self.up.get(node)
        peer_inc = spec.incarnation if spec is not None else self.incarnations.get(node, 0)
        data = delivery.prepare(node, peer_inc, channel, wire_dest, msg, key, waiter)
        try:
            if (node in self._waiting or node not in self.up) and self._indirect(
                node, channel, ACKED_DEST, data, key, transitive
            ):
                delivery.account(node, data, _wire_size(data))  # dialling, or relayed
                return True
            size = self.links.send(node, channel, ACKED_DEST, data, partition_key=key)
            # None: the fault injector dropped or holds it (it is kept all the same).
            delivery.account(node, data, size or _wire_size(data))
            self.runtime.routed_remote += 1
        except NotConnected:
            if data[3] > 1 and node in self.down:  # its seq
                return True  # the stream lives on: sent when the node is back (or fails)
            delivery.unprepare(node, data)
            raise
        except BaseException:
            delivery.unprepare(node, data)
            raise
        return True

    async def _send_acked_wait(
        self, dest: Dest, msg: Any, channel: str, key: Any, timeout: float | None
    ) -> None:
        delivery = self.delivery
        assert delivery is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        target = self._target(dest)
        if target is None:
            return
        await delivery.room(target[0], channel, key, timeout)
        waiter: asyncio.Future[None] = loop.create_future()
        if not self._send_acked(dest, msg, channel, key, False, waiter):
            return
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), remaining)
        except TimeoutError:
            raise CallTimeout(f"no acknowledgement from {target[0]!r} within {timeout} s") from None

    def _transmit(self, node: str, channel: str, envelope: Any, key: Any) -> bool:
        """Send an acked layer's retransmission or ack; False if it could not go now."""
        ack = type(envelope) is Ack
        dest = RUNTIME_DEST if ack else ACKED_DEST
        try:
            if node in self.up and node not in self._waiting:
                self.links.send(
                    node, channel, dest, envelope, partition_key=key, control=ack,
                )  # fmt: skip
            elif self.relay is not None:
                self.relay.forward(node, channel, dest, envelope, key)
            else:
                return False
        except (NotConnected, Overloaded):
            return False
        except Exception as exc:
            logger.warning("acked layer: could not send to %s: %s", node, exc)
            return False
        return True


def _wire_size(data: Any) -> int:
    """The bytes `data` takes encoded, for a message the transport did not size for us."""
    return sum(len(frame) for frame in encode_payload(data)[1])

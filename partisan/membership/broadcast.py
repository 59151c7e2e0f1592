"""The shape shared by broadcast layers (flood, Plumtree) and their drivers.

A broadcast layer is a pure state machine stacked on a membership manager: the
driver tells it when an overlay neighbour appears or disappears (from the
manager's active view), hands it the messages that arrive on its channel and
the timers it set, and carries out the actions it returns. Besides the usual
membership actions (`Send`, `SetTimer`, `CancelTimer`) a layer returns
`Deliver` when a broadcast reaches this node for the first time.

Payload-carrying messages set the class attribute ``carries_payload = True``
so a driver can count them (RMR counts payload messages only).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from partisan.identity import NodeSpec
from partisan.membership.types import Action, Received, TimerFired

__all__ = ["BROADCAST_CHANNEL", "BroadcastLayer", "Deliver", "LayerAction"]

#: Channel broadcast layers send on; drivers route it to the layer, not the manager.
BROADCAST_CHANNEL = "broadcast"


@dataclass(frozen=True, slots=True)
class Deliver:
    """Broadcast `msg_id` reached this node (exactly once per node).

    `hops` is the number of overlay hops from the source (0 at the source);
    `sender` is the neighbour it came from (None at the source).
    """

    msg_id: Hashable
    payload: Any
    hops: int
    sender: NodeSpec | None


LayerAction = Action | Deliver


@runtime_checkable
class BroadcastLayer(Protocol):
    """What flood and Plumtree offer their driver."""

    name: str

    def neighbor_up(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        """`peer` entered the overlay neighbourhood (the manager's active view)."""
        ...

    def neighbor_down(self, peer: NodeSpec, now: float) -> list[LayerAction]:
        """`peer` left the overlay neighbourhood (failure or view change)."""
        ...

    def broadcast(self, msg_id: Hashable, payload: Any, now: float) -> list[LayerAction]:
        """Start broadcast `msg_id` here; the result includes the local `Deliver`."""
        ...

    def handle(self, event: Received | TimerFired, now: float) -> list[LayerAction]:
        """A message on `BROADCAST_CHANNEL` or one of this layer's timers."""
        ...

    def neighbors(self) -> Sequence[NodeSpec]:
        """The neighbours this layer currently knows, sorted by name."""
        ...

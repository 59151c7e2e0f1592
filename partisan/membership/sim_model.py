"""The simulator's data: a link's model and what one broadcast did.

Plain values shared by `partisan.membership.sim` (public API, re-exported
there) and its engine; kept apart so the engine holds only the event loop.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["BroadcastRecord", "LinkModel"]


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Delay (uniform, seconds), loss and duplication probabilities of a link."""

    delay_min: float = 0.001
    delay_max: float = 0.010
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_min <= self.delay_max:
            raise ValueError(f"LinkModel: need 0 <= delay_min <= delay_max, got {self}")
        for p in (self.loss, self.duplicate):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"LinkModel: probabilities must be in [0, 1], got {self}")


@dataclass(slots=True)
class BroadcastRecord:
    """What happened to one broadcast: who delivered it, how far, at what cost."""

    msg_id: Hashable
    source: str
    sent_at: float
    live: int  # live nodes when it was sent (the reliability denominator)
    deliveries: dict[str, int] = field(default_factory=dict)  # node -> hops
    duplicates: int = 0  # a node delivered it more than once (must stay 0)
    payload_sends: int = 0  # payload messages sent for it (the RMR numerator)

    @property
    def reliability(self) -> float:
        """Fraction of the nodes live at send time that delivered it."""
        return len(self.deliveries) / self.live if self.live else 1.0

    @property
    def rmr(self) -> float:
        """Relative message redundancy m/(n-1) - 1 (0 when n <= 1)."""
        n = len(self.deliveries)
        return self.payload_sends / (n - 1) - 1.0 if n > 1 else 0.0

    @property
    def last_delivery_hop(self) -> int:
        """Largest hop count of any delivery."""
        return max(self.deliveries.values(), default=0)

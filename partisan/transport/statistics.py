"""Link statistics: cheap mutable counters inside, immutable records outside.

The hot path bumps plain list slots (`ChannelCounters`); `Links.statistics()`
copies them into frozen records that the CLI and tests render or compare.
Counters are kept per peer *name*, across sessions, so reconnects and rejects
of a flapping peer stay visible after its session is gone.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # peer.py imports this module
    from partisan.transport.peer import Peer

__all__ = [
    "ChannelStatistics",
    "LinkStatistics",
    "PeerCounters",
    "PeerStatistics",
    "Rejections",
    "snapshot_peer",
]

log = logging.getLogger(__name__)

# Slots of a channel counter list.
MSGS_OUT, BYTES_OUT, MSGS_IN, BYTES_IN = range(4)


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """Traffic on one channel with one peer (all lanes, all sessions)."""

    channel: str
    messages_out: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    lanes_open: int = 0
    #: Our bytes on this channel the peer has not credited, and senders waiting for room.
    outstanding_bytes: int = 0
    waiting_senders: int = 0
    #: The peer's bytes on this channel unread in our mailboxes.
    unread_bytes: int = 0


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    """One peer as this node sees it.

    `sessions` counts sessions established (so reconnects = sessions - 1);
    `rejects` counts frames from this peer dropped unread (stale session or
    incarnation, duplicates, gaps, undecodable payloads); `dropped` counts
    messages of ours lost when a session ended (each such loss was reported as
    PeerDown); `queue_messages`/`queue_bytes` wait in our queues and
    `outstanding_bytes` is everything not yet credited by the peer.
    """

    name: str
    connected: bool
    incarnation: int | None
    hidden: bool
    sessions: int
    reconnects: int
    queue_messages: int
    queue_bytes: int
    outstanding_bytes: int
    rejects: int
    dropped: int
    channels: tuple[ChannelStatistics, ...] = ()

    def channel(self, name: str) -> ChannelStatistics:
        """The record of channel `name` (zeros if nothing was exchanged on it)."""
        for record in self.channels:
            if record.channel == name:
                return record
        return ChannelStatistics(name)


@dataclass(frozen=True, slots=True)
class LinkStatistics:
    """A snapshot of one node's links.

    `rejected` counts inbound frames dropped before delivery, by reason
    (``protocol_error``, ``unknown_session``, ``stale_incarnation``,
    ``duplicate``, ``gap``, ``decode_error``, ``wrong_sender``); `refused`
    counts HELLOs refused; `decoded` counts payloads handed to the decoder
    (only ever for frames of a live, authenticated session).
    """

    node: str
    peers: tuple[PeerStatistics, ...] = ()
    rejected: dict[str, int] = field(default_factory=dict)  # a copy, safe to keep
    refused: int = 0
    handshakes: int = 0
    decoded: int = 0
    #: Peers' bytes unread in our mailboxes now, the most ever, and the bound.
    unread_bytes: int = 0
    unread_peak: int = 0
    inbound_buffer_bytes: int = 0

    def peer(self, name: str) -> PeerStatistics | None:
        """The record of peer `name`, if it was ever seen."""
        for record in self.peers:
            if record.name == name:
                return record
        return None

    @property
    def total_rejected(self) -> int:
        """All inbound frames dropped before delivery."""
        return sum(self.rejected.values())


class PeerCounters:
    """Mutable counters for one peer name; survives its sessions."""

    __slots__ = ("channels", "dropped", "rejects", "sessions")

    def __init__(self) -> None:
        self.channels: dict[str, list[int]] = {}
        self.sessions = 0
        self.rejects = 0
        self.dropped = 0

    def channel(self, name: str) -> list[int]:
        """The counter list of channel `name` (created on first use)."""
        slot = self.channels.get(name)
        if slot is None:
            slot = self.channels[name] = [0, 0, 0, 0]
        return slot


class Rejections:
    """Inbound frames dropped before delivery, by reason: counted, logged, never raised.

    A peer's bad input is the peer's problem, not ours (STYLE.md, errors):
    every part that drops a frame reports it here, so `LinkStatistics.rejected`
    is the one place to look.
    """

    __slots__ = ("by_reason", "node")

    def __init__(self, node: str) -> None:
        self.node = node
        self.by_reason: Counter[str] = Counter()

    def __call__(self, reason: str, peer: Peer | None = None, detail: object = None) -> None:
        """Count one dropped frame (against `peer` too, if known); log `detail` if given."""
        self.by_reason[reason] += 1
        if peer is not None:
            peer.counters.rejects += 1
        if detail is not None:
            log.warning("%s dropped a frame (%s): %s", self.node, reason, detail)


def freeze_rejected(counter: Counter[str]) -> dict[str, int]:
    """A copy of the rejection counter for a snapshot (plain dict: `dataclasses.asdict` works)."""
    return dict(counter)


def snapshot_peer(name: str, counters: PeerCounters, peer: Peer | None) -> PeerStatistics:
    """Freeze one peer's counters and live state (`peer` is None once it is forgotten)."""
    live = peer is not None and peer.up_reported and not peer.closing
    queued = peer.queued() if peer is not None else (0, 0)
    lanes_open: Counter[str] = Counter()
    if peer is not None:
        for channel, _ in peer.lanes:
            lanes_open[channel] += 1
    budgets = peer.budgets if peer is not None else {}
    inflows = peer.inflows if peer is not None else {}
    channels = tuple(
        ChannelStatistics(
            channel,
            values[0],
            values[1],
            values[2],
            values[3],
            lanes_open[channel],
            budgets[channel].outstanding if channel in budgets else 0,
            len(budgets[channel].waiters) if channel in budgets else 0,
            inflows[channel].held if channel in inflows else 0,
        )
        for channel, values in sorted(counters.channels.items())
    )
    return PeerStatistics(
        name=name,
        connected=live,
        incarnation=peer.spec.incarnation if peer and peer.spec else None,
        hidden=peer.hidden if peer else False,
        sessions=counters.sessions,
        reconnects=max(0, counters.sessions - 1),
        queue_messages=queued[0],
        queue_bytes=queued[1],
        outstanding_bytes=peer.outstanding if peer else 0,
        rejects=counters.rejects,
        dropped=counters.dropped,
        channels=channels,
    )

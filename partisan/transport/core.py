"""The state every part of `Links` shares, and the methods they call across modules.

`Links` is assembled from one mixin per concept — `handshake.Handshake`
(sessions open), `detection.Detection` (failure detection and teardown),
`receive.Receiver` (inbound frames, credits), `outbound.Outbound` (lanes and
hand-off to ZeroMQ) — over this base, which declares the attributes that
`Links.__init__` creates and, for the type checker only, the methods one part
calls in another. Nothing here runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

import zmq

from partisan.config import ChannelSpec, Config
from partisan.identity import NodeSpec
from partisan.transport.backpressure import ByteBudget
from partisan.transport.inflow import InboundGauge, Inflow
from partisan.transport.keys import KeyStore
from partisan.transport.lanes import OutLane
from partisan.transport.peer import Peer
from partisan.transport.session import Greeting, InboundLane
from partisan.transport.statistics import PeerCounters
from partisan.transport.wire import Kind

if TYPE_CHECKING:
    from partisan.transport.links import LinkHandler

__all__ = ["LinksCore"]


class LinksCore:
    """Shared state of `Links` (created in `Links.__init__`)."""

    config: Config
    name: str
    incarnation: int
    handler: LinkHandler
    hidden: bool
    channels: dict[str, ChannelSpec]
    keystore: KeyStore | None
    _peers: dict[str, Peer]
    _sessions: dict[int, Peer]  # inbound session id -> peer
    _rid_cache: dict[bytes, tuple[Peer, InboundLane]]
    _counters: dict[str, PeerCounters]
    _rejected: Counter[str]
    _refused: int
    _handshakes: int
    _decoded: int
    _credit_due: set[Inflow]
    gauge: InboundGauge
    _credit_timer: bool
    _credit_urgent: bool  # some account's unreported bytes reached _credit_chunk
    _credit_chunk: int
    _names: dict[bytes, tuple[str, str, str]]
    _backoff: dict[tuple[str, str, int], tuple[float, float, str]]
    _templates: dict[tuple[str, str], tuple[bytes, bytes, bytes]]
    _context: zmq.Context[Any] | None
    _router: zmq.Socket[bytes] | None
    _loop: asyncio.AbstractEventLoop | None
    _timer: asyncio.TimerHandle | None
    _router_scheduled: bool
    _paused: bool
    _dirty: dict[OutLane, Peer]
    _synced: set[OutLane]
    _dirty_scheduled: bool
    _closed: bool
    _spec: NodeSpec | None
    _flushed: asyncio.Event

    if TYPE_CHECKING:

        @property
        def spec(self) -> NodeSpec: ...
        def _running(self) -> asyncio.AbstractEventLoop: ...
        # handshake
        def _new_peer(self, name: str, host: str, port: int) -> Peer: ...
        def _greeting(
            self, session: int, *, target: str | None, reply_to: int | None
        ) -> Greeting: ...
        def _open_out(self, peer: Peer, *, reply_to: int | None) -> None: ...
        def _send_hello(self, peer: Peer, lane: OutLane) -> None: ...
        def _router_send(self, frames: list[bytes]) -> bool: ...
        def _maybe_up(self, peer: Peer) -> None: ...
        def _refuse(self, rid: bytes, reason: str, session: int) -> None: ...
        def _handle_hello(self, rid: bytes, header: Any, parts: list[Any]) -> None: ...
        def _handle_welcome(self, peer: Peer, payload: list[Any]) -> None: ...
        def _handle_refuse(self, peer: Peer, payload: list[Any]) -> None: ...
        # detection
        def _teardown(
            self,
            peer: Peer,
            reason: str,
            *,
            notify: bool = True,
            error: BaseException | None = None,
            linger: int = 0,
            tell: bool = True,
        ) -> None: ...
        def _defer_teardown(self, peer: Peer, reason: str) -> None: ...
        def _say_bye(self, peer: Peer, reason: str) -> None: ...
        def _send_bye(self, peer: Peer, reason: str) -> None: ...
        def _send_control(
            self, peer: Peer, kind: Kind, payload: bytes = b"", seq: int = 0
        ) -> bool: ...
        def _down_reason(self, peer: Peer) -> str: ...
        def _backoff_address(self, peer: Peer, reason: str) -> None: ...
        def _housekeeping(self) -> None: ...
        def _on_monitor(self, peer: Peer, lane: OutLane) -> None: ...
        # receive
        def _on_router_readable(self) -> None: ...
        def _on_dealer_readable(self, peer: Peer, lane: OutLane) -> None: ...
        def _schedule_router(self) -> None: ...
        def _recheck_router(self) -> None: ...
        def _mark_dirty(self, peer: Peer, lane: OutLane) -> None: ...
        def _check_dirty(self) -> None: ...
        def _reject(self, reason: str, peer: Peer | None = None, detail: object = None) -> None: ...
        def _send_credits(self, force: bool = False) -> None: ...
        def _release_credits(self) -> None: ...
        # flow (and Links itself)
        def send(
            self,
            peer: str,
            channel: str,
            dest: str,
            payload: object,
            *,
            partition_key: object = None,
            control: bool = False,
            waiting: bool = False,
        ) -> None: ...
        def _take_credit(
            self, peer: Peer, channel: str, credit: int, payload: list[Any]
        ) -> None: ...
        def _wake_all(self, peer: Peer) -> None: ...
        @staticmethod
        def _backlogged(peer: Peer) -> bool: ...
        # outbound
        def _pick_lane(self, peer: Peer, channel: str, key: object) -> OutLane: ...
        def _sendable(self, peer: Peer, lane: OutLane) -> bool: ...
        def _template(self, channel: str, dest: str) -> tuple[bytes, bytes, bytes]: ...
        def _hand_off(
            self,
            peer: Peer,
            lane: OutLane,
            budget: ByteBudget,
            channel: str,
            template: tuple[bytes, bytes, bytes],
            flags: int,
            frames: list[Any],
            size: int,
        ) -> bool: ...
        def _flush(self, peer: Peer, lane: OutLane) -> None: ...
        def _open_lane(self, peer: Peer, channel: str, index: int) -> OutLane: ...
        def _close_lane(self, lane: OutLane, linger: int = 0) -> None: ...
        def _open_default_lanes(self, peer: Peer) -> None: ...

"""The broadcast and relay drivers against a fake transport and a scripted overlay (no sockets)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from partisan.broadcast_service import BROADCAST_DEST, BroadcastStatistics, rmr
from partisan.config import Config
from partisan.errors import NotConnected, Overloaded
from partisan.identity import NodeSpec
from partisan.membership.plumtree import Gossip, Prune
from partisan.membership.types import Action, Event, PeerUp
from partisan.peer_service import PeerService
from partisan.relay import HOLD, RELAY_DEST, Relayed

SELF = NodeSpec("a", "127.0.0.1", 9001, incarnation=1)
B = NodeSpec("b", "127.0.0.1", 9002, incarnation=1)
C = NodeSpec("c", "127.0.0.1", 9003, incarnation=1)
D = NodeSpec("d", "127.0.0.1", 9004, incarnation=1)


class FakeLinks:
    channels = {"default": None, "membership": None, "broadcast": None, "data": None}

    def __init__(self, connected: Sequence[str] = ()) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[str, str, str, Any]] = []
        self.overloaded: set[str] = set()

    async def connect(self, spec: NodeSpec, *, timeout: float) -> NodeSpec:
        self.connected.add(spec.name)
        return spec

    def is_connected(self, name: str) -> bool:
        return name in self.connected

    def send(self, peer: str, channel: str, dest: str, msg: Any, **_: Any) -> None:
        if peer not in self.connected:
            raise NotConnected(peer)
        if peer in self.overloaded:
            raise Overloaded(peer)
        self.sent.append((peer, channel, dest, msg))

    def disconnect(self, peer: str, *, reason: str = "disconnected") -> None:
        self.connected.discard(peer)

    def peers(self) -> list[NodeSpec]:
        return [s for s in (B, C, D) if s.name in self.connected]


class Mailbox:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def put(self, msg: Any) -> None:
        self.got.append(msg)


class FakeRuntime:
    def __init__(self) -> None:
        self.names: dict[str, Mailbox] = {}
        self.drops: collections.Counter[str] = collections.Counter()


class FakeDist:
    def __init__(self, links: FakeLinks) -> None:
        self.links = links
        self.hidden: set[str] = set()
        self.runtime = FakeRuntime()
        self.delivered: list[tuple[str, str, Any]] = []
        self.senders: list[str] = []

    @property
    def up(self) -> dict[str, NodeSpec]:
        return {s.name: s for s in (B, C, D) if s.name in self.links.connected}

    def pinned(self, name: str) -> bool:
        return False

    def park(self, peer: NodeSpec) -> None: ...

    def disconnected(self, name: str, reason: str) -> None: ...

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None: ...

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None: ...

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        self.delivered.append((channel, dest, payload))
        self.senders.append(sender.name)


class Overlay:
    """A manager whose active view is whatever the test says."""

    name = "scripted"

    def __init__(self, *active: NodeSpec) -> None:
        self.view = list(active)

    def start(self, now: float) -> list[Action]:
        return []

    def handle(self, event: Event, now: float) -> list[Action]:
        return []

    def members(self) -> Sequence[NodeSpec]:
        return (SELF, *self.view)

    def active(self) -> Sequence[NodeSpec]:
        return tuple(self.view)

    def passive(self) -> Sequence[NodeSpec]:
        return ()


def run(body: Callable[[PeerService, FakeLinks, FakeDist, Overlay], Any], **config: Any) -> None:
    async def main() -> None:
        links = FakeLinks(connected=("b", "c"))
        dist = FakeDist(links)
        svc = PeerService(Config.load(name="a", insecure=True, env={}, **config), SELF, dist, links)
        overlay = Overlay(B, C)
        svc.manager = overlay
        svc.start()
        try:
            result = body(svc, links, dist, overlay)
            if asyncio.iscoroutine(result):
                await result
        finally:
            svc.close()

    asyncio.run(main())


def payloads(links: FakeLinks, dest: str) -> list[tuple[str, str, Any]]:
    return [(peer, channel, msg) for peer, channel, d, msg in links.sent if d == dest]


@pytest.mark.timeout(10)
def test_broadcast_delivers_here_and_pushes_to_the_overlay_on_its_channel() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        box = dist.runtime.names["rx"] = Mailbox()
        msg_id = svc.broadcasts.broadcast("hello", "rx", "data")
        assert msg_id == ("a", 1, 1)  # node, incarnation, counter: unique cluster-wide
        assert box.got == ["hello"]
        gossip = Gossip(msg_id, ("data", "rx", "hello"), 1)
        assert payloads(links, BROADCAST_DEST) == [("b", "data", gossip), ("c", "data", gossip)]
        with pytest.raises(ValueError, match="unknown channel"):
            svc.broadcasts.broadcast("x", "rx", "nope")
        with pytest.raises(TypeError):
            svc.broadcasts.broadcast("x", ("rx", "b"), "broadcast")  # type: ignore[arg-type]

    run(body)


@pytest.mark.timeout(10)
def test_a_received_broadcast_is_delivered_once_forwarded_and_a_duplicate_pruned() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        box = dist.runtime.names["rx"] = Mailbox()
        gossip = Gossip(("b", 7, 1), ("broadcast", "rx", "m"), 1)
        svc.on_message(B, "broadcast", BROADCAST_DEST, gossip)
        assert box.got == ["m"]
        assert payloads(links, BROADCAST_DEST) == [
            ("c", "broadcast", Gossip(("b", 7, 1), ("broadcast", "rx", "m"), 2))
        ]
        links.sent.clear()
        svc.on_message(C, "broadcast", BROADCAST_DEST, gossip)  # the same id by another path
        assert box.got == ["m"]  # exactly once
        assert payloads(links, BROADCAST_DEST) == [("c", "broadcast", Prune())]
        stats = svc.broadcasts.statistics()
        assert (stats.delivered, stats.delivered_remote, stats.payloads_received) == (1, 1, 2)
        assert rmr([stats]) == 1.0

    run(body)


@pytest.mark.timeout(10)
def test_no_receiver_hidden_senders_and_malformed_payloads_are_counted() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        svc.on_message(
            B, "broadcast", BROADCAST_DEST, Gossip(("b", 7, 1), ("broadcast", "x", 1), 1)
        )
        assert dist.runtime.drops["unknown_name"] == 1
        svc.on_message(B, "broadcast", BROADCAST_DEST, Gossip(("b", 7, 2), "not a triple", 1))
        dist.hidden.add("c")
        svc.on_message(
            C, "broadcast", BROADCAST_DEST, Gossip(("c", 7, 1), ("broadcast", "x", 1), 1)
        )
        stats = svc.broadcasts.statistics()
        assert (stats.no_receiver, stats.dropped, stats.delivered) == (1, 2, 1)

    run(body)


@pytest.mark.timeout(10)
def test_the_layer_follows_the_overlay_and_its_live_links() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, overlay: Overlay) -> None:
        svc.broadcasts.sync()
        assert [s.name for s in svc.broadcasts.neighbors()] == ["b", "c"]
        overlay.view = [B, C, D]  # D in the view, but no link yet: not a neighbour
        svc.handle(PeerUp(D))
        assert [s.name for s in svc.broadcasts.neighbors()] == ["b", "c"]
        links.connected.add("d")
        overlay.view = [C, D]  # B left the view
        svc.handle(PeerUp(D))
        assert [s.name for s in svc.broadcasts.neighbors()] == ["c", "d"]

    run(body)


@pytest.mark.timeout(10)
def test_static_floods_over_its_links() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        assert svc.broadcasts.layer.name == "flood"
        svc.broadcasts.broadcast("m", "rx")
        assert [peer for peer, _, _ in payloads(links, BROADCAST_DEST)] == ["b", "c"]

    run(body, manager="static")


@pytest.mark.timeout(10)
def test_relay_without_neighbours_raises_not_connected() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, overlay: Overlay) -> None:
        overlay.view = []
        with pytest.raises(NotConnected, match="no route"):
            svc.relay.forward("z", "default", "rx", "m", None)

    run(body)


@pytest.mark.timeout(10)
def test_relay_sends_over_the_tree_numbered_per_target() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        ttl = svc.config.relay_ttl - 1
        svc.relay.forward("z", "default", "rx", "m1", None)
        svc.relay.forward("z", "default", "rx", "m2", None)
        svc.relay.forward("y", "default", "rx", "m3", None)
        sent = payloads(links, RELAY_DEST)
        assert [(peer, msg.target, msg.seq, msg.msg, msg.ttl) for peer, _, msg in sent] == [
            ("b", "z", 1, "m1", ttl),
            ("c", "z", 1, "m1", ttl),
            ("b", "z", 2, "m2", ttl),
            ("c", "z", 2, "m2", ttl),
            ("b", "y", 1, "m3", ttl),
            ("c", "y", 1, "m3", ttl),
        ]
        links.overloaded = {"b", "c"}
        with pytest.raises(Overloaded):
            svc.relay.forward("z", "default", "rx", "m4", None)
        links.overloaded = {"b"}
        svc.relay.forward("z", "default", "rx", "m4", None)  # one route is enough
        assert payloads(links, RELAY_DEST)[-1][2].seq == 3  # the refused attempt used no seq

    run(body)


@pytest.mark.timeout(10)
def test_a_hop_hands_over_directly_forwards_on_the_tree_once_and_spends_ttl() -> None:
    def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        to_c = Relayed("o", 5, 1, "c", "default", "rx", "m", 3)
        svc.on_message(B, "default", RELAY_DEST, to_c)  # c is linked here: straight to it
        svc.on_message(B, "default", RELAY_DEST, to_c)  # a copy by another path: dropped
        to_z = Relayed("o", 5, 1, "z", "default", "rx", "m", 3)
        svc.on_message(B, "default", RELAY_DEST, to_z)  # no link to z: the tree, minus b
        expired = Relayed("o", 5, 2, "z", "default", "rx", "m", 0)
        svc.on_message(B, "default", RELAY_DEST, expired)
        assert [(peer, msg.target, msg.ttl) for peer, _, msg in payloads(links, RELAY_DEST)] == [
            ("c", "c", 2),
            ("c", "z", 2),
        ]
        stats = svc.relay.statistics()
        assert (stats.forwarded, stats.duplicates, stats.ttl_expired) == (2, 1, 1)

    run(body)


@pytest.mark.timeout(10)
def test_the_target_delivers_each_origin_in_order_once_and_skips_a_lost_gap() -> None:
    async def body(svc: PeerService, links: FakeLinks, dist: FakeDist, _: Overlay) -> None:
        def hop(seq: int, dest: str = "rx") -> None:
            svc.on_message(
                B, "default", RELAY_DEST, Relayed("o", 5, seq, "a", "default", dest, seq, 3)
            )

        hop(2)
        hop(1)
        hop(1)  # duplicate
        hop(4)
        hop(5, dest="$membership")  # actors and the runtime only
        hop(6, dest="$runtime")  # a runtime envelope: as if the origin sent it over a link
        assert dist.delivered == [("default", "rx", 1), ("default", "rx", 2)]
        assert dist.senders == ["o", "o"]  # the origin, not the hop it came through
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD + 2.0
        while len(dist.delivered) < 4:  # seq 3 never comes: skipped after HOLD
            assert loop.time() < deadline, "the gap was never skipped"
            await asyncio.sleep(0.01)  # ok-sleep: poll interval of a deadline-bound wait
        assert dist.delivered[2:] == [("default", "rx", 4), ("default", "$runtime", 6)]
        assert dist.senders[-1] == "o"
        stats = svc.relay.statistics()
        assert (stats.delivered, stats.duplicates, stats.skipped, stats.dropped) == (4, 1, 1, 1)

    run(body)


def test_rmr_of_no_broadcast_is_zero() -> None:
    assert rmr([]) == 0.0
    zero = BroadcastStatistics("plumtree", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert rmr([zero]) == 0.0

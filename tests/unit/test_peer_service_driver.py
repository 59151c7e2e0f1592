"""PeerService's action rules against a fake transport and a scripted manager (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from partisan.config import Config
from partisan.errors import CallTimeout
from partisan.identity import NodeSpec
from partisan.membership.types import (
    Action,
    CancelTimer,
    Connect,
    Disconnect,
    DisconnectReason,
    Event,
    Leave,
    MembersChanged,
    PeerDown,
    Received,
    Send,
    SetTimer,
    TimerFired,
)
from partisan.peer_service import MEMBERSHIP_DEST, PeerService

SELF = NodeSpec("a", "127.0.0.1", 9001, incarnation=1)
B = NodeSpec("b", "127.0.0.1", 9002, incarnation=1)
C = NodeSpec("c", "127.0.0.1", 9003, incarnation=1)


class FakeLinks:
    def __init__(self, connected: Sequence[str] = (), fail: Sequence[str] = ()) -> None:
        self.connected = set(connected)
        self.fail = set(fail)
        self.log: list[tuple[Any, ...]] = []

    async def connect(self, spec: NodeSpec, *, timeout: float) -> NodeSpec:
        await asyncio.sleep(0)  # ok-sleep: a dial completes on a later loop turn
        if spec.name in self.fail:
            raise CallTimeout("nobody there")
        self.log.append(("connect", spec.name))
        self.connected.add(spec.name)
        return spec

    def is_connected(self, name: str) -> bool:
        return name in self.connected

    def send(self, peer: str, channel: str, dest: str, msg: Any) -> None:
        assert dest == MEMBERSHIP_DEST
        self.log.append(("send", peer, channel, msg))

    def disconnect(self, peer: str, *, reason: str = "disconnected") -> None:
        self.connected.discard(peer)
        self.log.append(("disconnect", peer, reason))

    def peers(self) -> list[NodeSpec]:
        return [s for s in (B, C) if s.name in self.connected]

    def traffic(self, name: str) -> int:
        return 0  # membership messages only


class FakeOnDemand:
    """Records the driver's requests to close a link (the agreement itself is the runtime's)."""

    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.dialled: set[str] = set()

    def request_close(self, peer: NodeSpec) -> None:
        self.log.append(("ask_close", peer.name))

    def closing_agreed(self, name: str) -> bool:
        return False


class FakeDist:
    def __init__(self, pinned: Sequence[str] = ()) -> None:
        self.pinned_names = set(pinned)
        self.hidden: set[str] = set()
        self.log: list[tuple[Any, ...]] = []
        self.on_demand = FakeOnDemand(self.log)

    def pinned(self, name: str) -> bool:
        return name in self.pinned_names

    def park(self, peer: NodeSpec) -> None:
        self.log.append(("park", peer.name))

    def disconnected(self, name: str, reason: str) -> None:
        self.log.append(("nodedown", name, reason))

    def on_peer_down(self, peer: NodeSpec, reason: str) -> None:
        self.log.append(("nodedown", peer.name, reason))

    def on_peer_up(self, peer: NodeSpec, hidden: bool) -> None:
        self.log.append(("nodeup", peer.name))

    def on_message(self, sender: NodeSpec, channel: str, dest: str, payload: object) -> None:
        self.log.append(("runtime", dest, payload))


class Scripted:
    """A manager that answers each event with the next scripted actions, and records events."""

    name = "scripted"

    def __init__(self, script: dict[type, list[Action]] | None = None) -> None:
        self.script = script or {}
        self.events: list[Event] = []

    def start(self, now: float) -> list[Action]:
        return []

    def handle(self, event: Event, now: float) -> list[Action]:
        self.events.append(event)
        if isinstance(event, Received) and event.msg == "boom":
            raise ValueError("malformed")
        return list(self.script.get(type(event), []))

    def members(self) -> Sequence[NodeSpec]:
        return (SELF,)

    def active(self) -> Sequence[NodeSpec]:
        return ()

    def passive(self) -> Sequence[NodeSpec]:
        return ()


def service(links: FakeLinks, dist: FakeDist, manager: Scripted, **config: Any) -> PeerService:
    svc = PeerService(Config.load(name="a", insecure=True, **config), SELF, dist, links)
    svc.manager = manager
    svc.start()
    return svc


async def settle(condition: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)  # ok-sleep: poll interval of a deadline-bound wait


@pytest.mark.timeout(10)
def test_sends_to_an_unconnected_peer_dial_first_keep_order_then_ask_to_close() -> None:
    async def main() -> None:
        links, dist = FakeLinks(), FakeDist()
        manager = Scripted(
            {
                TimerFired: [
                    Send(B, "one"),
                    Send(B, "two"),
                    Disconnect(B, DisconnectReason.VIEW_CHANGE),
                ]
            }
        )
        svc = service(links, dist, manager)
        svc.handle(TimerFired("t"))
        await settle(lambda: ("ask_close", "b") in dist.log)
        assert links.log == [
            ("connect", "b"),
            ("send", "b", "membership", "one"),
            ("send", "b", "membership", "two"),
        ]
        # a view change: the close is agreed with the peer (on_demand.py), no NodeDown
        assert dist.log == [("ask_close", "b")]
        svc.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_view_change_asks_the_peer_and_a_failure_closes_nothing() -> None:
    async def main() -> None:
        links, dist = FakeLinks(connected=["b", "c"]), FakeDist(pinned=["b"])
        manager = Scripted(
            {
                TimerFired: [
                    Disconnect(B, DisconnectReason.VIEW_CHANGE),
                    Disconnect(C, DisconnectReason.FAILED),
                ]
            }
        )
        svc = service(links, dist, manager)
        svc.handle(TimerFired("t"))
        assert links.log == [] and dist.log == [("ask_close", "b")]
        assert links.connected == {"b", "c"}
        svc.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_left_closes_only_for_our_own_leave_and_says_left() -> None:
    async def main() -> None:
        links, dist = FakeLinks(connected=["b", "c"]), FakeDist()
        manager = Scripted(
            {
                Received: [Disconnect(C, DisconnectReason.LEFT)],
                Leave: [Send(B, "bye"), Disconnect(B, DisconnectReason.LEFT)],
            }
        )
        svc = service(links, dist, manager)
        svc.on_message(C, "membership", MEMBERSHIP_DEST, "i leave")
        assert links.log == []  # the leaver closes its own link, after its last Downs
        svc.handle(Leave())
        assert links.log == [("send", "b", "membership", "bye"), ("disconnect", "b", "left")]
        assert dist.log == [("nodedown", "b", "left")]
        svc.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_a_failed_dial_is_reported_as_unreachable() -> None:
    async def main() -> None:
        links, dist = FakeLinks(fail=["c"]), FakeDist()
        manager = Scripted({TimerFired: [Connect(C), Send(C, "hello")]})
        svc = service(links, dist, manager)
        svc.handle(TimerFired("t"))
        await settle(lambda: PeerDown(C, "unreachable") in manager.events)
        assert not any(entry[0] == "send" for entry in links.log)
        assert dist.log == []  # never up: no NodeDown
        svc.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_timers_members_and_bad_messages() -> None:
    async def main() -> None:
        links, dist = FakeLinks(connected=["b"]), FakeDist()
        loop = asyncio.get_running_loop()
        manager = Scripted(
            {
                Received: [
                    SetTimer("keep", loop.time() + 0.01),
                    SetTimer("drop", loop.time() + 0.01),
                    CancelTimer("drop"),
                    MembersChanged((SELF, B)),
                ]
            }
        )
        svc = service(links, dist, manager)
        svc.on_message(B, "membership", MEMBERSHIP_DEST, "gossip")
        assert svc.members() == ["a", "b"]
        await settle(lambda: TimerFired("keep") in manager.events)
        assert TimerFired("drop") not in manager.events
        # A peer's malformed message is counted, and the node carries on.
        svc.on_message(B, "membership", MEMBERSHIP_DEST, "boom")
        assert svc.drops["bad_membership"] == 1
        # Membership frames only on the membership channel; others go to the runtime.
        svc.on_message(B, "default", MEMBERSHIP_DEST, "sneaky")
        svc.on_message(B, "default", "<0.1.2>", "user")
        assert svc.drops["misrouted_membership"] == 1
        assert dist.log == [("runtime", "<0.1.2>", "user")]
        svc.close()

    asyncio.run(main())


@pytest.mark.timeout(10)
def test_peer_closing_a_link_is_a_view_change_even_when_pinned_here() -> None:
    async def main() -> None:
        links, dist = FakeLinks(connected=["b", "c"]), FakeDist(pinned=["c"])
        manager = Scripted()
        svc = service(links, dist, manager)
        svc.on_peer_down(B, "disconnected")
        svc.on_peer_down(C, "disconnected")
        svc.on_peer_down(B, "heartbeat_timeout")
        # (a pinned side dials again from `park`; see tests of on_demand)
        assert dist.log == [
            ("park", "b"),
            ("park", "c"),
            ("nodedown", "b", "heartbeat_timeout"),
        ]
        assert [e for e in manager.events if isinstance(e, PeerDown)] == [
            PeerDown(B, "disconnected"),
            PeerDown(C, "disconnected"),
            PeerDown(B, "heartbeat_timeout"),
        ]
        svc.close()

    asyncio.run(main())

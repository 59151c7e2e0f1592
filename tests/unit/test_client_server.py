"""Client-server manager, h11 style, plus the registry that builds every manager."""

from __future__ import annotations

import random

import pytest

from partisan.config import MANAGERS, Config
from partisan.errors import ConfigError
from partisan.identity import NodeSpec
from partisan.membership.client_server import (
    CLIENT_CLIENT,
    ClientServer,
    ServerList,
    join_refusal,
)
from partisan.membership.registry import MANAGER_CLASSES, create_manager
from partisan.membership.static import JoinRefusal, JoinRequest, LeaveNotice, Refresh
from partisan.membership.types import (
    Connect,
    Disconnect,
    DisconnectReason,
    Join,
    Manager,
    MembersChanged,
    PeerUp,
    Received,
    Send,
)

CONFIG = Config(connection_interval=0.5)
REFUSED = DisconnectReason.REFUSED


def spec(name: str, role: str | None) -> NodeSpec:
    return NodeSpec(name, "127.0.0.1", 9000 + int(name[1:]), role=role, incarnation=1)


S1, S2 = spec("s1", "server"), spec("s2", "server")
C1, C2 = spec("c1", "client"), spec("c2", "client")


def node(me: NodeSpec) -> ClientServer:
    return ClientServer(me, CONFIG, random.Random(1))


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("server", "server", None),
        ("server", "client", None),
        ("client", "server", None),
        (None, None, None),
        (None, "client", None),
        ("client", "client", "client-client join"),
        ("client", "boss", "unknown role 'boss' (expected server or client)"),
    ],
)
def test_join_rules(a: str | None, b: str | None, reason: str | None) -> None:
    assert join_refusal(a, b) == reason


def test_client_client_join_is_refused_locally_when_roles_are_known() -> None:
    c1 = node(C1)
    assert isinstance(c1, Manager)
    assert c1.handle(Join(C2), 0.0) == [Disconnect(C2, REFUSED)]
    assert c1.members() == (C1,)
    assert c1.statistics().refused == 1


def test_client_refuses_a_joining_client_with_a_reason() -> None:
    c2 = node(C2)
    assert c2.handle(Received(C1, JoinRequest()), 0.0) == [
        Send(C1, JoinRefusal(CLIENT_CLIENT)),
        Disconnect(C1, REFUSED),
    ]
    assert c2.handle(Received(C1, Refresh()), 0.0) == [
        Send(C1, JoinRefusal(CLIENT_CLIENT)),
        Disconnect(C1, REFUSED),
    ]
    assert c2.members() == (C2,)


def test_joiner_drops_a_contact_that_refused() -> None:
    unknown_role = NodeSpec("c2", "127.0.0.1", 9002, incarnation=1)  # role not known yet
    c1 = node(C1)
    c1.handle(Join(unknown_role), 0.0)
    assert c1.handle(Received(C2, JoinRefusal(CLIENT_CLIENT)), 0.0) == [
        Disconnect(unknown_role, REFUSED),
        MembersChanged((C1,)),
    ]


def test_server_accepts_a_client_and_sends_its_server_list() -> None:
    s1 = node(S1)
    s1.handle(Received(S2, JoinRequest()), 0.0)
    assert s1.handle(Received(C1, JoinRequest()), 0.0) == [
        Connect(C1),
        Send(C1, ServerList((S1, S2))),
        MembersChanged((C1, S1, S2)),
    ]


def test_client_joins_every_server_it_is_told_about() -> None:
    c1 = node(C1)
    c1.handle(Join(S1), 0.0)
    assert c1.handle(Received(S1, ServerList((S1, S2, C2))), 0.0) == [
        Connect(S2),
        Send(S2, JoinRequest()),
        MembersChanged((C1, S1, S2)),
    ]
    assert c1.servers() == (S1, S2)
    assert c1.handle(Received(S1, ServerList((S1, S2))), 0.0) == []


def test_server_list_from_a_non_member_is_ignored_and_garbage_is_rejected() -> None:
    c1 = node(C1)
    assert c1.handle(Received(S1, ServerList((S2,))), 0.0) == []
    c1.handle(Join(S1), 0.0)
    assert c1.handle(Received(S1, ServerList(["s2"])), 0.0) == []  # type: ignore[arg-type]
    assert c1.statistics().rejected == 1
    assert c1.members() == (C1, S1)


def test_server_announces_a_new_server_to_every_member() -> None:
    s1 = node(S1)
    s1.handle(Received(C1, JoinRequest()), 0.0)
    assert s1.handle(Received(S2, JoinRequest()), 0.0) == [
        Connect(S2),
        Send(S2, ServerList((S1, S2))),
        MembersChanged((C1, S1, S2)),
        Send(C1, ServerList((S1, S2))),
    ]
    # A removal is not announced: only growth of the server set is.
    assert s1.handle(Received(S2, LeaveNotice()), 0.0)[-1] == MembersChanged((C1, S1))


def test_server_resends_its_list_on_every_reconnection() -> None:
    s1 = node(S1)
    s1.handle(Received(C1, JoinRequest()), 0.0)
    assert s1.handle(PeerUp(C1), 0.0) == [Send(C1, Refresh()), Send(C1, ServerList((S1,)))]
    c1 = node(C1)
    c1.handle(Join(S1), 0.0)
    assert c1.handle(PeerUp(S1), 0.0) == [Send(S1, Refresh())]


def test_client_follows_a_restarted_server_to_its_new_incarnation() -> None:
    c1 = node(C1)
    c1.handle(Join(S1), 0.0)
    c1.handle(Received(S1, ServerList((S1, S2))), 0.0)
    s2_new = NodeSpec("s2", "127.0.0.1", 9102, role="server", incarnation=2)
    assert c1.handle(Received(S1, ServerList((S1, s2_new))), 0.0) == [
        Connect(s2_new),
        Send(s2_new, JoinRequest()),
        MembersChanged((C1, S1, s2_new)),
    ]
    assert c1.handle(Received(S1, ServerList((S1, S2))), 0.0) == []  # stale list


def test_client_accepting_a_server_sends_no_list() -> None:
    c1 = node(C1)
    assert c1.handle(Received(S1, JoinRequest()), 0.0) == [Connect(S1), MembersChanged((C1, S1))]


def test_star_members_after_joins() -> None:
    """Partisan test 29: 2 servers + 2 clients; servers see all, clients see servers + self."""
    nodes = {s.name: node(s) for s in (S1, S2, C1, C2)}
    inbox: list[tuple[NodeSpec, NodeSpec, object]] = []

    def run(sender: NodeSpec, actions: list[object]) -> None:
        for act in actions:
            if isinstance(act, Send):
                inbox.append((sender, act.peer, act.msg))

    run(S2, list(nodes["s2"].handle(Join(S1), 0.0)))
    run(C1, list(nodes["c1"].handle(Join(S1), 0.0)))
    run(C2, list(nodes["c2"].handle(Join(S2), 0.0)))
    while inbox:
        sender, dest, msg = inbox.pop(0)
        run(dest, list(nodes[dest.name].handle(Received(sender, msg), 0.0)))
    every = (C1, C2, S1, S2)
    assert nodes["s1"].members() == every and nodes["s2"].members() == every
    assert nodes["c1"].members() == (C1, S1, S2)
    assert nodes["c2"].members() == (C2, S1, S2)


def test_registry_builds_every_manager_by_name() -> None:
    assert set(MANAGER_CLASSES) == set(MANAGERS)
    for name in MANAGERS:
        manager = create_manager(name, S1, CONFIG, random.Random(0))
        assert isinstance(manager, Manager) and manager.name == name
    with pytest.raises(ConfigError, match=r"'ring'.*full-mesh, hyparview"):
        create_manager("ring", S1, CONFIG, random.Random(0))

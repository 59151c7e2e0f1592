"""The peer service: real node processes drive their membership manager over CURVE links.

Each node is `partisan.testing.membernode` (a full `Node`). Waits are
conditions with deadlines derived from the intervals configured here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, wait_until
from partisan.testing.process import NodeProcessError

HEARTBEAT = 0.1
TIMEOUT = 0.5  # heartbeat_timeout
INTERVAL = 0.2  # gossip_interval = connection_interval
HANDSHAKE = 1.0
SETTINGS = {
    "heartbeat_interval": HEARTBEAT,
    "heartbeat_timeout": TIMEOUT,
    "gossip_interval": INTERVAL,
    "connection_interval": INTERVAL,
    "handshake_timeout": HANDSHAKE,
}
#: A view settles within a few rounds; failure detection adds heartbeat_timeout.
SETTLE = 20 * INTERVAL + TIMEOUT + HANDSHAKE + 3.0


@pytest.fixture
def member_factory() -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(name: str, keys: Path, *args: str, env: dict[str, str] | None = None) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
        for field, value in SETTINGS.items():
            argv += ["--set", f"{field}={value}"]
        node = NodeProcess([*argv, *args], env={**os.environ, **(env or {})})
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


def view(node: NodeProcess) -> dict[str, Any]:
    return node.request("view")


def downs(node: NodeProcess) -> list[dict[str, Any]]:
    return [e for e in node.request("events")["events"] if e["event"] == "down"]


@pytest.mark.timeout(60)
def test_full_mesh_join_one_connects_all_crash_stays_member_leave_removes(
    member_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("n1", "n2", "n3", "n4")
    n1 = member_factory("n1", keys, "--manager", "full-mesh")
    others = [
        member_factory(name, keys, "--manager", "full-mesh", "--join", str(n1.spec))
        for name in ("n2", "n3", "n4")
    ]
    nodes = [n1, *others]
    names = sorted(n.name for n in nodes)

    def meshed() -> bool:
        views = [view(n) for n in nodes]
        return all(
            v["members"] == names and v["nodes"] == [x for x in names if x != n.name]
            for n, v in zip(nodes, views, strict=True)
        )

    wait_until(meshed, SETTLE, message=lambda: str([view(n) for n in nodes]))

    n4 = others[-1]
    n4.kill()  # kill -9
    survivors = nodes[:3]
    wait_until(
        lambda: all("n4" not in view(n)["nodes"] for n in survivors),
        TIMEOUT + 2 * HEARTBEAT + 2.0,
        message="survivors to notice n4 died",
    )
    # It stays a member, re-dialled every connection_interval; NodeDown fired once.
    wait_until(
        lambda: all(view(n)["members"] == names for n in survivors), 1.0, message="still members"
    )
    for n in survivors:
        wait_until(lambda n=n: downs(n), 2.0, message=f"{n.name} to see n4 down")
    # Several re-dial rounds later, still exactly one NodeDown per survivor.
    before = n1.request("events")["events"]
    wait_until(
        lambda: len(n1.request("events")["events"]) == len(before) and view(n1)["members"] == names,
        1.0,
    )
    for n in survivors:
        assert [d["node"] for d in downs(n)] == ["n4"], downs(n)

    # A leave (of the dead member, by anyone) removes it everywhere.
    n2 = others[0]
    n2.request("leave", node="n4")
    wait_until(
        lambda: all(view(n)["members"] == ["n1", "n2", "n3"] for n in survivors),
        SETTLE,
        message=lambda: str([view(n) for n in survivors]),
    )
    # A live node's leave removes it everywhere too, and it is reported as "left".
    n2.request("leave")
    wait_until(
        lambda: all(view(n)["members"] == ["n1", "n3"] for n in (n1, nodes[2])),
        SETTLE,
        message=lambda: str([view(n) for n in (n1, nodes[2])]),
    )
    assert view(n2)["members"] == ["n2"]
    wait_until(lambda: any(d["node"] == "n2" for d in downs(n1)), SETTLE)
    assert [d["reason"] for d in downs(n1) if d["node"] == "n2"] == ["left"]


HPV_ENV = {
    "PARTISAN_HYPARVIEW__ACTIVE_SIZE": "2",
    "PARTISAN_HYPARVIEW__ACTIVE_MIN_SIZE": "1",
    "PARTISAN_HYPARVIEW__PASSIVE_SIZE": "4",
    "PARTISAN_HYPARVIEW__SHUFFLE_INTERVAL": "0.5",
    "PARTISAN_HYPARVIEW__RANDOM_PROMOTION_INTERVAL": str(INTERVAL),
}


def _overlay_ok(nodes: list[NodeProcess]) -> bool:
    """Active views symmetric, connected, linked by live links; members = active + self."""
    views = {n.name: view(n) for n in nodes}
    for name, v in views.items():
        if not v["active"] or v["members"] != sorted([*v["active"], name]):
            return False
        if not set(v["active"]) <= set(v["nodes"]):
            return False
        for peer in v["active"]:
            if peer not in views or name not in views[peer]["active"]:
                return False
    seen, todo = set(), [next(iter(views))]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(views[name]["active"])
    return seen == set(views)


@pytest.mark.timeout(60)
def test_hyparview_views_drive_links_without_false_node_downs_and_repair_a_crash(
    member_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    names = [f"h{i}" for i in range(1, 7)]
    keys = key_dir(*names)
    first = member_factory(names[0], keys, "--manager", "hyparview", env=HPV_ENV)
    nodes = [first]
    for name in names[1:]:
        contact = nodes[len(nodes) // 2]  # not everyone through one node
        nodes.append(
            member_factory(
                name, keys, "--manager", "hyparview", "--join", str(contact.spec), env=HPV_ENV
            )
        )
    wait_until(lambda: _overlay_ok(nodes), SETTLE, message=lambda: str([view(n) for n in nodes]))
    # Six nodes with active views of two: joins evicted healthy peers to passive
    # views, and nobody reported a NodeDown for them.
    assert any(view(n)["passive"] for n in nodes)
    for n in nodes:
        assert downs(n) == [], (n.name, downs(n))

    victim = next(n for n in nodes if n is not first)
    neighbours = view(victim)["active"]
    victim.kill()
    survivors = [n for n in nodes if n is not victim]
    wait_until(
        lambda: (
            _overlay_ok(survivors) and all(victim.name not in view(n)["members"] for n in survivors)
        ),
        SETTLE,
        message=lambda: str([view(n) for n in survivors]),
    )
    # The crash is a failure: its active neighbours saw exactly one NodeDown each.
    for n in survivors:
        if n.name in neighbours:
            assert [d["node"] for d in downs(n)] == [victim.name], (n.name, downs(n))


@pytest.mark.timeout(60)
def test_static_and_client_server_members(
    member_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("a", "b", "c", "s1", "s2", "c1", "c2")
    # Static: exactly who was joined, symmetric, never forwarded.
    a = member_factory("a", keys, "--manager", "static")
    b = member_factory("b", keys, "--manager", "static", "--join", str(a.spec))
    c = member_factory("c", keys, "--manager", "static", "--join", str(b.spec))
    wait_until(
        lambda: (
            view(a)["members"] == ["a", "b"]
            and view(b)["members"] == ["a", "b", "c"]
            and view(c)["members"] == ["b", "c"]
        ),
        SETTLE,
        message=lambda: str([view(n) for n in (a, b, c)]),
    )
    # Client-server: a client joins one server and ends up with every server.
    s1 = member_factory("s1", keys, "--manager", "client-server", "--role", "server")
    s2 = member_factory(
        "s2", keys, "--manager", "client-server", "--role", "server", "--join", str(s1.spec)
    )
    c1 = member_factory(
        "c1", keys, "--manager", "client-server", "--role", "client", "--join", str(s2.spec)
    )
    c2 = member_factory(
        "c2", keys, "--manager", "client-server", "--role", "client", "--join", str(s1.spec)
    )
    everyone = ["c1", "c2", "s1", "s2"]
    wait_until(
        lambda: (
            view(c1)["members"] == ["c1", "s1", "s2"]
            and view(c2)["members"] == ["c2", "s1", "s2"]
            and view(s1)["members"] == everyone
            and view(s2)["members"] == everyone
        ),
        SETTLE,
        message=lambda: str([view(n) for n in (s1, s2, c1, c2)]),
    )
    assert view(c1)["nodes"] == ["s1", "s2"]
    with pytest.raises(NodeProcessError, match=r"JoinRefused.*client-client"):
        c1.request("join", target=str(c2.spec))

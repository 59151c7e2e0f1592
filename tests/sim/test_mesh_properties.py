"""Property tests: full-mesh, client-server and static managers over the simulator.

Hypothesis draws random schedules of join, leave, remove, crash, restart,
partition and heal; the simulator (seeded, virtual time) runs the real manager
classes. Invariants are checked after every step; convergence after a healing
quiescence period derived from the config under test. Hypothesis prints a
failing schedule and its seed; pinned ones are the ``@example``s and the
``test_regression_*`` tests below.

Full mesh scenarios keep one anchor node, n1, that never crashes or leaves and
through which every join goes: then "every live member converges to the same
view" has no exception. Removed incarnations are recorded so that the test can
check that they never come back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.client_server import ClientServer, role_of
from partisan.membership.full_mesh import FullMesh
from partisan.membership.sim import LinkModel, Simulator
from partisan.membership.static import DirectPeers
from partisan.membership.types import PeerUp

#: 1 in `make test` (derandomized: the same examples every run); `make test-props`
#: sets it (randomized, that many times the examples; see tests/conftest.py).
SCALE = max(1, int(os.environ.get("PROPS_SCALE") or 0))

pytestmark = pytest.mark.timeout(120 * SCALE)

CONFIG = Config(gossip_interval=1.0, connection_interval=0.5)
#: After healing: a few gossip and re-dial rounds (delays are milliseconds).
SETTLE = 4 * CONFIG.gossip_interval + 4 * CONFIG.connection_interval
STEP = 0.05  # virtual time between scheduled operations

PROPERTY = settings(
    max_examples=100 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Op = tuple[str, int, int]

N = 6
ops = st.lists(
    st.tuples(
        st.sampled_from(["crash", "restart", "leave", "remove", "partition", "heal", "run", "run"]),
        st.integers(2, N),
        st.integers(1, (1 << N) - 1),
    ),
    max_size=14,
)


# ---------------------------------------------------------------- helpers


def names(specs: Sequence[NodeSpec]) -> list[str]:
    return [s.name for s in specs]


def check_view(sim: Simulator, name: str) -> None:
    """Self once, at its current incarnation; no name twice; sorted by name."""
    manager = sim.manager(name)
    members = list(manager.members())
    got = names(members)
    assert got == sorted(set(got)), f"{name}: duplicate or unsorted names {got}"
    mine = [s for s in members if s.name == name]
    assert mine == [sim.spec(name)], f"{name}: self appears as {mine}"
    assert name not in names(manager.active()), f"{name}: self in its active view"


def is_member(sim: Simulator, name: str) -> bool:
    """Alive and not left (a removed node stays alive in the `left` state)."""
    return sim.is_alive(name) and not getattr(sim.manager(name), "left", False)


@dataclass
class MeshRun:
    """A full-mesh schedule and the facts it produced."""

    sim: Simulator
    removed: set[tuple[str, int]] = field(default_factory=set)  # incarnations removed
    durable: set[tuple[str, int]] = field(default_factory=set)  # ... removals n1 saw
    # Per observer incarnation: removed incarnations it listed, and those it dropped.
    listed: dict[tuple[str, int], set[tuple[str, int]]] = field(default_factory=dict)
    vanished: dict[tuple[str, int], set[tuple[str, int]]] = field(default_factory=dict)

    def check(self) -> None:
        sim = self.sim
        for name in sim.live_names():
            check_view(sim, name)
            observer = (name, sim.spec(name).incarnation)
            view = {(s.name, s.incarnation) for s in sim.manager(name).members()}
            gone = self.vanished.setdefault(observer, set())
            back = gone & view
            assert not back, f"{name}: removed incarnations came back: {sorted(back)}"
            listed = self.listed.setdefault(observer, set())
            listed |= view
            gone |= (listed & self.removed) - view


def mesh_schedule(schedule: list[Op], seed: int, link: LinkModel | None = None) -> MeshRun:
    """Run `schedule` (over `link` if given, e.g. lossy); settle on a clean network."""
    sim = Simulator(seed, manager="full-mesh", config=CONFIG)
    run = MeshRun(sim)
    for _ in range(N):
        sim.add_node()
    for k in range(2, N + 1):
        sim.join(f"n{k}", "n1")
    sim.run_for(SETTLE)
    run.check()
    if link is not None:
        sim.link = link
    for kind, k, mask in schedule:
        name = f"n{k}"
        if kind == "crash" and sim.is_alive(name):
            sim.crash(name)
        elif kind == "restart":
            sim.restart(name, join="n1")
        elif kind == "leave" and is_member(sim, name):
            was = sim.spec(name)
            reaches_anchor = sim.reachable(name, "n1") and "n1" in names(
                sim.manager(name).members()
            )
            sim.leave(name)
            run.removed.add((was.name, was.incarnation))
            if reaches_anchor and link is None:  # a lossy link may eat the farewell
                run.durable.add((was.name, was.incarnation))
        elif kind == "remove" and is_member(sim, name):
            target = f"n{(mask % (N - 1)) + 2}"
            if target != name:
                seen = next((s for s in sim.manager(name).members() if s.name == target), None)
                sim.leave(name, seen or sim.spec(target))
                if seen is not None:
                    run.removed.add((seen.name, seen.incarnation))
                    if (
                        link is None
                        and sim.reachable(name, "n1")
                        and "n1" in names(sim.manager(name).members())
                    ):
                        run.durable.add((seen.name, seen.incarnation))
        elif kind == "partition":
            side = [f"n{i + 1}" for i in range(N) if mask >> i & 1]
            sim.partition(side, [f"n{i + 1}" for i in range(N) if not mask >> i & 1])
        elif kind == "heal":
            sim.heal()
        elif kind == "run":
            sim.run_for(mask % 7 * 0.3)
        sim.run_for(STEP)
        run.check()
    sim.heal()
    sim.link = LinkModel()
    sim.run_for(SETTLE)
    run.check()
    return run


def check_mesh_converged(run: MeshRun) -> None:
    sim = run.sim
    live = [n for n in sim.live_names() if is_member(sim, n)]
    assert "n1" in live
    views = {n: tuple(sim.manager(n).members()) for n in live}
    anchor = views["n1"]
    for n, view in views.items():
        assert view == anchor, f"views differ after quiescence: n1={anchor} {n}={view}"
    for n in live:
        assert sim.spec(n) in anchor, f"live member {n} missing from the converged view"
    incarnations = {(s.name, s.incarnation) for s in anchor}
    assert not incarnations & run.durable, "a left node is still a member"


# ---------------------------------------------------------------- full mesh


@PROPERTY
@given(schedule=ops, seed=st.integers(0, 2**16))
@example(  # leave and remove under a partition, then heal: #191 territory
    schedule=[("partition", 2, 0b000111), ("remove", 2, 1), ("leave", 4, 0), ("heal", 2, 0)],
    seed=7,
)
@example(  # found: an observer restarted after a leave must not count it as dropped
    schedule=[
        ("crash", 2, 1),
        ("crash", 3, 1),
        ("crash", 4, 1),
        ("partition", 2, 1),
        ("restart", 5, 1),
        ("leave", 6, 1),
    ],
    seed=0,
)
@example(  # a node crashes, another removes it, it restarts and re-joins
    schedule=[("crash", 3, 0), ("remove", 2, 1), ("restart", 3, 0), ("run", 2, 6)],
    seed=3,
)
def test_full_mesh_converges_and_left_nodes_never_return(schedule: list[Op], seed: int) -> None:
    run = mesh_schedule(schedule, seed)
    check_mesh_converged(run)


@settings(PROPERTY, max_examples=25 * SCALE)
@given(
    schedule=ops,
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
)
def test_full_mesh_converges_despite_loss_and_duplication(
    schedule: list[Op], seed: int, loss: float, duplicate: float
) -> None:
    run = mesh_schedule(schedule, seed, LinkModel(loss=loss, duplicate=duplicate))
    check_mesh_converged(run)


def test_regression_full_mesh_restart_during_partition() -> None:
    """Pinned: a restart whose join waits behind a partition still converges."""
    schedule: list[Op] = [
        ("partition", 2, 0b111110),
        ("crash", 4, 0),
        ("restart", 4, 0),
        ("leave", 5, 0),
        ("heal", 2, 0),
    ]
    run = mesh_schedule(schedule, seed=11)
    check_mesh_converged(run)
    assert ("n5", 1) in run.removed and ("n5", 1) not in run.durable
    assert sim_members(run.sim, "n1") >= {"n1", "n2", "n3", "n4", "n6"}


def sim_members(sim: Simulator, name: str) -> set[str]:
    return set(names(sim.manager(name).members()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_mesh_same_seed_same_views(seed: int) -> None:
    schedule: list[Op] = [("crash", 2, 0), ("remove", 3, 0), ("restart", 2, 0), ("run", 4, 5)]
    a, b = mesh_schedule(schedule, seed), mesh_schedule(schedule, seed)
    assert a.sim.events == b.sim.events
    for n in a.sim.live_names():
        assert a.sim.manager(n).members() == b.sim.manager(n).members()


def test_full_mesh_thirty_nodes_converge_through_one_contact() -> None:
    sim = Simulator(5, manager="full-mesh", config=CONFIG)
    for _ in range(30):
        sim.add_node()
    for k in range(2, 31):
        sim.join(f"n{k}", "n1")
    everyone = set(sim.live_names())
    assert sim.run_until(
        lambda: all(sim_members(sim, n) == everyone for n in everyone), max_time=SETTLE
    )
    first_round = sim.now
    assert first_round < CONFIG.gossip_interval, "join gossip is immediate, not periodic"
    for n in everyone:
        assert isinstance(sim.manager(n), FullMesh)
        assert {p.name for p in sim.manager(n).active()} == everyone - {n}


# ------------------------------------------------------------ client-server

cs_ops = st.lists(
    st.tuples(st.sampled_from(["crash", "restart", "partition", "heal", "run"]),
              st.integers(1, 7), st.integers(1, 127)),
    max_size=10,
)  # fmt: skip


def cs_cluster(seed: int, servers: int, clients: int) -> Simulator:
    sim = Simulator(seed, manager="client-server", config=CONFIG)
    for k in range(servers + clients):
        sim.add_node(role="server" if k < servers else "client")
    # Each node joins one server only; the server list does the rest.
    for k in range(2, servers + clients + 1):
        sim.join(f"n{k}", "n1")
    return sim


def redial_restarted(sim: Simulator) -> None:
    """Do what a real driver does when a re-dial reaches a newer incarnation.

    Dialling an old incarnation's address reaches the restarted node, whose
    HELLO announces its new spec: the driver reports ``PeerUp(new spec)``
    (docs/membership.md, driver obligation 3). The simulator only reports
    ``PeerDown(old, "restarted")``, so the test supplies the ``PeerUp``.
    """
    for name in sim.live_names():
        for member in sim.manager(name).active():
            if sim.is_alive(member.name) and sim.spec(member.name).newer_than(member):
                sim.feed(name, PeerUp(sim.spec(member.name)))


def check_star(sim: Simulator, servers: int) -> None:
    live = sim.live_names()
    server_names = {f"n{k}" for k in range(1, servers + 1)}
    for n in live:
        check_view(sim, n)
        manager = sim.manager(n)
        assert isinstance(manager, ClientServer)
        view = set(names(manager.members()))
        if n in server_names:
            assert view >= set(live), f"server {n} misses {set(live) - view}"
        else:
            assert view == server_names | {n}, f"client {n} sees {view}"
            assert all(role_of(s) == "server" for s in manager.active())


@PROPERTY
@given(schedule=cs_ops, seed=st.integers(0, 2**16))
@example(schedule=[], seed=0)  # found: a client missed a server that joined n1 after it
@example(schedule=[("partition", 1, 1), ("restart", 3, 1)], seed=133)  # found: lost JoinRequest
@example(schedule=[("restart", 1, 1)], seed=0)  # found: clients kept the server's old incarnation
@example(schedule=[("crash", 2, 1), ("restart", 1, 1), ("restart", 2, 1)], seed=0)  # found
def test_client_server_star_invariants(schedule: list[Op], seed: int) -> None:
    servers, clients = 2, 5
    sim = cs_cluster(seed, servers, clients)
    sim.run_for(SETTLE)
    check_star(sim, servers)
    for kind, k, mask in schedule:
        name = f"n{k}"
        if kind == "crash" and sim.is_alive(name):
            sim.crash(name)
        elif kind == "restart":
            # A restarted node re-joins a server, as `cluster up --restart` does.
            contact = "n1" if name != "n1" else "n2"
            sim.restart(name, join=contact if sim.is_alive(contact) else None)
        elif kind == "partition":
            side = [f"n{i + 1}" for i in range(7) if mask >> i & 1]
            sim.partition(side, [f"n{i + 1}" for i in range(7) if not mask >> i & 1])
        elif kind == "heal":
            sim.heal()
        elif kind == "run":
            sim.run_for(mask % 5 * 0.3)
        sim.run_for(STEP)
        for n in sim.live_names():
            check_view(sim, n)
            manager = sim.manager(n)
            if role_of(manager.members()[0]) and n not in ("n1", "n2"):
                assert all(role_of(s) == "server" for s in manager.active()), n
    # Quiescence: every node reachable again; a client that lost every server
    # (both restarted without it) joins one again, as the CLI's restart does.
    sim.heal()
    redial_restarted(sim)
    for n in sim.live_names():
        if n not in ("n1", "n2") and not ({"n1", "n2"} & sim_members(sim, n) - {n}):
            sim.join(n, "n1" if sim.is_alive("n1") else "n2")
    sim.run_for(SETTLE)
    if sim.is_alive("n1") and sim.is_alive("n2"):
        check_star(sim, servers)


def test_client_client_join_is_refused_in_the_simulator() -> None:
    sim = cs_cluster(1, 1, 2)
    sim.run_for(SETTLE)
    sim.join("n3", "n2")  # both clients: refused locally, nothing changes
    sim.feed("n2", _received(sim, "n3"))  # and refused by the contact too
    sim.run_for(SETTLE)
    assert sim_members(sim, "n2") == {"n1", "n2"}
    assert sim_members(sim, "n3") == {"n1", "n3"}
    assert sim.manager("n3").statistics().refused >= 1  # type: ignore[attr-defined]
    assert sim.manager("n2").statistics().refused == 1  # type: ignore[attr-defined]


def _received(sim: Simulator, sender: str) -> object:
    from partisan.membership.static import JoinRequest
    from partisan.membership.types import Received

    return Received(sim.spec(sender), JoinRequest())


# ------------------------------------------------------------------ static

edges = st.lists(
    st.tuples(st.integers(1, 6), st.integers(1, 6)).filter(lambda e: e[0] != e[1]),
    min_size=1,
    max_size=10,
)


static_ops = st.lists(
    st.tuples(st.sampled_from(["crash", "leave", "remove"]), st.integers(1, 6), st.integers(1, 6)),
    max_size=4,
)


@PROPERTY
@given(joins=edges, faults=static_ops, seed=st.integers(0, 2**16))
@example(joins=[(1, 2), (2, 3)], faults=[("remove", 2, 1), ("leave", 3, 1)], seed=0)
def test_static_members_are_exactly_the_joined_peers(
    joins: list[tuple[int, int]], faults: list[Op], seed: int
) -> None:
    sim = Simulator(seed, manager="static", config=CONFIG)
    for _ in range(6):
        sim.add_node()
    expected: dict[str, set[str]] = {f"n{k}": {f"n{k}"} for k in range(1, 7)}
    for a, b in joins:
        sim.join(f"n{a}", f"n{b}")
        expected[f"n{a}"].add(f"n{b}")
        expected[f"n{b}"].add(f"n{a}")
        sim.run_for(STEP)
    sim.run_for(SETTLE)
    for n in sim.live_names():
        check_view(sim, n)
        assert sim_members(sim, n) == expected[n], n
    # A crashed peer stays a member and is re-dialled; a leave or a removal
    # is symmetric; nothing is gossiped, so no one else changes.
    for kind, i, j in faults:
        a, b = f"n{i}", f"n{j}"
        if not sim.is_alive(a):
            continue
        if kind == "crash":
            sim.crash(a)
        elif kind == "leave":
            sim.leave(a)
            for peer in expected[a] - {a}:
                expected[peer].discard(a)
            expected[a] = {a}
        elif kind == "remove" and a != b:
            sim.leave(a, sim.spec(b))
            if b in expected[a]:
                expected[a].discard(b)
                if sim.is_alive(b):  # a dead peer never reads the notice
                    expected[b].discard(a)
        sim.run_for(STEP)
    sim.run_for(SETTLE)
    for n in sim.live_names():
        check_view(sim, n)
        assert sim_members(sim, n) == expected[n], n
        assert isinstance(sim.manager(n), DirectPeers)

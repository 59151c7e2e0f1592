"""`ClusterPlan` and its pure rules: names, roles, static links, start waves, contacts.

The properties are checked exhaustively for n in 1..40 under every manager
and topology (cheap: no I/O), and with hypothesis where the input space is
larger (who is up, JSON round trips, invalid values).
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partisan.cluster.plan import (
    MANAGERS,
    RESTART_POLICIES,
    TOPOLOGIES,
    ClusterPlan,
    configured_links,
    contacts,
    node_names,
    role_of,
    start_waves,
    wave_of,
)

pytestmark = pytest.mark.timeout(60)

SIZES = range(1, 41)
#: Every (manager, topology) pair that gives a different plan shape; topology
#: only matters under static, but the other managers must ignore it.
SHAPES = [(m, t) for m in MANAGERS for t in TOPOLOGIES]


def idx(name: str) -> int:
    return int(name[1:])


def plans_st() -> st.SearchStrategy[ClusterPlan]:
    @st.composite
    def build(draw: st.DrawFn) -> ClusterPlan:
        n = draw(st.integers(1, 40))
        manager = draw(st.sampled_from(MANAGERS))
        servers = draw(st.none() | st.integers(1, n))
        return ClusterPlan(
            n=n, manager=manager, servers=servers, topology=draw(st.sampled_from(TOPOLOGIES))
        )

    return build()


# ------------------------------------------------------------------ names, roles


@pytest.mark.parametrize("n", [1, 2, 9, 10, 11, 40])
def test_node_names_are_n1_to_nN_in_order(n: int) -> None:
    assert node_names(ClusterPlan(n=n)) == [f"n{i}" for i in range(1, n + 1)]


@pytest.mark.parametrize(("n", "expected"), [(1, 1), (2, 2), (3, 2), (10, 2)])
def test_client_server_defaults_to_min_2_n_servers(n: int, expected: int) -> None:
    plan = ClusterPlan(n=n, manager="client-server")
    assert plan.server_count == expected
    roles = [role_of(plan, name) for name in node_names(plan)]
    assert roles == ["server"] * expected + ["client"] * (n - expected)


def test_explicit_servers_are_the_first_k_nodes() -> None:
    plan = ClusterPlan(n=5, manager="client-server", servers=3)
    assert plan.server_count == 3
    assert [role_of(plan, x) for x in node_names(plan)] == ["server"] * 3 + ["client"] * 2


@pytest.mark.parametrize("manager", ["full-mesh", "hyparview", "static"])
def test_no_roles_and_no_servers_outside_client_server(manager: str) -> None:
    plan = ClusterPlan(n=4, manager=manager, servers=2)
    assert plan.server_count == 0
    assert all(role_of(plan, x) is None for x in node_names(plan))


def test_defaults() -> None:
    plan = ClusterPlan(n=3)
    assert plan.manager == "hyparview"
    assert plan.topology == "ring"
    assert plan.restart == "on-failure"
    assert plan.max_restarts == 5
    assert plan.servers is None


# ----------------------------------------------------------------- static links


def test_ring_links() -> None:
    plan = ClusterPlan(n=4, manager="static", topology="ring")
    assert configured_links(plan) == [("n1", "n2"), ("n1", "n4"), ("n2", "n3"), ("n3", "n4")]


def test_star_links() -> None:
    plan = ClusterPlan(n=4, manager="static", topology="star")
    assert configured_links(plan) == [("n1", "n2"), ("n1", "n3"), ("n1", "n4")]


def test_full_links() -> None:
    plan = ClusterPlan(n=4, manager="static", topology="full")
    assert configured_links(plan) == list(itertools.combinations(["n1", "n2", "n3", "n4"], 2))


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_small_static_clusters_have_no_self_or_duplicate_links(topology: str) -> None:
    assert configured_links(ClusterPlan(n=1, manager="static", topology=topology)) == []
    two = ClusterPlan(n=2, manager="static", topology=topology)
    assert configured_links(two) == [("n1", "n2")]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_static_link_counts_and_shape(topology: str) -> None:
    for n in SIZES:
        links = configured_links(ClusterPlan(n=n, manager="static", topology=topology))
        expected = {
            "ring": n if n >= 3 else n - 1,
            "star": n - 1,
            "full": n * (n - 1) // 2,
        }[topology]
        assert len(links) == expected, n
        assert len(set(links)) == len(links)
        names = set(node_names(ClusterPlan(n=n)))
        for a, b in links:
            assert a in names and b in names
            assert idx(a) < idx(b)  # sorted pair, never a self link
        assert links == sorted(links, key=lambda p: (idx(p[0]), idx(p[1])))


@pytest.mark.parametrize("manager", ["full-mesh", "hyparview", "client-server"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_only_static_has_configured_links(manager: str, topology: str) -> None:
    assert configured_links(ClusterPlan(n=5, manager=manager, topology=topology)) == []


# ------------------------------------------------------------------ start waves


@pytest.mark.parametrize("manager", ["full-mesh", "hyparview"])
def test_gossip_managers_start_n1_then_everyone(manager: str) -> None:
    assert start_waves(ClusterPlan(n=1, manager=manager)) == [["n1"]]
    assert start_waves(ClusterPlan(n=4, manager=manager)) == [["n1"], ["n2", "n3", "n4"]]


def test_client_server_starts_n1_then_servers_then_clients() -> None:
    plan = ClusterPlan(n=6, manager="client-server", servers=3)
    assert start_waves(plan) == [["n1"], ["n2", "n3"], ["n4", "n5", "n6"]]
    assert start_waves(ClusterPlan(n=3, manager="client-server", servers=1)) == [
        ["n1"],
        ["n2", "n3"],
    ]
    assert start_waves(ClusterPlan(n=2, manager="client-server")) == [["n1"], ["n2"]]
    assert start_waves(ClusterPlan(n=1, manager="client-server")) == [["n1"]]


def test_static_ring_starts_in_two_or_three_waves() -> None:
    for n in range(2, 41):
        waves = start_waves(ClusterPlan(n=n, manager="static", topology="ring"))
        assert len(waves) == (2 if n % 2 == 0 else 3), n


def test_static_star_and_full_waves() -> None:
    star = start_waves(ClusterPlan(n=5, manager="static", topology="star"))
    assert star == [["n1"], ["n2", "n3", "n4", "n5"]]
    full = start_waves(ClusterPlan(n=4, manager="static", topology="full"))
    assert full == [["n1"], ["n2"], ["n3"], ["n4"]]
    assert start_waves(ClusterPlan(n=1, manager="static")) == [["n1"]]


def check_waves(plan: ClusterPlan) -> None:
    waves = start_waves(plan)
    names = node_names(plan)
    flat = [x for wave in waves for x in wave]
    assert sorted(flat, key=idx) == names  # every node exactly once
    assert len(flat) == len(set(flat))
    assert all(waves), "no empty wave"
    assert waves[0][0] == "n1"
    if plan.manager != "static":
        assert waves[0] == ["n1"]
    for wave in waves:
        assert wave == sorted(wave, key=idx)
    for name in names:
        assert name in waves[wave_of(waves, name)]
    # Static: no configured link inside one wave.
    for a, b in configured_links(plan):
        assert wave_of(waves, a) != wave_of(waves, b), (a, b)
    # Every node after wave 0 joins someone already up when its wave starts.
    up: set[str] = set()
    for i, wave in enumerate(waves):
        for name in wave:
            found = contacts(plan, name, up)
            assert set(found) <= up
            if i > 0:
                assert found, f"{name} in wave {i} has no contact among {sorted(up)}"
            if plan.manager == "client-server" and role_of(plan, name) == "client":
                # A client starts after every server and joins all of them.
                assert found == names[: plan.server_count]
        up.update(wave)


@pytest.mark.parametrize(("manager", "topology"), SHAPES)
def test_waves_partition_the_nodes_and_every_later_node_has_an_earlier_contact(
    manager: str, topology: str
) -> None:
    for n in SIZES:
        check_waves(ClusterPlan(n=n, manager=manager, topology=topology))


def test_client_server_waves_for_every_server_count() -> None:
    for n in range(1, 13):
        for k in range(1, n + 1):
            check_waves(ClusterPlan(n=n, manager="client-server", servers=k))


def test_wave_of_unknown_name_raises_key_error() -> None:
    waves = start_waves(ClusterPlan(n=3))
    assert wave_of(waves, "n1") == 0
    assert wave_of(waves, "n3") == 1
    with pytest.raises(KeyError):
        wave_of(waves, "n4")


# --------------------------------------------------------------------- contacts


def test_gossip_contact_is_the_first_node_up() -> None:
    plan = ClusterPlan(n=5, manager="hyparview")
    assert contacts(plan, "n1", {"n3", "n5", "n2"}) == ["n2"]
    assert contacts(plan, "n1", set()) == []
    assert contacts(plan, "n3", {"n3"}) == []
    # A restarted seed rejoins the cluster rather than starting its own.
    assert contacts(plan, "n1", {"n4"}) == ["n4"]


def test_client_server_contacts_are_the_servers_up() -> None:
    plan = ClusterPlan(n=5, manager="client-server", servers=3)
    assert contacts(plan, "n5", {"n1", "n2", "n4"}) == ["n1", "n2"]
    assert contacts(plan, "n2", {"n1", "n2", "n3", "n4", "n5"}) == ["n1", "n3"]
    assert contacts(plan, "n4", {"n5"}) == []


def test_static_contacts_are_the_neighbours_up() -> None:
    plan = ClusterPlan(n=5, manager="static", topology="ring")
    assert contacts(plan, "n1", {"n2", "n3", "n4", "n5"}) == ["n2", "n5"]
    assert contacts(plan, "n3", {"n1", "n4"}) == ["n4"]


@settings(max_examples=150, deadline=None)
@given(plan=plans_st(), data=st.data())
def test_contacts_only_returns_nodes_that_are_up(plan: ClusterPlan, data: st.DataObject) -> None:
    names = node_names(plan)
    name = data.draw(st.sampled_from(names))
    pool = [*names, "n0", f"n{plan.n + 1}", "cli-123", "x"]
    up = data.draw(st.frozensets(st.sampled_from(pool)))
    found = contacts(plan, name, up)
    assert set(found) <= up
    assert name not in found
    assert set(found) <= set(names)
    assert len(found) == len(set(found))
    assert found == sorted(found, key=idx)
    others = [x for x in names if x in up and x != name]
    if plan.manager in ("full-mesh", "hyparview"):
        assert found == others[:1]
    elif plan.manager == "client-server":
        assert found == [x for x in others if role_of(plan, x) == "server"]
    else:
        linked = {b if a == name else a for a, b in configured_links(plan) if name in (a, b)}
        assert found == [x for x in others if x in linked]


# ------------------------------------------------------------------------- JSON


def json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=6,
    )


@st.composite
def full_plans(draw: st.DrawFn) -> ClusterPlan:
    n = draw(st.integers(1, 50))
    finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
    text = st.text(max_size=10)
    return ClusterPlan(
        n=n,
        manager=draw(st.sampled_from(MANAGERS)),
        servers=draw(st.none() | st.integers(1, n)),
        topology=draw(st.sampled_from(TOPOLOGIES)),
        channels=draw(st.none() | text),
        parallelism=draw(st.none() | st.integers(1, 16)),
        restart=draw(st.sampled_from(RESTART_POLICIES)),
        max_restarts=draw(st.integers(0, 100)),
        restart_period=draw(finite),
        imports=tuple(draw(st.lists(text, max_size=3))),
        run=draw(st.none() | text),
        settings=tuple(draw(st.lists(text, max_size=3))),
        host=draw(st.sampled_from(["127.0.0.1", "localhost", "::1"])),
        join_timeout=draw(finite),
        extra=draw(st.dictionaries(st.text(max_size=5), json_values(), max_size=3)),
    )


@settings(max_examples=100, deadline=None)
@given(full_plans())
def test_json_round_trip(plan: ClusterPlan) -> None:
    doc = plan.to_json()
    assert isinstance(doc["imports"], list)
    assert isinstance(doc["settings"], list)
    again = ClusterPlan.from_json(json.loads(json.dumps(doc)))
    assert again == plan
    assert again.to_json() == doc


def test_from_json_ignores_unknown_keys_and_fills_defaults() -> None:
    plan = ClusterPlan.from_json({"n": 3, "manager": "static", "future_field": 1})
    assert plan == ClusterPlan(n=3, manager="static")
    assert plan.imports == () and plan.settings == ()


def test_from_json_validates() -> None:
    with pytest.raises(ValueError, match="--manager"):
        ClusterPlan.from_json({"n": 3, "manager": "raft"})


# --------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"n": 0}, "-n"),
        ({"n": -3}, "-n"),
        ({"n": True}, "-n"),
        ({"n": 2.0}, "-n"),
        ({"n": "3"}, "-n"),
        ({"n": 3, "manager": "raft"}, "--manager"),
        ({"n": 3, "manager": ""}, "--manager"),
        ({"n": 3, "topology": "mesh"}, "--topology"),
        ({"n": 3, "manager": "static", "topology": "Ring"}, "--topology"),
        ({"n": 3, "restart": "always"}, "--restart"),
        ({"n": 3, "max_restarts": -1}, "--max-restarts"),
        ({"n": 3, "manager": "client-server", "servers": 4}, "--servers"),
        ({"n": 3, "manager": "client-server", "servers": 0}, "--servers"),
        ({"n": 3, "manager": "client-server", "servers": -1}, "--servers"),
    ],
)
def test_invalid_values_name_the_flag(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(ValueError, match=rf"^{flag}: invalid value") as info:
        ClusterPlan(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(max_value=0))
def test_any_non_positive_size_is_rejected(n: int) -> None:
    with pytest.raises(ValueError, match=r"^-n: "):
        ClusterPlan(n=n)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), extra=st.integers(1, 1000))
def test_more_servers_than_nodes_is_rejected(n: int, extra: int) -> None:
    with pytest.raises(ValueError, match=r"^--servers: "):
        ClusterPlan(n=n, manager="client-server", servers=n + extra)


@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=12))
def test_unknown_manager_topology_restart_are_rejected(value: str) -> None:
    if value not in MANAGERS:
        with pytest.raises(ValueError, match=r"^--manager: "):
            ClusterPlan(n=2, manager=value)
    if value not in TOPOLOGIES:
        with pytest.raises(ValueError, match=r"^--topology: "):
            ClusterPlan(n=2, topology=value)
    if value not in RESTART_POLICIES:
        with pytest.raises(ValueError, match=r"^--restart: "):
            ClusterPlan(n=2, restart=value)


@settings(max_examples=100, deadline=None)
@given(value=st.integers(max_value=-1))
def test_negative_max_restarts_is_rejected(value: int) -> None:
    with pytest.raises(ValueError, match=r"^--max-restarts: "):
        ClusterPlan(n=2, max_restarts=value)

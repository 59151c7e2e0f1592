"""Semantics of the simulator's network, timers and node lifecycle.

A scripted manager (`Probe`) logs every event it gets and returns whatever
actions the test queued, so each test states exactly what a real manager
would see from the driver.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.sim import BROADCAST, MANAGER, LinkModel, Simulator
from partisan.membership.types import (
    Action,
    CancelTimer,
    Connect,
    Disconnect,
    Event,
    MembersChanged,
    PeerDown,
    PeerUp,
    Received,
    Send,
    SetTimer,
    TimerFired,
)


class Probe:
    """A manager that logs events and returns the actions queued in `script`."""

    name = "probe"

    def __init__(self, spec: NodeSpec, config: Config, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.log: list[tuple[float, Event]] = []
        self.script: list[Action] = []
        self.peers: list[NodeSpec] = []

    def start(self, now: float) -> list[Action]:
        return []

    def handle(self, event: Event, now: float) -> list[Action]:
        self.log.append((now, event))
        out, self.script = self.script, []
        return out

    def members(self) -> Sequence[NodeSpec]:
        return sorted([self.spec, *self.peers])

    def active(self) -> Sequence[NodeSpec]:
        return list(self.peers)

    def passive(self) -> Sequence[NodeSpec]:
        return []


def probe(sim: Simulator, name: str) -> Probe:
    manager = sim.manager(name)
    assert isinstance(manager, Probe)
    return manager


def act(sim: Simulator, name: str, *actions: Action) -> None:
    """Make `name`'s manager emit `actions` now."""
    probe(sim, name).script = list(actions)
    sim.feed(name, TimerFired("script"))


def received(sim: Simulator, name: str) -> list[tuple[float, Any]]:
    return [(t, e.msg) for t, e in probe(sim, name).log if isinstance(e, Received)]


def events_of(sim: Simulator, name: str, kind: type) -> list[tuple[float, Any]]:
    return [(t, e) for t, e in probe(sim, name).log if isinstance(e, kind)]


@pytest.fixture
def sim() -> Simulator:
    s = Simulator(seed=3, manager=Probe, link=LinkModel(0.010, 0.020))
    for _ in range(3):
        s.add_node()
    return s


def test_send_arrives_within_the_link_delay_in_fifo_order(sim: Simulator) -> None:
    n2 = sim.spec("n2")
    act(sim, "n1", *(Send(n2, i) for i in range(50)))
    assert sim.in_flight == 50
    assert sim.run_until_quiet(max_time=1.0)
    got = received(sim, "n2")
    assert [m for _, m in got] == list(range(50))  # a TCP stream never reorders
    assert all(0.010 <= t <= 0.020 for t, _ in got)
    sender = next(e.sender for _, e in probe(sim, "n2").log if isinstance(e, Received))
    assert sender == sim.spec("n1")


def test_without_fifo_messages_may_reorder_but_all_arrive() -> None:
    sim = Simulator(seed=3, manager=Probe, link=LinkModel(0.0, 0.5), fifo=False)
    sim.add_node()
    n2 = sim.add_node()
    act(sim, "n1", *(Send(n2, i) for i in range(50)))
    sim.run_until_quiet()
    got = [m for _, m in received(sim, "n2")]
    assert sorted(got) == list(range(50)) and got != list(range(50))


def test_loss_drops_and_duplication_doubles(sim: Simulator) -> None:
    sim.set_link("n1", "n2", LinkModel(loss=1.0))
    sim.set_link("n1", "n3", LinkModel(duplicate=1.0))
    act(sim, "n1", Send(sim.spec("n2"), "lost"), Send(sim.spec("n3"), "twice"))
    sim.run_until_quiet()
    assert received(sim, "n2") == []
    assert [m for _, m in received(sim, "n3")] == ["twice", "twice"]
    # a lossy link is not a dead peer: no PeerDown for the sender
    assert events_of(sim, "n1", PeerDown) == []
    sim.set_link("n1", "n2", None)
    act(sim, "n1", Send(sim.spec("n2"), "back"))
    sim.run_until_quiet()
    assert [m for _, m in received(sim, "n2")] == ["back"]


def test_loss_is_a_fraction_of_messages() -> None:
    sim = Simulator(seed=5, manager=Probe, link=LinkModel(loss=0.3))
    sim.add_node()
    n2 = sim.add_node()
    act(sim, "n1", *(Send(n2, i) for i in range(2000)))
    sim.run_until_quiet()
    assert 0.25 < 1 - len(received(sim, "n2")) / 2000 < 0.35


def test_send_to_a_crashed_peer_fails_at_once_with_peer_down(sim: Simulator) -> None:
    n2 = sim.spec("n2")
    sim.crash("n2")
    sim.run_for(1.0)
    act(sim, "n1", Send(n2, "hello"))
    sim.run_until_quiet()
    assert events_of(sim, "n1", PeerDown) == [(1.0, PeerDown(n2, "unreachable"))]
    act(sim, "n1", Connect(n2))
    sim.run_until_quiet()
    assert events_of(sim, "n1", PeerDown)[-1] == (1.0, PeerDown(n2, "unreachable"))


def test_messages_in_flight_to_a_crashed_node_are_lost(sim: Simulator) -> None:
    act(sim, "n1", Send(sim.spec("n2"), "x"))
    sim.crash("n2")
    sim.run_until_quiet()
    assert received(sim, "n2") == []


def test_crash_is_silent_unless_a_detection_delay_is_configured() -> None:
    for delay in (None, 0.5):
        sim = Simulator(seed=1, manager=Probe, crash_detect_delay=delay)
        sim.add_node()
        n2 = sim.add_node()
        act(sim, "n1", Connect(n2))
        sim.run_until_quiet()
        sim.crash("n2")
        sim.run_for(2.0)
        downs = events_of(sim, "n1", PeerDown)
        if delay is None:
            assert downs == []
        else:
            assert len(downs) == 1 and downs[0][1] == PeerDown(n2, "connection_closed")
            crashed_at = sim.now - 2.0  # one link delay (1-10 ms) after the detection delay
            assert 0.5 + 0.001 <= downs[0][0] - crashed_at <= 0.5 + 0.010


def test_connect_gives_peer_up_to_both_ends_once(sim: Simulator) -> None:
    n1, n2 = sim.spec("n1"), sim.spec("n2")
    act(sim, "n1", Connect(n2))
    sim.run_until_quiet()
    act(sim, "n1", Connect(n2))  # already connected: nothing new
    sim.run_until_quiet()
    assert [e for _, e in events_of(sim, "n1", PeerUp)] == [PeerUp(n2)]
    assert [e for _, e in events_of(sim, "n2", PeerUp)] == [PeerUp(n1)]
    act(sim, "n1", Disconnect(n2))
    act(sim, "n2", Connect(n1))  # a closed pair can be re-dialled
    sim.run_until_quiet()
    assert len(events_of(sim, "n1", PeerUp)) == 2


def test_partition_makes_peers_unreachable_until_healed(sim: Simulator) -> None:
    sim.partition(["n1"], ["n2", "n3"])
    assert not sim.reachable("n1", "n2") and sim.reachable("n2", "n3")
    act(sim, "n1", Send(sim.spec("n2"), "a"))
    act(sim, "n2", Send(sim.spec("n3"), "b"))
    sim.run_until_quiet()
    assert received(sim, "n2") == []
    assert [e for _, e in events_of(sim, "n1", PeerDown)] == [
        PeerDown(sim.spec("n2"), "unreachable")
    ]
    assert [m for _, m in received(sim, "n3")] == ["b"]
    sim.heal()
    act(sim, "n1", Send(sim.spec("n2"), "c"))
    sim.run_until_quiet()
    assert [m for _, m in received(sim, "n2")] == ["c"]


def test_restart_is_a_new_incarnation_and_old_specs_are_refused(sim: Simulator) -> None:
    old = sim.spec("n2")
    act(sim, "n1", Send(old, "to-old"))
    new = sim.restart("n2")
    assert new.name == "n2" and new.newer_than(old)
    assert probe(sim, "n2").log == []  # a fresh manager
    sim.run_until_quiet()
    assert received(sim, "n2") == []  # in flight to the old incarnation: lost
    act(sim, "n1", Send(old, "again"), Send(new, "to-new"))
    sim.run_until_quiet()
    assert [e for _, e in events_of(sim, "n1", PeerDown)] == [PeerDown(old, "restarted")]
    assert [m for _, m in received(sim, "n2")] == ["to-new"]


def test_restart_with_join_feeds_join() -> None:
    sim = Simulator(seed=1, manager=Probe)
    sim.add_node()
    sim.add_node()
    sim.crash("n2")
    sim.restart("n2", join="n1")
    assert [type(e).__name__ for _, e in probe(sim, "n2").log] == ["Join"]


def test_leave_feeds_leave_then_stops_and_tells_connected_peers() -> None:
    sim = Simulator(seed=1, manager=Probe)
    n1 = sim.add_node()
    n2 = sim.add_node()
    act(sim, "n1", Connect(n2))
    sim.run_until_quiet()
    probe(sim, "n2").script = [Send(n1, "bye")]
    sim.leave("n2")
    assert not sim.is_alive("n2")
    sim.run_until_quiet()
    assert [m for _, m in received(sim, "n1")] == ["bye"]  # the farewell still goes out
    assert [e for _, e in events_of(sim, "n1", PeerDown)] == [PeerDown(n2, "left")]
    with pytest.raises(ValueError, match="not alive"):
        sim.join("n2", "n1")


def test_timers_fire_at_their_time_replace_and_cancel(sim: Simulator) -> None:
    act(sim, "n1", SetTimer("a", 1.0), SetTimer("b", 2.0), SetTimer("a", 3.0))
    act(sim, "n1", SetTimer("c", 0.5), CancelTimer("c"))
    sim.run_for(5.0)
    fired = [(t, e.name) for t, e in events_of(sim, "n1", TimerFired) if e.name != "script"]
    assert fired == [(2.0, "b"), (3.0, "a")]
    assert sim.now == 5.0


def test_held_timers_fire_on_release_in_order(sim: Simulator) -> None:
    sim.hold_timers(MANAGER)
    act(sim, "n1", SetTimer("a", 1.0), SetTimer("b", 2.0))
    sim.run_for(3.0)
    assert [e for _, e in events_of(sim, "n1", TimerFired) if e.name != "script"] == []
    assert sim.run_until_idle()  # held timers do not count as pending
    sim.release_timers(MANAGER)
    sim.run_for(0.0)
    fired = [(t, e.name) for t, e in events_of(sim, "n1", TimerFired) if e.name != "script"]
    assert fired == [(3.0, "a"), (3.0, "b")]


def test_timers_of_a_crashed_node_never_fire(sim: Simulator) -> None:
    act(sim, "n1", SetTimer("a", 1.0))
    sim.crash("n1")
    sim.run_for(2.0)
    assert all(e.name == "script" for _, e in events_of(sim, "n1", TimerFired))


def test_active_graph_and_bad_input(sim: Simulator) -> None:
    probe(sim, "n1").peers = [sim.spec("n2"), sim.spec("n3")]
    probe(sim, "n2").peers = [sim.spec("n1")]
    sim.crash("n3")
    assert sim.active_graph() == {"n1": ("n2",), "n2": ("n1",)}
    assert sim.active_graph(live_only=False)["n1"] == ("n2", "n3")
    with pytest.raises(ValueError, match="already exists"):
        sim.add_node("n1")
    with pytest.raises(KeyError, match="no simulated node"):
        sim.feed("zz", TimerFired("x"))
    with pytest.raises(ValueError, match="no broadcast layer"):
        sim.broadcast("n1")
    with pytest.raises(ValueError, match="LinkModel"):
        LinkModel(loss=2.0)
    with pytest.raises(ValueError, match="unknown broadcast"):
        Simulator(manager=Probe, broadcast="carrier-pigeon")


def test_members_changed_feeds_neighbours_to_the_broadcast_layer() -> None:
    sim = Simulator(seed=2, manager=Probe, broadcast="flood")
    n1, n2 = sim.add_node(), sim.add_node()
    probe(sim, "n1").peers = [n2]
    act(sim, "n1", MembersChanged((n1, n2)))
    layer = sim.layer("n1")
    assert layer is not None and list(layer.neighbors()) == [n2]
    probe(sim, "n1").peers = []
    act(sim, "n1", MembersChanged((n1,)))
    assert list(layer.neighbors()) == []
    assert BROADCAST != MANAGER


# ------------------------------------------------------------ determinism


class Chatter(Probe):
    """Gossips random numbers to random peers on a timer: exercises every rng."""

    def start(self, now: float) -> list[Action]:
        return [SetTimer("tick", now + self.rng.random())]

    def handle(self, event: Event, now: float) -> list[Action]:
        self.log.append((now, event))
        if isinstance(event, Received) and isinstance(event.sender, NodeSpec):
            if event.sender not in self.peers:
                self.peers.append(event.sender)
            self.peers.sort()
        if isinstance(event, TimerFired) and self.peers:
            targets = self.rng.sample(self.peers, min(2, len(self.peers)))
            return [Send(t, self.rng.random()) for t in targets] + [
                SetTimer("tick", now + self.rng.uniform(0.5, 1.5))
            ]
        if isinstance(event, TimerFired):
            return [SetTimer("tick", now + 1.0)]
        return []


def chatter_digest(seed: int) -> str:
    """Run a lossy, duplicating, crashing chatter network; hash every node's log."""
    sim = Simulator(seed=seed, manager=Chatter, link=LinkModel(0.001, 0.05, 0.1, 0.1))
    for i in range(40):
        sim.add_node()
        if i:
            act(sim, f"n{i + 1}", Send(sim.spec("n1"), "hi"))
    sim.run_for(5.0)
    sim.crash("n7")
    sim.partition([f"n{i}" for i in range(1, 20)])
    sim.run_for(5.0)
    sim.heal()
    sim.restart("n7")
    sim.run_for(5.0)
    h = hashlib.sha256()
    for name in sorted(sim.nodes):
        for t, e in probe(sim, name).log:
            h.update(f"{name} {t!r} {e!r}\n".encode())
    return h.hexdigest()


def test_same_seed_same_run_and_different_seed_different_run() -> None:
    assert chatter_digest(1) == chatter_digest(1)
    assert chatter_digest(1) != chatter_digest(2)


@pytest.mark.timeout(60)
def test_same_seed_same_output_across_processes_and_hash_seeds() -> None:
    here = Path(__file__).parent
    code = f"import sys; sys.path.insert(0, {str(here)!r}); import test_sim; print(test_sim.chatter_digest(11))"
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=50
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1] == chatter_digest(11) + "\n"


class _NoFastPath:
    """Wraps a manager or layer, hiding its `receive`: the engine then builds `Received`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "receive":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _fast_path_run(fast: bool) -> tuple[Any, ...]:
    """HyParView + flood through joins, shuffles, crashes and broadcasts; what a user sees."""
    from partisan.membership.flood import Flood
    from partisan.membership.hyparview import HyParView

    def wrap(cls: Any) -> Any:
        return cls if fast else (lambda *args: _NoFastPath(cls(*args)))

    sim = Simulator(
        seed=5, manager=wrap(HyParView), broadcast=wrap(Flood), crash_detect_delay=0.0,
        link=LinkModel(0.001, 0.01, 0.02, 0.02),
    )  # fmt: skip
    sim.add_node()
    for _ in range(39):
        sim.join(sim.add_node().name, "n1")
        sim.run_until_quiet()
    sim.run_for(60.0)
    for name in ("n3", "n9", "n17", "n30"):
        sim.crash(name)
    sent = [sim.broadcast(name) for name in ("n1", "n20", "n40")]
    sim.run_for(60.0)
    return (
        sim.events,
        sim.active_graph(),
        {n: tuple(p.name for p in sim.manager(n).passive()) for n in sim.live_names()},
        [sorted(sim.broadcasts[m].deliveries.items()) for m in sent],
    )


def test_manager_and_layer_fast_paths_equal_the_event_path() -> None:
    """`receive(sender, msg, now)` must do exactly what `handle(Received(...))` does."""
    fast = _fast_path_run(True)
    assert fast == _fast_path_run(False)
    assert len(fast[3][0]) == 36  # the run did something: a broadcast reached every live node

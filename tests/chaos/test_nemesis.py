"""Each nemesis does what it says, and `heal` undoes exactly it (partisan/testing/nemesis.py).

The network faults are checked with plain sockets (tests/chaos/netprobe.py)
inside the hosts: a cut blocks a TCP connect, ``reject`` answers it with a
reset, loss drops some datagrams (counted exactly: every datagram is either
received or counted by our rule), tbf slows a transfer. The process and
user-space faults are checked on real nodes (`membernode`).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from partisan.testing import NodeProcess, check_history, load_history, wait_until
from partisan.testing.hosts import SimulatedHost, SimulatedHosts
from partisan.testing.nemesis import Nemesis

PROBE = str(Path(__file__).with_name("netprobe.py"))
PORT = 7000
Keys = Callable[[list[str]], dict[str, Path]]


def probe(where: SimulatedHost, op: str, /, **args: Any) -> dict[str, Any]:
    """Run one netprobe op inside host `where`; its JSON answer."""
    done = subprocess.run(
        where.exec_argv([sys.executable, PROBE, op, json.dumps(args)]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def reach(src: SimulatedHost, dst: SimulatedHost, timeout: float = 1.0) -> str:
    return str(probe(src, "connect", host=dst.address, port=PORT, timeout=timeout)["result"])


@pytest.fixture
def net(hosts: SimulatedHosts) -> Iterator[list[SimulatedHost]]:
    """Three hosts, each running a probe server on PORT (stopped at teardown)."""
    made = [hosts.add_host() for _ in range(3)]
    servers = []
    try:
        for host in made:
            proc = subprocess.Popen(
                host.exec_argv([sys.executable, PROBE, "serve", str(PORT)]),
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield made
    finally:
        for proc in servers:
            proc.kill()
            proc.communicate(timeout=10)


def nemesis_chains(host: SimulatedHost) -> list[str]:
    return [line for line in host.run("iptables", "-w", "-S").stdout.splitlines() if "NEM" in line]


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_partition_blocks_both_ways_and_heal_restores(
    hosts: SimulatedHosts, net: list[SimulatedHost]
) -> None:
    h1, h2, h3 = net
    nemesis = Nemesis(hosts)
    assert reach(h1, h2) == "ok" and reach(h2, h1) == "ok"
    nemesis.partition([h1], [h2, h3])
    assert reach(h1, h2) == "timeout" and reach(h2, h1) == "timeout"
    assert reach(h3, h1) == "timeout"
    assert reach(h2, h3) == "ok"  # inside a group nothing changes
    nemesis.heal()
    assert all(not nemesis_chains(h) for h in net)  # exactly what it added is gone
    assert reach(h1, h2) == "ok" and reach(h3, h1) == "ok"
    nemesis.heal()  # idempotent
    assert [e["op"] for e in nemesis.log] == ["partition", "heal", "heal"]
    assert nemesis.log[0]["args"]["groups"] == [["h1"], ["h2", "h3"]]


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_reject_resets_at_once(hosts: SimulatedHosts, net: list[SimulatedHost]) -> None:
    h1, h2, _ = net
    nemesis = Nemesis(hosts)
    nemesis.partition([h1], [h2], reject=True)
    for src, dst in ((h1, h2), (h2, h1)):
        answer = probe(src, "connect", host=dst.address, port=PORT, timeout=2.0)
        assert answer["result"] == "refused", answer  # a TCP reset, not a silent timeout
        assert answer["seconds"] < 0.5, answer
    nemesis.heal()
    assert reach(h1, h2) == "ok"


def udp_received(src: SimulatedHost, dst: SimulatedHost, count: int) -> int:
    before = int(probe(dst, "count", host="127.0.0.1", port=PORT)["count"])
    probe(src, "udp", host=dst.address, port=PORT, count=count)
    return int(probe(dst, "count", host="127.0.0.1", port=PORT)["count"]) - before


def dropped(nemesis: Nemesis, host: SimulatedHost) -> int:
    """Packets our rules in `host` dropped (the first column of ``iptables -L -v -x``)."""
    lines = nemesis.rules(host).splitlines()[2:]
    return sum(int(line.split()[0]) for line in lines if "DROP" in line)


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_cut_one_way(hosts: SimulatedHosts, net: list[SimulatedHost]) -> None:
    h1, h2, _ = net
    nemesis = Nemesis(hosts)
    nemesis.cut_one_way(h1, h2)
    assert nemesis_chains(h1) == []  # the rule is in the receiver only
    wait_until(lambda: udp_received(h2, h1, 50) == 50, 10, message="h2 -> h1 must pass")
    assert udp_received(h1, h2, 50) == 0
    assert dropped(nemesis, h2) >= 50
    nemesis.heal()
    wait_until(lambda: udp_received(h1, h2, 50) == 50, 10, message="healed h1 -> h2")


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_loss_drops_some_both_ways(hosts: SimulatedHosts, net: list[SimulatedHost]) -> None:
    h1, h2, _ = net
    nemesis = Nemesis(hosts)
    nemesis.loss(h1, h2, probability=0.3)
    for src, dst in ((h1, h2), (h2, h1)):
        got = udp_received(src, dst, 1000)
        # Every datagram was received or dropped by our statistic rule (nothing else lost).
        wait_until(lambda d=dst, g=got: g + dropped(nemesis, d) >= 1000, 5, message="accounting")
        assert 550 <= got <= 850, got  # 30% loss: 700 expected, sd ~14
    nemesis.heal()
    wait_until(lambda: udp_received(h1, h2, 200) == 200, 10, message="healed: no loss")


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_rate_limit_slows_a_transfer(hosts: SimulatedHosts, net: list[SimulatedHost]) -> None:
    h1, h2, _ = net
    nemesis = Nemesis(hosts)
    size = 250_000  # 2 Mbit: about 2 s at 1 mbit/s, a few ms without the limit
    assert probe(h1, "send", host=h2.address, port=PORT, size=size)["seconds"] < 0.5
    nemesis.rate_limit(h1, rate="1mbit", burst="32kbit", latency="400ms")
    limited = probe(h1, "send", host=h2.address, port=PORT, size=size)
    assert limited["answer"] == "ok" and limited["seconds"] > 1.5, limited
    assert "tbf" in h1.run("tc", "qdisc", "show", "dev", "eth0").stdout
    nemesis.heal()
    assert "tbf" not in h1.run("tc", "qdisc", "show", "dev", "eth0").stdout
    assert probe(h1, "send", host=h2.address, port=PORT, size=size)["seconds"] < 0.5


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_random_halves_and_bridge(hosts: SimulatedHosts, net: list[SimulatedHost]) -> None:
    h1, h2, h3 = net
    nemesis = Nemesis(hosts)
    first, second = nemesis.random_halves(net, random.Random(7))
    assert sorted(h.name for h in first + second) == ["h1", "h2", "h3"]
    assert len(first) == 1 and reach(first[0], second[0]) == "timeout"
    nemesis.heal()
    nemesis.bridge([h1], h2, [h3])
    assert reach(h1, h3) == "timeout" and reach(h3, h1) == "timeout"
    assert reach(h1, h2) == "ok" and reach(h2, h3) == "ok"  # the middle sees both sides
    nemesis.heal()
    assert reach(h1, h3) == "ok"


def two_nodes(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path
) -> tuple[NodeProcess, NodeProcess]:
    keys = host_keys(["n1", "n2"])
    h1, h2 = hosts.add_host(), hosts.add_host()

    def start(host: SimulatedHost, name: str, *extra: str) -> NodeProcess:
        return host.start_node(
            name, "--keys", str(keys[name]), "--manager", "full-mesh", "--port", "9100",
            "--event-log", str(tmp_path / f"{name}.jsonl"), *extra,
        )  # fmt: skip

    n1 = start(h1, "n1")
    n2 = start(h2, "n2", "--join", str(n1.spec))
    wait_until(lambda: n1.request("view")["nodes"] == ["n2"], 20, message="n1 sees n2")
    return n1, n2


@pytest.mark.timeout(120)
def test_pause_resume_kill(hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path) -> None:
    """SIGSTOP: n1 sees n2 go down (heartbeat timeout 2.0 s) and come back after SIGCONT."""
    n1, n2 = two_nodes(hosts, host_keys, tmp_path)
    nemesis = Nemesis(hosts)

    def events(kind: str) -> int:
        return sum(1 for e in n1.request("events")["events"] if e["event"] == kind)

    ups = events("up")
    nemesis.pause(n2)
    wait_until(lambda: events("down") == 1, 10, message="NodeDown of the frozen n2")
    nemesis.resume(n2)
    wait_until(lambda: events("up") == ups + 1, 15, message="NodeUp after SIGCONT")
    nemesis.pause(n2)
    nemesis.heal()  # heal resumes what it paused
    assert n2.request("view", reply_timeout=10)["ok"]
    nemesis.kill(n2)
    assert n2.proc.poll() is not None
    wait_until(lambda: events("down") == 2, 10, message="NodeDown of the killed n2")
    assert [e["op"] for e in nemesis.log] == ["pause", "resume", "pause", "heal", "kill"]


@pytest.mark.timeout(120)
def test_delay_and_duplicate_in_user_space(
    hosts: SimulatedHosts, host_keys: Keys, tmp_path: Path
) -> None:
    n1, n2 = two_nodes(hosts, host_keys, tmp_path)
    nemesis = Nemesis(hosts)
    n2.request("serve", name="echo")
    n2.request("sink")
    nemesis.delay(n1, "n2", 0.3)
    assert min(n1.request("calls", target="echo", node="n2", count=3)["rtts"]) >= 300
    nemesis.heal()
    assert max(n1.request("calls", target="echo", node="n2", count=3)["rtts"]) < 300
    logs = [tmp_path / "n1.jsonl", tmp_path / "n2.jsonl"]

    def report() -> Any:
        return check_history(load_history(logs))

    nemesis.duplicate(n2, "n1", 1.0)
    n1.request("load", target="n2", actors=1, count=20, channel="default", tag="dup")
    wait_until(lambda: report().received >= 40, 20, message=lambda: str(report()))
    nemesis.heal()
    n1.request("load", target="n2", actors=1, count=20, channel="default", tag="clean")
    wait_until(lambda: report().received >= 60, 20, message=lambda: str(report()))
    final = report()
    assert final.lost == () and final.sent == 40
    assert len(final.duplicated) == 20  # every message of the first load, none of the second
    assert all(".dup." in msg for msg in final.duplicated)
    assert [e["op"] for e in nemesis.log] == ["delay", "heal", "duplicate", "heal"]

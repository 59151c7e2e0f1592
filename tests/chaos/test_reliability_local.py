"""Local scenarios of the chaos table: R9 slow consumer, R10 supervisor restart, R11 CLI teardown.

They need no root and no simulated hosts: loopback node processes
(`partisan.testing.membernode`, commands of `partisan.testing.local_commands`)
and the ``partisan cluster`` CLI, measured with the ``measure`` fixture like
the rest of the table. Defaults are the code's (heartbeat 0.5 s, timeout
2.0 s, CURVE on) unless a scenario says why it changes one.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from partisan.testing import NodeProcess, wait_until
from partisan.testing.cluster_processes import alive, is_cluster_process
from partisan.testing.history import check_history, load_history
from partisan.transport.keys import PRIVATE_DIR

Measure = Callable[..., Any]


@pytest.fixture
def members(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """``members(name, keys, *args)``: a membernode with an event log; all stopped at teardown."""
    started: list[NodeProcess] = []

    def start(name: str, keys: Path, *args: str) -> NodeProcess:
        argv = [sys.executable, "-m", "partisan.testing.membernode", name, "--keys", str(keys)]
        argv += ["--manager", "full-mesh", "--event-log", str(tmp_path / f"{name}.jsonl")]
        node = NodeProcess([*argv, *args], env=dict(os.environ))
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


# ---------------------------------------------------------------- R9 slow consumer

#: The sender's budget per (peer, channel) and the receiver's bound on unread bytes. The
#: defaults (64 MiB, 256 MiB) exceed what 30 s at 1 MB/s sends, so no backpressure would
#: ever show; small budgets make the bound reachable and the drain short.
SEND_BUDGET = 256 * 1024
INBOUND_BOUND = 1024 * 1024
R9_SECONDS = 30.0
R9_RATE = 1_000_000  # bytes/s
R9_SIZE = 4096  # 244 messages/s offered, 100/s consumed (10 ms each)
R9_BUDGETS = ["--set", f"send_buffer_bytes={SEND_BUDGET}"]
R9_BUDGETS += ["--set", f"inbound_buffer_bytes={INBOUND_BOUND}", "--channels", "bulk:1"]


@pytest.mark.timeout(150)
def test_r9_slow_consumer_pushes_back_without_loss_or_stalls(
    members: Callable[..., NodeProcess], host_keys: Callable[..., dict[str, Path]],
    measure: Measure,
) -> None:  # fmt: skip
    keys = host_keys(["a", "b"])
    b = members("b", keys["b"], *R9_BUDGETS)
    a = members("a", keys["a"], *R9_BUDGETS, "--join", str(b.spec))
    b.request("slow_sink", name="slow", delay=0.01)
    b.request("serve", name="echo")
    for node in (a, b):
        node.request("ticker", interval=0.01)
    baseline = {"a": a.request("lag"), "b": b.request("lag")}
    rss_before = baseline["b"]["rss"]

    flood = a.send_command(
        "flood", target="b", name="slow", channel="bulk", size=R9_SIZE, rate=R9_RATE,
        seconds=R9_SECONDS,
    )  # fmt: skip
    worst = {"a": 0.0, "b": 0.0}
    rss_peak, stuck_windows, call_rtts = rss_before, 0, []
    ticks = {name: lag["ticks"] for name, lag in baseline.items()}
    end = time.monotonic() + R9_SECONDS
    while time.monotonic() < end:
        time.sleep(1.0)  # ok-sleep: the sampling interval of a 30 s run, not a wait for a state
        call_rtts += a.request("calls", target="echo", node="b", count=3)["rtts"]
        for name, node in (("a", a), ("b", b)):
            lag = node.request("lag")
            stuck_windows += lag["ticks"] == ticks[name]  # no tick since the last sample
            ticks[name] = lag["ticks"]
            worst[name] = max(worst[name], lag["worst_lag_ms"])
            if name == "b":
                rss_peak = max(rss_peak, lag["rss"])
    result = a.reply(flood, timeout=R9_SECONDS + 30)
    assert result["ok"], result
    sent, refused = result["sent"], result["refused"]
    drained = wait_until(
        lambda: b.request("slow_count", name="slow").get("messages", 0) >= sent,
        30.0,
        interval=0.2,
        message=lambda: f"b consumed {b.request('slow_count', name='slow')} of {sent}",
    )
    consumed = b.request("slow_count", name="slow")["messages"]
    drops = {n: node.request("drops")["drops"] for n, node in (("a", a), ("b", b))}
    downs = [e for node in (a, b) for e in node.request("events")["events"] if e["event"] == "down"]
    assert drained
    assert refused > 0, f"the sender never saw Overloaded ({sent} sends)"
    goal9 = "slow consumer: backpressure at the sender, nothing dropped, bounded RSS, no stalls"
    offered = f"{R9_SECONDS:g} s at {R9_RATE / 1e6:g} MB/s in {R9_SIZE} B messages"
    measure(
        "R9", "slow_consumer", "messages lost (accepted by send, never consumed)",
        sent - consumed, 0, "count", goal9,
        f"{offered}; {sent} accepted, {refused} refused with Overloaded, {consumed} consumed",
    )  # fmt: skip
    measure(
        "R9", "slow_consumer", "runtime drop counters (both nodes)",
        sum(sum(d.values()) for d in drops.values()), 0, "count", goal9, json.dumps(drops),
    )  # fmt: skip
    measure(
        "R9", "slow_consumer", "false NodeDowns (both nodes)", len(downs), 0, "count", goal9,
        "code defaults: heartbeat 0.5 s, timeout 2.0 s",
    )  # fmt: skip
    measure(
        "R9", "slow_consumer", "1 s windows in which a ticker actor made no progress",
        stuck_windows, 0, "count", goal9,
        f"echo calls during the flood: {len(call_rtts)} answered, max {max(call_rtts):.1f} ms",
    )  # fmt: skip
    budget = INBOUND_BOUND + SEND_BUDGET
    measure(
        "R9", "slow_consumer", "receiver RSS growth", rss_peak - rss_before,
        budget + 50 * 1024 * 1024, "bytes", goal9,
        f"figure = inbound bound {INBOUND_BOUND} B + one send budget {SEND_BUDGET} B + 50 MiB",
    )  # fmt: skip
    for name in ("a", "b"):
        measure(
            "R9", "slow_consumer", f"worst event-loop lag on {name} (10 ms ticker)",
            worst[name], 50, "ms", goal9, "2 shared cores: reported, not asserted", fatal=False,
        )  # fmt: skip
    measure(
        "R9", "slow_consumer", "longest single send call", result["longest_send_ms"], 50, "ms",
        goal9, "send never waits: it raises Overloaded; 2 shared cores", fatal=False,
    )  # fmt: skip


# ---------------------------------------------------------------- R10 supervisor restart

R10_EVERY = 5
R10_INTENSITY = 20


@pytest.mark.timeout(90)
def test_r10_supervisor_restarts_fast_and_escalates_once(
    members: Callable[..., NodeProcess], host_keys: Callable[..., dict[str, Path]],
    measure: Measure, tmp_path: Path,
) -> None:  # fmt: skip
    a = members("a", host_keys(["a"])["a"])
    out = a.request("crash_loop", every=R10_EVERY, crashes=R10_INTENSITY, reply_timeout=60)
    restarts = sorted(out["restart_ms"])
    workers = R10_INTENSITY + 1
    assert out["crashes"] == workers and len(restarts) == R10_INTENSITY, out
    goal = "restart within budget; a storm beyond intensity escalates once; signals once per crash"
    measure(
        "R10", "supervisor_restart", "slowest restart (crash to the new worker's start)",
        restarts[-1], 100, "ms", goal,
        f"{len(restarts)} restarts, median {restarts[len(restarts) // 2]:.2f} ms; worker raises "
        f"every {R10_EVERY}th message; 2 shared cores", fatal=False,
    )  # fmt: skip
    measure(
        "R10", "supervisor_restart", "escalations to the parent beyond exactly one",
        abs(len(out["sup_exits"]) - 1), 0, "count", goal,
        f"intensity {R10_INTENSITY} in 60 s, {workers} crashes; parent saw {out['sup_exits']}",
    )  # fmt: skip
    wrong = [p for p in set(out["downs"]) | set(out["exits"]) if out["downs"].get(p) != 1]
    wrong += [p for p in out["downs"] if out["exits"].get(p) != 1]
    measure(
        "R10", "supervisor_restart", "crashed workers without exactly one Down and one Exit",
        len(set(wrong)) + workers - len(out["downs"]), 0, "count", goal,
        f"{len(out['downs'])} workers monitored and linked",
    )  # fmt: skip
    records = load_history([tmp_path / "a.jsonl"])
    assert sum(r["event"] == "signal.down" for r in records) == workers  # what the checker read
    report = check_history(records)
    measure(
        "R10", "supervisor_restart", "history checker: Down-once violations",
        len(report.signal_violations), 0, "count", goal, "signal.down records from record_down",
    )  # fmt: skip
    assert not out["sup_alive"] and out["sup_exits"] == ["shutdown"], out["sup_exits"]


# ---------------------------------------------------------------- R11 CLI teardown

R11_NODES = 8


def _listening_ports() -> set[int]:
    """TCP ports in LISTEN on this machine (``ss -ltnH``)."""
    lines = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in lines.splitlines() if line.strip()}


def _ours(root: Path) -> list[psutil.Process]:
    """Living processes of the cluster in `root` (its daemon and nodes), by command line."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if is_cluster_process(cmdline, str(root)) and alive(proc):
            found.append(proc)
    return found


def _cluster_doc(root: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((root / "cluster.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    nodes = doc.get("nodes", [])
    up = len(nodes) == R11_NODES and all(n["state"] == "up" and n["os_pid"] for n in nodes)
    return doc if up else None


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_r11_cluster_cli_teardown_leaves_nothing(
    tmp_path: Path, measure: Measure, sig: signal.Signals
) -> None:
    root = tmp_path / "cluster"
    argv = [sys.executable, "-m", "partisan", "cluster", "up", "-n", str(R11_NODES)]
    with open(tmp_path / "up.out", "w") as out, open(tmp_path / "up.err", "w") as err:
        up = subprocess.Popen([*argv, "--dir", str(root)], stdin=subprocess.DEVNULL, stdout=out,
                              stderr=err, cwd=tmp_path)  # fmt: skip
    try:
        doc = wait_until(lambda: _cluster_doc(root), 90.0, message=f"{R11_NODES} nodes up")
        pids = {n["os_pid"] for n in doc["nodes"]} | {doc["supervisor_pid"]}
        ports = {int(n["address"].rsplit(":", 1)[1]) for n in doc["nodes"]}
        assert ports <= _listening_ports()
        assert {p.pid for p in _ours(root)} == pids  # the ps check sees the whole cluster
        sent = time.monotonic()
        up.send_signal(sig)
        wait_until(lambda: not any(_alive(p) for p in pids), 30.0,
                   message="every cluster process gone")  # fmt: skip
        gone = time.monotonic() - sent
        up.wait(timeout=30)
        orphans = _ours(root)
        bound = ports & _listening_ports()
        secrets = list((root / "keys" / PRIVATE_DIR).iterdir())
        loose = [s.name for s in secrets if stat.S_IMODE(s.stat().st_mode) != 0o600]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
        subprocess.run([*argv[:4], "down", "--dir", str(root)], capture_output=True, timeout=60)
        for proc in _ours(root):
            proc.kill()
    goal = f"{sig.name} to `cluster up -n {R11_NODES}`: children exit, no orphan, ports and keys"
    measure(
        "R11", "cluster_cli_teardown", f"{sig.name}: last of {len(pids)} processes gone", gone, 2.0,
        "s", goal, "daemon + 8 nodes, from the signal; 2 shared cores", fatal=False,
    )  # fmt: skip
    measure(
        "R11", "cluster_cli_teardown", f"{sig.name}: orphan processes (ps)", len(orphans), 0,
        "count", goal, ", ".join(str(p.pid) for p in orphans),
    )  # fmt: skip
    measure(
        "R11", "cluster_cli_teardown", f"{sig.name}: node ports still listening (ss)", len(bound),
        0, "count", goal, f"{len(ports)} ports checked",
    )  # fmt: skip
    measure(
        "R11", "cluster_cli_teardown", f"{sig.name}: secret key files not mode 0600", len(loose),
        0, "count", goal, f"{len(secrets)} secret key files checked",
    )  # fmt: skip
    assert up.returncode in (0, 130), (tmp_path / "up.err").read_text()[-2000:]
    assert secrets


def _alive(pid: int) -> bool:
    try:
        return alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False

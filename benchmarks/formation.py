"""Formation speed, idle cost and memory of real clusters (issue 10, items 1-3).

For each manager and size, in one run:

* **bare start**: `n` interpreters importing what a node imports, started at
  once, until each has printed a line: the floor no formation can beat on
  this machine (two cores share every interpreter start);
* **formed in**: ``partisan node start`` processes (CURVE on, default
  settings unless stated), n1 first and then everyone else at once joining
  n1, from the first spawn until an observer (the one ``partisan cluster``
  uses, polling every 0.2 s) sees the cluster ``converged``; beside it, when
  the last node printed its ready line and when the active views last
  changed (the nodes' event logs), which says how much of the figure is the
  observer's own latency;
* **CURVE handshakes** per formation: the sum over nodes of the ZAP
  handler's admitted handshakes (one per connected DEALER, every lane of
  every link, temporary links included; the observer's own are subtracted),
  and their CPU at the per-handshake cost measured in this run
  (`_handshake_cpu`: both ends, ZAP included);
* **idle CPU**: the nodes' CPU seconds over a quiet window after formation
  (the observer stopped), as a share of one core, summed over nodes;
* **memory**: median RSS and USS per idle node.

Goals (issue 10): HyParView 64 <= 1.5x bare + 1 s, 128 <= 1.5x bare + 2 s;
full mesh 32 <= 2.5x bare (default heartbeats) and <= 3x with heartbeat
0.1 s; idle full mesh 32 <= 5 % of one core in total; <= 32 MB RSS /
<= 24 MB USS per idle node.

``python -m benchmarks.formation [--quick] [hyparview:64 full-mesh:32 ...]``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.node_probes import auth_admitted
from partisan.cluster.layout import CliIdentity, ClusterDir
from partisan.cluster.observer import Observer
from partisan.transport.keys import create_keys

_NODE_IMPORTS = (
    "import partisan.cli, partisan.commands.node, partisan.node, partisan.transport.links"
)
#: Seconds of quiet measured for idle CPU.
IDLE_SECONDS = 10.0


def _bare(n: int) -> float:
    """Seconds for `n` interpreters importing a node's modules, started at once, to print."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", f"{_NODE_IMPORTS}; print('{{}}', flush=True)"],
            stdout=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()
    took = time.perf_counter() - t0
    for proc in procs:
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    return took


def _spawn(name: str, manager: str, cluster: ClusterDir, join: str | None, sets: list[str]):
    argv = [sys.executable, "-m", "partisan", "node", "start", name, "--port", "0"]
    argv += ["--manager", manager, "--keys", str(cluster.keys)]
    argv += ["--event-log", str(cluster.event_log(name))]
    for setting in sets:
        argv += ["--set", setting]
    if join:
        argv += ["--join", join, "--join-timeout", "30"]
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


async def _observe(cluster: ClusterDir, names: list[str], t0: float) -> tuple[float, int]:
    """(seconds from t0 until converged, CURVE handshakes the nodes admitted, ours excluded)."""
    import partisan

    with CliIdentity(cluster) as identity:
        async with Observer(cluster, identity.name, timeout=2.0) as observer:
            deadline = time.monotonic() + 300
            while not (await observer.snapshot()).converged:
                if time.monotonic() > deadline:
                    raise TimeoutError("the cluster did not converge")
                await asyncio.sleep(0.2)
            took = time.perf_counter() - t0
            print(f"  converged after {took:.2f} s", file=sys.stderr)
            assert observer.node is not None
            counts = []
            with observer.node.as_current():
                for name in names:
                    try:
                        counts.append(await partisan.rpc(name, auth_admitted, timeout=30))
                    except Exception as exc:  # a count is not worth failing the row for
                        print(f"  {name}: {exc!r}", file=sys.stderr)
            ours = len(names)  # the observer's one default-lane DEALER to each node
    return took, sum(counts) - ours


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _memory(pids: list[int]) -> tuple[float, float]:
    rss, uss = [], []
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss / 2**20)
        uss.append(info.uss / 2**20)
    return statistics.median(rss), statistics.median(uss)


def form(n: int, manager: str, root: Path, sets: list[str], idle: float) -> dict[str, Any]:
    """Form a cluster; its formation time, handshakes, idle CPU and memory."""
    cluster = ClusterDir(root)
    cluster.make()
    names = [f"n{i}" for i in range(1, n + 1)]
    create_keys(cluster.keys, names)
    t0 = time.perf_counter()
    t0_mono = time.monotonic()
    procs = {"n1": _spawn("n1", manager, cluster, None, sets)}
    ready = {"n1": json.loads(procs["n1"].stdout.readline())}  # type: ignore[union-attr]
    seed = f"n1@{ready['n1']['address']}"
    procs.update({name: _spawn(name, manager, cluster, seed, sets) for name in names[1:]})
    try:
        for name in names[1:]:
            ready[name] = json.loads(procs[name].stdout.readline())  # type: ignore[union-attr]
        all_ready = time.perf_counter() - t0
        cluster.write_state(
            {
                "version": 1,
                "state": "running",
                "manager": manager,
                "dir": str(root),
                "supervisor_pid": None,
                "configured_links": [],
                "nodes": [
                    {
                        "name": name,
                        "address": ready[name]["address"],
                        "role": None,
                        "os_pid": procs[name].pid,
                        "incarnation": ready[name].get("incarnation"),
                        "log": None,
                        "event_log": str(cluster.event_log(name)),
                        "state": "up",
                        "restarts": 0,
                        "error": None,
                    }
                    for name in names
                ],
            }
        )
        took, handshakes = asyncio.run(_observe(cluster, names, t0))
        settled = _views_settled(cluster, names, t0_mono, t0_mono + took)
        pids = [p.pid for p in procs.values()]
        time.sleep(2.0)  # the observer's links close; post-formation shuffles settle
        before, began = _cpu(pids), time.perf_counter()
        time.sleep(idle)
        idle_cpu = (_cpu(pids) - before) / (time.perf_counter() - began)
        rss, uss = _memory(pids)
        return {
            "formed": took,
            "all_ready": all_ready,
            "settled": max(all_ready, settled),
            "handshakes": handshakes,
            "idle_cpu": idle_cpu,
            "rss": rss,
            "uss": uss,
        }
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _views_settled(cluster: ClusterDir, names: list[str], t0: float, until: float) -> float:
    """Seconds from `t0` to the last ``view.active`` change any node logged before `until`.

    The observer confirms convergence only after every node is ready, its own
    links are up and one snapshot is done (~1.5 s at 128 nodes on two cores);
    the nodes' event logs (``mono`` is this machine's monotonic clock) say
    when the active views last changed. For HyParView that is when the
    confirmed overlay came to be (convergence depends on the active views
    alone); for full mesh, links may still finish their handshakes after it.
    """
    last = t0
    for name in names:
        try:
            lines = cluster.event_log(name).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "view.active" and record.get("mono", until) <= until:
                last = max(last, float(record["mono"]))
    return last - t0


def _handshake_cpu(k: int = 64) -> float:
    """CPU seconds per CURVE handshake (both ends, ZAP included), this process's threads."""
    import zmq

    from partisan.transport.auth import Authenticator
    from partisan.transport.keys import KeyStore

    with tempfile.TemporaryDirectory() as tmp:
        create_keys(Path(tmp), ["server", "client"])
        server, client = KeyStore(tmp, "server"), KeyStore(tmp, "client")
        ctx = zmq.Context()
        auth = Authenticator(ctx, server)
        auth.start()  # no running loop: we call process_pending ourselves
        router = ctx.socket(zmq.ROUTER)
        router.curve_server = True
        router.curve_secretkey = server.secret_key
        router.zap_domain = b"partisan"
        port = router.bind_to_random_port("tcp://127.0.0.1")
        began = time.process_time()
        dealers = []
        monitors = []
        for _ in range(k):
            d = ctx.socket(zmq.DEALER)
            d.curve_serverkey = server.public_key.encode()
            d.curve_publickey = client.public_key.encode()
            d.curve_secretkey = client.secret_key
            monitors.append(d.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED))
            d.connect(f"tcp://127.0.0.1:{port}")
            dealers.append(d)
        pending = set(range(k))
        while pending:
            auth.process_pending()
            for i in list(pending):
                if monitors[i].poll(1, zmq.POLLIN):
                    monitors[i].recv_multipart()
                    pending.discard(i)
        took = time.process_time() - began
        for d in dealers:
            d.disable_monitor()
            d.close(0)
        for m in monitors:
            m.close(0)
        router.close(0)
        auth.stop()
        ctx.term()
    return took / k


CASES_FULL = [
    ("hyparview", 8, []),
    ("hyparview", 16, []),
    ("hyparview", 32, []),
    ("hyparview", 64, []),
    ("hyparview", 128, []),
    ("full-mesh", 8, []),
    ("full-mesh", 16, []),
    ("full-mesh", 32, []),
    ("full-mesh", 32, ["heartbeat_interval=0.1", "heartbeat_timeout=0.5"]),
]
CASES_QUICK = [("hyparview", 16, []), ("full-mesh", 16, [])]

GOALS = {
    ("hyparview", 64): lambda bare: 1.5 * bare + 1.0,
    ("hyparview", 128): lambda bare: 1.5 * bare + 2.0,
}


def _goal(manager: str, n: int, sets: list[str], bare: float) -> tuple[str, float | None]:
    if (manager, n) in GOALS:
        limit = GOALS[(manager, n)](bare)
        return ("<= 1.5x bare + 1 s" if n == 64 else "<= 1.5x bare + 2 s"), limit
    if manager == "full-mesh" and n == 32:
        return ("<= 3x bare", 3 * bare) if sets else ("<= 2.5x bare", 2.5 * bare)
    return "", None


def run(args: Any) -> list[dict[str, Any]]:
    quick = bool(getattr(args, "quick", False))
    cases = CASES_QUICK if quick else CASES_FULL
    only = getattr(args, "cases", None)
    if only:
        cases = [c for c in CASES_FULL if f"{c[0]}:{c[1]}" in only] or [
            (m, int(n), []) for m, n in (s.split(":") for s in only)
        ]
    idle = 5.0 if quick else IDLE_SECONDS
    per_handshake = _handshake_cpu()
    rows: list[dict[str, Any]] = [
        {
            "name": "CURVE handshake CPU (both ends + ZAP, one process)",
            "value": per_handshake * 1e3,
            "unit": "ms",
        }
    ]
    with tempfile.TemporaryDirectory(prefix="partisan-form-") as tmp:
        _bare(4)  # warm the page cache and bytecode: neither side's cost
        for i, (manager, n, sets) in enumerate(cases):
            root = Path(tmp) / f"{manager}{n}-{i}"
            # Bare start right before, the cluster right after: the same machine load.
            bare = _bare(n)
            got = form(n, manager, root, sets, idle)
            label = f"{manager} n={n}" + (f" ({', '.join(sets)})" if sets else "")
            goal, limit = _goal(manager, n, sets, bare)
            met = "" if limit is None else f"; met={got['formed'] <= limit}"
            rows.append(
                {
                    "name": f"formed, {label}",
                    "value": got["formed"],
                    "unit": "s",
                    "baseline": bare,
                    "ratio": got["formed"] / bare,
                    "goal": goal,
                    "note": f"baseline: bare start of {n} interpreters{met}; "
                    f"all ready at {got['all_ready']:.2f} s, views last changed at "
                    f"{got['settled']:.2f} s (event logs)",
                }
            )
            rows.append(
                {
                    "name": f"CURVE handshakes, {label}",
                    "value": float(got["handshakes"]),
                    "unit": "handshakes",
                    "note": f"~{got['handshakes'] * per_handshake:.2f} s CPU "
                    f"({got['handshakes'] / n:.1f} per node)",
                }
            )
            cpu_goal = "<= 5% of one core" if manager == "full-mesh" and n == 32 else ""
            rows.append(
                {
                    "name": f"idle CPU, {label} (sum over nodes)",
                    "value": got["idle_cpu"] * 100,
                    "unit": "% of one core",
                    "goal": cpu_goal,
                    "note": f"{idle:.0f} s window"
                    + (f"; met={got['idle_cpu'] <= 0.05}" if cpu_goal else ""),
                }
            )
            rows.append(
                {
                    "name": f"memory per idle node, {label} (median)",
                    "value": got["rss"],
                    "unit": "MB RSS",
                    "goal": "<= 32 MB RSS / <= 24 MB USS",
                    "note": f"USS {got['uss']:.1f} MB; met={got['rss'] <= 32 and got['uss'] <= 24}",
                }
            )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("cases", nargs="*", help="manager:n, e.g. hyparview:64")
    for row in run(parser.parse_args()):
        print(row)

"""Simulated hosts: clusters across namespaces with CURVE, and cleanup even on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from partisan.testing import wait_until
from partisan.testing.hosts import SimulatedHosts, leftovers, sweep_stale

NAMES = ["n1", "n2", "n3"]


def _args(keys: dict[str, Path], name: str, manager: str, *extra: str) -> list[str]:
    return ["--keys", str(keys[name]), "--manager", manager, "--port", "9100", *extra]


@pytest.mark.chaos_quick
@pytest.mark.timeout(90)
@pytest.mark.parametrize("manager", ["full-mesh", "hyparview", "client-server", "static"])
def test_managers_form_clusters_across_hosts(
    hosts: SimulatedHosts, host_keys: Callable[[list[str]], dict[str, Path]], manager: str
) -> None:
    """Three hosts, one node each, bound on 0.0.0.0 and reached only by advertised addresses."""
    keys = host_keys(NAMES)
    h = [hosts.add_host() for _ in NAMES]
    role = {"client-server": ["--role", "server"]}.get(manager, [])
    client = {"client-server": ["--role", "client"]}.get(manager, [])
    n1 = h[0].start_node("n1", *_args(keys, "n1", manager, *role))
    assert n1.address == f"{h[0].address}:9100"  # advertised, not the 0.0.0.0 it binds
    assert h[0].listening() == ["0.0.0.0:9100"]
    n2 = h[1].start_node("n2", *_args(keys, "n2", manager, *client, "--join", str(n1.spec)))
    joins = ["--join", str(n2.spec)] if manager == "static" else []  # a line n1-n2-n3
    n3 = h[2].start_node(
        "n3", *_args(keys, "n3", manager, *client, *(joins or ["--join", str(n1.spec)]))
    )
    nodes = {"n1": n1, "n2": n2, "n3": n3}
    expected = {
        "full-mesh": {name: [n for n in NAMES if n != name] for name in NAMES},
        "hyparview": {name: [n for n in NAMES if n != name] for name in NAMES},
        "client-server": {"n1": ["n2", "n3"], "n2": ["n1"], "n3": ["n1"]},
        "static": {"n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"]},
    }[manager]

    def converged() -> bool:
        return all(nodes[n].request("view")["nodes"] == expected[n] for n in NAMES)

    wait_until(converged, 20, message=lambda: {n: p.request("view") for n, p in nodes.items()})
    for name, node in nodes.items():  # every link is CURVE: the ZAP handler admitted each peer
        assert node.request("security")["auth"]["admitted"] >= 1, name


_INTERRUPTED = textwrap.dedent(
    """
    import json, sys, time
    from partisan.testing.hosts import SimulatedHosts
    from partisan.transport.keys import create_keys
    create_keys(sys.argv[1], ["n1", "n2"])
    hosts = SimulatedHosts(2)
    a = hosts["h1"].start_node("n1", "--keys", sys.argv[1], "--port", "9100")
    b = hosts["h2"].start_node("n2", "--keys", sys.argv[1], "--join", str(a.spec))
    hosts["h1"].iptables("-A", "INPUT", "-s", "10.213.0.9", "-j", "DROP")
    print(json.dumps({"prefix": hosts.prefix, "pids": [a.pid, b.pid]}), flush=True)
    try:
        while True:
            time.sleep(0.1)  # ok-sleep: the script idles until Ctrl-C
    finally:
        hosts.close()
    """
)


def _start_owner(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    script = tmp_path / "owner.py"
    script.write_text(_INTERRUPTED)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "keys")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"owner did not start: {err}")
    return proc, json.loads(line)


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_ctrl_c_leaves_nothing(hosts: SimulatedHosts, tmp_path: Path) -> None:
    """SIGINT to a run with hosts, nodes and a rule: no namespace, link, rule or process left."""
    proc, run = _start_owner(tmp_path)
    prefix, pids = str(run["prefix"]), [int(p) for p in run["pids"]]  # type: ignore[attr-defined]
    assert leftovers(prefix, pids), "the run should exist before the interrupt"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)  # closes the pipes too
    assert proc.returncode != 0  # KeyboardInterrupt: it exits with an error, after cleaning up
    wait_until(lambda: not leftovers(prefix, pids), 10, message=lambda: leftovers(prefix, pids))
    assert not any(ns.startswith(prefix) for ns in _netns())
    assert prefix not in _run("iptables", "-S") and prefix not in _run("ip", "link")


@pytest.mark.chaos_quick
@pytest.mark.timeout(60)
def test_sweeper_removes_a_killed_run(hosts: SimulatedHosts, tmp_path: Path) -> None:
    """A run killed by SIGKILL cannot clean up; the next run's sweeper removes its leftovers."""
    proc, run = _start_owner(tmp_path)
    prefix, pids = str(run["prefix"]), [int(p) for p in run["pids"]]  # type: ignore[attr-defined]
    proc.kill()
    proc.communicate(timeout=10)
    assert any(ns.startswith(prefix) for ns in _netns())
    swept = sweep_stale()
    assert sorted(ns for ns in swept if ns.startswith(prefix)) == sorted(
        f"{prefix}-{n}" for n in ("hub", "h1", "h2")
    )
    wait_until(lambda: not leftovers(prefix, pids), 10, message=lambda: leftovers(prefix, pids))
    assert not any(ns.startswith(hosts.prefix) for ns in swept)  # a live run is never swept


def _netns() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout


@pytest.mark.chaos_quick
@pytest.mark.timeout(10)
def test_names_are_per_run() -> None:
    from partisan.testing.hosts import run_prefix

    assert run_prefix() == run_prefix(os.getpid())
    assert run_prefix().startswith(f"ptc{os.getpid()}x")
    assert run_prefix(1) != run_prefix()

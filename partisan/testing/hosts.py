"""Simulated hosts: each node in its own network namespace, on a private bridge.

Theory of operation
-------------------
`SimulatedHosts` builds, per run, one *hub* namespace holding a bridge and
one namespace per host, each with an ``eth0`` (a veth whose other end is a
bridge port in the hub) carrying ``10.213.0.<i>/24`` and a loopback. Every
veth is created with both ends already inside the run's namespaces, so the
machine's own namespace never gets an interface, an address or a rule from
us; the addresses exist only inside namespaces this run created, so nothing
outside the machine can ever be a target. Faults are iptables rules inside a
host's namespace (they vanish with it).

Names carry a run prefix ``ptc<pid>x<start>`` (the owning process's pid and
its kernel start time in base 36), so parallel runs never collide and a
leftover of a dead run is recognisable: `sweep_stale` deletes the namespaces
(killing the processes still inside them) of every run whose owner is gone,
and never touches a live run's or anything without our prefix.

Cleanup (`close`, also on ``with`` exit, on Ctrl-C and from an ``atexit``
hook) stops node processes (stdin EOF, SIGTERM, SIGKILL), kills whatever
still runs in the run's namespaces (``ip netns pids``), deletes them, and
`leftovers()` lists anything that survived, for the tests to assert it is
empty. A process killed with SIGKILL cannot clean up: its nodes exit when
their stdin closes, and the next run's sweeper deletes its namespaces.

Needs root, ``ip`` (iproute2) and ``iptables``; `require()` fails with one
line naming what is missing (``make chaos-tools`` installs the packages).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from partisan.testing.process import NodeProcess

__all__ = [
    "HostsUnavailable",
    "SimulatedHost",
    "SimulatedHosts",
    "capability_problem",
    "leftovers",
    "run_prefix",
    "sweep_stale",
]

log = logging.getLogger(__name__)

SUBNET = ipaddress.ip_network("10.213.0.0/24")
_PREFIX_RE = re.compile(r"^ptc(\d+)x([0-9a-z]+)-")
_TIMEOUT = 10.0


class HostsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip`` / ``iptables``): one line says why."""


def capability_problem() -> str | None:
    """Why simulated hosts cannot run here, in one line, or None if they can."""
    if sys.platform != "linux":
        return "simulated hosts need Linux network namespaces"
    if os.geteuid() != 0:
        return "simulated hosts need root (CAP_NET_ADMIN) for ip netns"
    missing = [tool for tool in ("ip", "iptables", "ss") if shutil.which(tool) is None]
    if missing:
        return f"simulated hosts need {', '.join(missing)}: run 'make chaos-tools'"
    probe = f"{run_prefix()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip() or made.returncode}"
    try:
        rules = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables", "-S"], capture_output=True, text=True
        )
        if rules.returncode != 0:
            return f"iptables does not work in a namespace: {rules.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _start_ticks(pid: int) -> str | None:
    """The kernel start time of `pid` in base 36 (tells a live owner from a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        ticks, rest = divmod(ticks, 36)
        out = digits[rest] + out
        if not ticks:
            return out


def run_prefix(pid: int | None = None) -> str:
    """The name prefix of the run owned by `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"ptc{pid}x{_start_ticks(pid) or '0'}"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT)
    if check and done.returncode != 0:
        raise HostsUnavailable(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def _namespaces() -> list[str]:
    done = _run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _kill_namespace(ns: str) -> None:
    """Kill every process in `ns`, then delete it."""
    for _ in range(50):
        pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    _run("ip", "netns", "del", ns, check=False)


def sweep_stale() -> list[str]:
    """Delete the namespaces of runs whose owner process is gone; return their names."""
    swept = []
    for ns in _namespaces():
        match = _PREFIX_RE.match(ns)
        if match is None:
            continue
        pid, ticks = int(match.group(1)), match.group(2)
        if _start_ticks(pid) == ticks:
            continue  # its owner still runs
        _kill_namespace(ns)
        swept.append(ns)
    if swept:
        log.warning("removed %d namespaces of dead runs: %s", len(swept), " ".join(swept))
    return swept


@dataclass(eq=False)
class SimulatedHost:
    """One simulated host: a namespace, its address, the nodes started in it."""

    name: str
    namespace: str
    address: str
    nodes: list[NodeProcess] = field(default_factory=list)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host (``ip netns exec``, which execs: same pid)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host and return its completed process."""
        return _run(*self.exec_argv(argv), check=check)

    def iptables(self, *rule: str) -> None:
        """Apply one iptables command inside this host (its rules die with it)."""
        self.run("iptables", "-w", *rule)

    def listening(self) -> list[str]:
        """``ss -ltn`` local addresses listening in this host, e.g. ``10.213.0.1:9100``."""
        lines = self.run("ss", "-Hltn").stdout.splitlines()
        return [line.split()[3] for line in lines if len(line.split()) >= 4]

    def start_node(
        self,
        name: str,
        *args: str,
        module: str = "partisan.testing.membernode",
        bind: str | None = "0.0.0.0",
        advertise: bool = True,
        ready_timeout: float = 30.0,
    ) -> NodeProcess:
        """Start a node process in this host and wait for its ready line.

        `module` is ``partisan`` (``partisan node start``) or a scripted node
        (default `partisan.testing.membernode`, which takes the same options).
        It binds `bind` (``--host``; None leaves the default) and advertises
        this host's address (``--advertise-host``) unless `advertise` is False.
        """
        argv = [sys.executable, "-m", module]
        if module == "partisan":
            argv += ["node", "start"]
        argv.append(name)
        if bind is not None:
            argv += ["--host", bind]
        if advertise:
            argv += ["--advertise-host", self.address]
        argv += list(args)
        node = NodeProcess(self.exec_argv(argv), ready_timeout=ready_timeout)
        self.nodes.append(node)
        return node


class SimulatedHosts:
    """A run's private network of simulated hosts (a context manager).

    ``SimulatedHosts(3)`` makes hosts ``h1..h3`` at ``10.213.0.1..3``;
    `add_host` adds more. Always `close` it (``with`` does, also on errors).
    """

    def __init__(self, count: int = 0, *, sweep: bool = True) -> None:
        problem = capability_problem()
        if problem is not None:
            raise HostsUnavailable(problem)
        if sweep:
            sweep_stale()
        self.prefix = run_prefix()
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, SimulatedHost] = {}
        self._closed = False
        atexit.register(self.close)
        try:
            _run("ip", "netns", "add", self.hub)
            _run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.hub, "link", "set", "br0", "up")
            for _ in range(count):
                self.add_host()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> SimulatedHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> SimulatedHost:
        return self.hosts[name]

    def namespaces(self) -> list[str]:
        """Every namespace of this run that exists now."""
        return [ns for ns in _namespaces() if ns.startswith(self.prefix + "-")]

    def add_host(self) -> SimulatedHost:
        """Create the next host ``h<i>`` with address ``10.213.0.<i>``."""
        index = len(self.hosts) + 1
        if index > 250:
            raise ValueError("at most 250 simulated hosts")
        name = f"h{index}"
        ns = f"{self.prefix}-{name}"
        address = str(SUBNET.network_address + index)
        veth = f"pc{os.getpid()}h{index}"[:15]
        _run("ip", "netns", "add", ns)
        host = self.hosts[name] = SimulatedHost(name, ns, address)
        # Both ends are born inside our namespaces: the root namespace never sees them.
        _run(
            "ip", "link", "add", veth, "netns", self.hub,
            "type", "veth", "peer", "name", "eth0", "netns", ns,
        )  # fmt: skip
        _run("ip", "-n", self.hub, "link", "set", veth, "master", "br0")
        _run("ip", "-n", self.hub, "link", "set", veth, "up")
        _run("ip", "-n", ns, "addr", "add", f"{address}/{SUBNET.prefixlen}", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return host

    def nodes(self) -> list[NodeProcess]:
        return [node for host in self.hosts.values() for node in host.nodes]

    def close(self) -> None:
        """Stop every node, kill what is left in our namespaces, delete them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        # Ctrl-C again while we clean up must not leave half a network behind.
        previous = signal.getsignal(signal.SIGINT)
        restore = _is_main_thread()
        if restore:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for node in self.nodes():
                try:
                    node.stop(timeout=5.0)
                except Exception as exc:  # keep cleaning; the leftovers check reports it
                    log.warning("stopping %s: %s", node, exc)
            for ns in [*self.namespaces(), self.hub]:
                _kill_namespace(ns)
        finally:
            if restore:
                signal.signal(signal.SIGINT, previous)

    def leftovers(self) -> list[str]:
        """What of this run still exists (namespaces, root-namespace links, rules, processes)."""
        return leftovers(self.prefix, [node.pid for node in self.nodes()])


def leftovers(prefix: str, pids: Sequence[int] = ()) -> list[str]:
    """Anything named `prefix` (namespace, link, iptables rule) or a pid in `pids` still alive."""
    found = [f"namespace {ns}" for ns in _namespaces() if ns.startswith(prefix)]
    veth_stem = f"pc{prefix[3:].split('x')[0]}h"
    links = _run("ip", "-o", "link", "show", check=False).stdout
    found += [
        f"link {line.split(':')[1].strip()}" for line in links.splitlines() if veth_stem in line
    ]
    rules = _run("iptables", "-w", "-S", check=False).stdout
    found += [f"iptables {line}" for line in rules.splitlines() if prefix in line]
    for pid in pids:
        if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
            found.append(f"process {pid}")
    return found


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

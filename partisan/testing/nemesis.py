"""The nemesis: faults on a `SimulatedHosts` run, each logged, all undone by `heal`.

Why a separate object: a chaos scenario (or a seeded schedule built on top)
must know exactly what it broke, so it can say which fault caused each
`NodeDown` and put everything back. Every fault is one method, appended to
`Nemesis.log` as ``{"time": time.monotonic(), "op": ..., "args": {...}}``
(namespaces share the machine's monotonic clock with the nodes' event logs).

How each fault is made (the kernel here has no ``netem``):

* ``kill`` / ``pause`` / ``resume``: SIGKILL, SIGSTOP, SIGCONT to the node
  process (`NodeProcess`);
* ``partition``, ``cut_one_way``, ``bridge``, ``random_halves``, ``loss``:
  iptables rules in the *INPUT* path of the receiving host — packets leave
  their sender and vanish on the way, as on a real network (an OUTPUT drop
  would instead fail the sender's own syscalls). Silent cuts are ``DROP``;
  ``reject=True`` answers TCP with ``REJECT --reject-with tcp-reset``, lets
  the resets through (else two rejecting sides eat each other's RST) and
  drops anything else. Loss is ``-m statistic --mode random``;
* ``rate_limit``: ``tc qdisc replace dev eth0 root tbf`` on the host (egress);
* ``delay`` / ``duplicate``: in user space, through the node's fault
  injector (the membernode ``fault`` command, `partisan.delivery.faults`).

Every iptables rule goes into a chain of this nemesis's own (``NEM<n>``,
jumped to from INPUT, created on first use), so `heal` removes exactly what
it added: it flushes and deletes that chain, deletes the root qdiscs it set,
clears the fault rules it added (by id) and resumes the nodes it paused. A
host or node that is gone by then is skipped: `heal` is idempotent and safe
after a kill. Killed nodes stay dead (restarting is the caller's business: a
restart is a new incarnation). Not thread-safe: drive one nemesis from one
thread (a schedule), as each call runs its commands to completion.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from partisan.testing.hosts import HostsUnavailable, SimulatedHost, SimulatedHosts
from partisan.testing.process import NodeProcess, NodeProcessError

__all__ = ["Nemesis"]

_CHAINS = itertools.count(1)


class Nemesis:
    """Faults on a SimulatedHosts run, each logged (time.monotonic(), op, args) in .log."""

    def __init__(self, hosts: SimulatedHosts) -> None:
        self.hosts = hosts
        self.log: list[dict[str, Any]] = []
        self.chain = f"NEM{next(_CHAINS)}"
        self._chained: list[SimulatedHost] = []  # hosts with our chain (and its jump)
        self._shaped: list[SimulatedHost] = []  # hosts with our root qdisc
        self._paused: list[NodeProcess] = []
        self._rules: list[tuple[NodeProcess, int]] = []  # user-space fault rules by id

    # ------------------------------------------------------------ processes

    def kill(self, node: NodeProcess) -> None:
        """SIGKILL `node` and reap it (no goodbye: its peers must detect it)."""
        self._record("kill", node=node.name, pid=node.pid, incarnation=node.incarnation)
        node.kill()
        if node in self._paused:
            self._paused.remove(node)

    def pause(self, node: NodeProcess) -> None:
        """SIGSTOP `node`: alive to TCP, silent to heartbeats (a GC pause, a stalled VM)."""
        self._record("pause", node=node.name, pid=node.pid)
        node.signal(signal.SIGSTOP)
        if node not in self._paused:
            self._paused.append(node)

    def resume(self, node: NodeProcess) -> None:
        """SIGCONT `node`."""
        self._record("resume", node=node.name, pid=node.pid)
        node.signal(signal.SIGCONT)
        if node in self._paused:
            self._paused.remove(node)

    # ------------------------------------------------------------ network

    def partition(self, *groups: Sequence[SimulatedHost], reject: bool = False) -> None:
        """Cut every pair of hosts in different groups, both ways (DROP, or tcp-reset)."""
        sets = [list(group) for group in groups]
        self._record(
            "partition", groups=[_names(g) for g in sets], reject=reject,
            nodes=[_nodes(g) for g in sets],
        )  # fmt: skip
        for i, left in enumerate(sets):
            for right in sets[i + 1 :]:
                for a in left:
                    for b in right:
                        self._block(b, a, reject)
                        self._block(a, b, reject)

    def cut_one_way(self, src: SimulatedHost, dst: SimulatedHost, reject: bool = False) -> None:
        """Packets from `src` never reach `dst` (a rule in `dst`'s INPUT only)."""
        self._record(
            "cut_one_way", src=src.name, dst=dst.name, reject=reject,
            nodes=[_nodes([src]), _nodes([dst])],
        )  # fmt: skip
        self._block(src, dst, reject)

    def bridge(
        self,
        left: Sequence[SimulatedHost],
        middle: SimulatedHost,
        right: Sequence[SimulatedHost],
    ) -> None:
        """Jepsen's bridge: `left` and `right` cannot talk; `middle` still reaches both."""
        self._record(
            "bridge", left=_names(left), middle=middle.name, right=_names(right),
            nodes=[_nodes(left), _nodes([middle]), _nodes(right)],
        )  # fmt: skip
        for a in left:
            for b in right:
                self._block(a, b, False)
                self._block(b, a, False)

    def random_halves(
        self, hosts: Sequence[SimulatedHost], rng: random.Random
    ) -> tuple[list[SimulatedHost], list[SimulatedHost]]:
        """Shuffle `hosts` with `rng`, cut them into two halves (DROP); return the halves."""
        order = list(hosts)
        rng.shuffle(order)
        half = len(order) // 2
        first, second = order[:half], order[half:]
        self.partition(first, second)
        return first, second

    def loss(self, a: SimulatedHost, b: SimulatedHost, probability: float = 0.1) -> None:
        """Drop each packet between `a` and `b` (both ways) with `probability`."""
        if not 0.0 < probability <= 1.0:
            raise ValueError(f"loss: probability must be in (0, 1], got {probability}")
        self._record(
            "loss", a=a.name, b=b.name, probability=probability, nodes=[_nodes([a]), _nodes([b])]
        )
        for src, dst in ((a, b), (b, a)):
            self._rule(
                dst, "-s", src.address, "-m", "statistic", "--mode", "random",
                "--probability", f"{probability:.6f}", "-j", "DROP",
            )  # fmt: skip

    def rate_limit(
        self,
        host: SimulatedHost,
        rate: str = "1mbit",
        burst: str = "32kbit",
        latency: str = "400ms",
    ) -> None:
        """Shape everything `host` sends (tbf on its eth0; a second call replaces the first)."""
        self._record("rate_limit", host=host.name, rate=rate, burst=burst, latency=latency)
        host.run(
            "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
            "rate", rate, "burst", burst, "latency", latency,
        )  # fmt: skip
        if host not in self._shaped:
            self._shaped.append(host)

    # ------------------------------------------------------------ user space

    def delay(self, node: NodeProcess, peer: str, seconds: float, jitter: float = 0.0) -> None:
        """Hold `node`'s messages to and from `peer` `seconds` (+ up to `jitter`)."""
        self._record("delay", node=node.name, peer=peer, seconds=seconds, jitter=jitter)
        self._fault(node, "delay", peer=peer, seconds=seconds, jitter=jitter)

    def duplicate(self, node: NodeProcess, peer: str, probability: float) -> None:
        """Deliver `node`'s messages to and from `peer` twice with `probability`."""
        self._record("duplicate", node=node.name, peer=peer, probability=probability)
        self._fault(node, "duplicate", peer=peer, probability=probability)

    # ------------------------------------------------------------ heal

    def heal(self) -> None:
        """Remove every rule, qdisc and fault this nemesis added; resume paused nodes.

        Idempotent; hosts and nodes that are gone are skipped.
        """
        self._record("heal")
        for node in self._paused:
            node.signal(signal.SIGCONT)
        self._paused.clear()
        for host in self._chained:
            host.run("iptables", "-w", "-D", "INPUT", "-j", self.chain, check=False)
            host.run("iptables", "-w", "-F", self.chain, check=False)
            host.run("iptables", "-w", "-X", self.chain, check=False)
        self._chained.clear()
        for host in self._shaped:
            host.run("tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        self._shaped.clear()
        for node, rule in self._rules:
            if node.proc.poll() is None:
                with contextlib.suppress(NodeProcessError):
                    node.request("fault", op="clear", args={"rule_id": rule})
        self._rules.clear()

    def rules(self, host: SimulatedHost) -> str:
        """This nemesis's iptables rules in `host`, with packet counters (``-L -v -x -n``)."""
        if host not in self._chained:
            return ""
        return host.run("iptables", "-w", "-L", self.chain, "-v", "-x", "-n").stdout

    # ------------------------------------------------------------ internals

    def _record(self, op: str, **args: Any) -> None:
        self.log.append({"time": time.monotonic(), "op": op, "args": args})

    def _block(self, src: SimulatedHost, dst: SimulatedHost, reject: bool) -> None:
        """Packets from `src` are dropped (or TCP-reset) on arrival at `dst`."""
        if reject:
            # The resets themselves must pass, or a symmetric reject eats the other's RST.
            self._rule(dst, "-s", src.address, "-p", "tcp", "--tcp-flags", "RST", "RST",
                       "-j", "RETURN")  # fmt: skip
            self._rule(dst, "-s", src.address, "-p", "tcp", "-j", "REJECT",
                       "--reject-with", "tcp-reset")  # fmt: skip
        self._rule(dst, "-s", src.address, "-j", "DROP")

    def _rule(self, host: SimulatedHost, *spec: str) -> None:
        if host not in self._chained:
            host.run("iptables", "-w", "-N", self.chain)
            self._chained.append(host)
            host.run("iptables", "-w", "-I", "INPUT", "1", "-j", self.chain)
        try:
            host.run("iptables", "-w", "-A", self.chain, *spec)
        except (HostsUnavailable, subprocess.TimeoutExpired) as exc:
            raise HostsUnavailable(f"nemesis rule in {host.name}: {exc}") from exc

    def _fault(self, node: NodeProcess, op: str, **args: Any) -> None:
        rule = node.request("fault", op=op, args=args)["result"]
        self._rules.append((node, int(rule)))


def _names(hosts: Sequence[SimulatedHost]) -> list[str]:
    return [host.name for host in hosts]


def _nodes(hosts: Sequence[SimulatedHost]) -> list[str]:
    """The names of the nodes started on `hosts` (what a NodeDown will name)."""
    return [node.name for host in hosts for node in host.nodes]

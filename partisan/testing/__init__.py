"""Helpers for testing partisan and the applications built on it.

- `NodeProcess`: start node processes with the ready-line protocol (ports are
  whatever the node bound — never guessed), script them, stop them cleanly.
- `wait_until` / `async_wait_until`: wait on a condition with a deadline
  instead of sleeping and hoping.
- `detection_deadline(config)` / `handshake_deadline(config)`: deadlines
  derived from the configuration under test.
- `Snapshot`: leak checks for child processes, sockets and descriptors.
- `Cluster`: a real local cluster for a test, through ``partisan cluster up``
  (``with``/``async with``; kill, restart, wait, status, a client node);
  `connect` joins a running cluster's directory as a hidden node.
- `SimulatedHosts`: nodes on simulated hosts — a network namespace each, on
  a private bridge — for tests of bind vs advertised addresses, real
  partitions and hostile clients (root, ``ip`` and ``iptables``).
- `check_history` / `load_history` / `record_send` / `record_receive` /
  `record_down` / `HistoryReport`: the history checker (exactly once, per-key
  order, causal order, no mail for a later incarnation, NodeUp/NodeDown once
  per incarnation, Down once per monitor) over the nodes' event logs.
- `partisan.testing.faults`: fault injection over a running `Cluster`
  (``partition``, ``heal``, ``drop``, ``delay``, ``duplicate``, ...).
- `partisan.testing.plugin`: pytest fixtures (``no_leaks``, ``node_factory``,
  ``key_dir``, ``fast_heartbeats``, ``partisan_cluster``); load it with
  ``-p partisan.testing.plugin`` or import the fixtures in a conftest.
"""

from __future__ import annotations

from partisan.testing.cluster import Cluster, ClusterClient, ClusterCommandError, connect
from partisan.testing.history import (
    HistoryReport,
    check_history,
    load_history,
    record_down,
    record_receive,
    record_send,
)
from partisan.testing.hosts import HostsUnavailable, SimulatedHost, SimulatedHosts
from partisan.testing.leaks import Snapshot
from partisan.testing.process import NodeProcess, NodeProcessError
from partisan.testing.waiting import (
    WaitTimeout,
    async_wait_until,
    detection_deadline,
    handshake_deadline,
    wait_until,
)

__all__ = [
    "Cluster",
    "ClusterClient",
    "ClusterCommandError",
    "HistoryReport",
    "HostsUnavailable",
    "NodeProcess",
    "NodeProcessError",
    "SimulatedHost",
    "SimulatedHosts",
    "Snapshot",
    "WaitTimeout",
    "async_wait_until",
    "check_history",
    "connect",
    "detection_deadline",
    "handshake_deadline",
    "load_history",
    "record_down",
    "record_receive",
    "record_send",
    "wait_until",
]

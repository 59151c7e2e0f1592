"""A history checker: exactly-once, order, causality, stale incarnations, signals once.

Why from the event logs: they are what a real cluster leaves behind (one
JSON-lines file per node, `partisan/eventlog.py`), so the same checker runs
on our tests, the chaos suite and a user's own application. An application
opts in by recording its sends and receives (`record_send`,
`record_receive`: ``app.send`` / ``app.receive`` records with a message id
unique across the cluster); the nodes add ``signal.nodeup`` /
``signal.nodedown`` (each delivery of NodeUp/NodeDown, with the peer's
incarnation) themselves. The runtime does not log monitor `Down`s (one per
monitor, on a hot path), so an application that wants them checked records
each one it receives with `record_down` (a ``signal.down`` record).

Every record carries the writing node's ``incarnation`` (`partisan.eventlog`),
so a receive says which life of the node got the message; a send may say
which life it addressed (`record_send`'s `peer_incarnation`, e.g. the
incarnation in the destination Pid). Older logs without that field are read
as before: a missing field is simply not checked.

What `check_history` verifies:

* **exactly once**: each sent id is received once (``lost``: never;
  ``duplicated``: more than once; ``phantom``: received, never sent);
* **per-key order**: for one (sender node, receiver node, channel, key), ids
  are received in the order they were sent;
* **causal order** on the channels named in `causal_channels`: a node never
  receives a message before one that causally precedes it and was sent to
  it. Causality is computed from the records themselves (a node's records in
  file order, a send before its receive) with a matrix clock over the nodes;
* **no stale incarnation** (``stale``): a message sent to one incarnation of
  a node (``peer_incarnation`` on the send) is never received by another
  (the receive's ``incarnation``): a restarted node must not get mail meant
  for its previous life;
* **NodeDown once**: each node incarnation reports at most one NodeDown per
  peer incarnation, and NodeUp/NodeDown alternate;
* **Down once**: each monitor (its ref) delivers at most one ``Down``, so a
  monitored incarnation is reported down once per monitor.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HistoryReport", "check_history", "load_history", "record_down", "record_receive", "record_send",
]  # fmt: skip


def _log() -> Any:
    from partisan.actors.process import current
    from partisan.node import node_of

    node = node_of(current().runtime)
    if node is None or node.event_log is None:
        raise RuntimeError(
            "record_send/record_receive/record_down need a running Node with an event log"
        )
    return node.event_log


def record_send(
    msg_id: str, to: str, *, key: Any = None, channel: str = "default",
    peer_incarnation: int | None = None,
) -> None:  # fmt: skip
    """Record that this actor sent message `msg_id` to node `to` (an ``app.send`` record).

    `peer_incarnation`: the incarnation of `to` the message was addressed to
    (a Pid's ``incarnation``), so the checker can flag a later life getting it.
    """
    _log().write(
        "app.send", peer=to, peer_incarnation=peer_incarnation, id=msg_id,
        key=None if key is None else str(key), channel=channel,
    )  # fmt: skip


def record_receive(msg_id: str, sender: str, *, key: Any = None, channel: str = "default") -> None:
    """Record that this actor received `msg_id` from node `sender` (an ``app.receive`` record)."""
    _log().write(
        "app.receive",
        peer=sender,
        id=msg_id,
        key=None if key is None else str(key),
        channel=channel,
    )


def record_down(down: Any) -> None:
    """Record that this actor received the monitor `Down` `down` (a ``signal.down`` record)."""
    pid, ref = down.pid, down.ref
    node = getattr(pid, "node", None) or (pid[1] if isinstance(pid, tuple) else None)
    _log().write(
        "signal.down", peer=node, peer_incarnation=getattr(pid, "incarnation", None),
        reason=str(down.reason), ref=list(ref), pid=str(pid),
    )  # fmt: skip


def load_history(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read event-log files (JSON lines; a torn last line is skipped), in file order."""
    records: list[dict[str, Any]] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue  # a node killed mid-write
    return records


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """What `check_history` found; `ok` when there are no violations."""

    sent: int
    received: int
    lost: tuple[str, ...] = ()
    duplicated: tuple[str, ...] = ()
    phantom: tuple[str, ...] = ()
    out_of_order: tuple[str, ...] = ()
    causal_violations: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    signal_violations: tuple[str, ...] = ()
    violations: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.violations


def check_history(
    records: Iterable[dict[str, Any]], *, causal_channels: Iterable[str] = ()
) -> HistoryReport:
    """Check the records of every node's event log (see the module docstring)."""
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_node[str(rec.get("node"))].append(rec)
    sends: dict[str, tuple[str, dict[str, Any]]] = {}
    receives: Counter[str] = Counter()
    got: list[dict[str, Any]] = []
    for node, recs in by_node.items():
        for rec in recs:
            if rec.get("event") == "app.send":
                sends[rec["id"]] = (node, rec)
            elif rec.get("event") == "app.receive":
                receives[rec["id"]] += 1
                got.append(rec)
    lost = tuple(sorted(i for i in sends if receives[i] == 0))
    duplicated = tuple(sorted(i for i, n in receives.items() if n > 1))
    phantom = tuple(sorted(i for i in receives if i not in sends))
    order = _order(by_node, sends)
    causal = _causal(by_node, sends, set(causal_channels))
    stale = _stale(got, sends)
    signals = _signals(by_node) + _downs(by_node)
    violations = (
        [f"lost {i}" for i in lost]
        + [f"duplicated {i}" for i in duplicated]
        + [f"phantom {i}" for i in phantom]
        + list(order) + list(causal) + list(stale) + list(signals)
    )  # fmt: skip
    return HistoryReport(
        len(sends), sum(receives.values()), lost, duplicated, phantom, order, causal, stale,
        signals, tuple(violations),
    )  # fmt: skip


def _stale(got: list[dict[str, Any]], sends: dict[str, Any]) -> tuple[str, ...]:
    """Receives by another incarnation than the one their send addressed (if both are known)."""
    out: list[str] = []
    for rec in got:
        addressed = sends[rec["id"]][1].get("peer_incarnation") if rec["id"] in sends else None
        life = rec.get("incarnation")
        if addressed is not None and life is not None and life != addressed:
            out.append(
                f"stale at {rec.get('node')}: {rec['id']} sent to incarnation {addressed},"
                f" received by {life}"
            )
    return tuple(out)


def _order(by_node: dict[str, list[dict[str, Any]]], sends: dict[str, Any]) -> tuple[str, ...]:
    index: dict[str, int] = {}
    counters: Counter[tuple[Any, ...]] = Counter()
    for msg_id, (node, rec) in sends.items():
        stream = (node, rec.get("peer"), rec.get("channel"), rec.get("key"))
        counters[stream] += 1
        index[msg_id] = counters[stream]
    out: list[str] = []
    for node, recs in by_node.items():
        last: dict[tuple[Any, ...], int] = {}
        for rec in recs:
            if rec.get("event") != "app.receive" or rec["id"] not in sends:
                continue
            sender, srec = sends[rec["id"]]
            stream = (sender, node, srec.get("channel"), srec.get("key"))
            i = index[rec["id"]]
            if i < last.get(stream, 0):
                out.append(f"out of order at {node}: {rec['id']} after a later message of its key")
            last[stream] = max(i, last.get(stream, 0))
    return tuple(out)


def _causal(
    by_node: dict[str, list[dict[str, Any]]], sends: dict[str, Any], channels: set[str]
) -> tuple[str, ...]:
    if not channels:
        return ()
    matrix: dict[str, Counter[tuple[str, str]]] = {n: Counter() for n in by_node}
    got: dict[str, Counter[str]] = {n: Counter() for n in by_node}
    stamped: dict[str, Counter[tuple[str, str]]] = {}
    cursor = dict.fromkeys(by_node, 0)
    out: list[str] = []
    progress = True
    while progress:
        progress = False
        for node, recs in by_node.items():
            while cursor[node] < len(recs):
                rec = recs[cursor[node]]
                kind = rec.get("event")
                if rec.get("channel") not in channels or kind not in ("app.send", "app.receive"):
                    cursor[node] += 1
                    continue
                if kind == "app.send":
                    matrix[node][(node, rec["peer"])] += 1
                    stamped[rec["id"]] = Counter(matrix[node])
                elif rec["id"] in sends and rec["id"] not in stamped:
                    break  # its send is not processed yet: another node first
                else:
                    deps = stamped.get(rec["id"], Counter())
                    src = str(sends[rec["id"]][0] if rec["id"] in sends else rec.get("peer"))
                    for (s, d), n in deps.items():
                        if d == node and s != src and got[node][s] < n:
                            out.append(
                                f"causal at {node}: {rec['id']} before a message {s} sent earlier"
                            )
                            break
                    got[node][src] += 1
                    matrix[node] |= deps
                cursor[node] += 1
                progress = True
    return tuple(out)


def _signals(by_node: dict[str, list[dict[str, Any]]]) -> tuple[str, ...]:
    out: list[str] = []
    for node, recs in by_node.items():
        state: dict[tuple[Any, ...], str] = {}
        for rec in recs:
            kind = rec.get("event")
            if kind not in ("signal.nodeup", "signal.nodedown"):
                continue
            key = (rec.get("incarnation"), rec.get("peer"), rec.get("peer_incarnation"))
            if kind == "signal.nodedown" and state.get(key) == "down":
                out.append(f"{node}: NodeDown of {rec.get('peer')} twice for one incarnation")
            if kind == "signal.nodeup" and state.get(key) == "up":
                out.append(f"{node}: NodeUp of {rec.get('peer')} twice without a NodeDown")
            state[key] = "down" if kind == "signal.nodedown" else "up"
    return tuple(out)


def _downs(by_node: dict[str, list[dict[str, Any]]]) -> tuple[str, ...]:
    """A monitor (its ref, unique cluster-wide) delivering more than one ``Down``."""
    seen: Counter[tuple[str, ...]] = Counter()
    for recs in by_node.values():
        for rec in recs:
            if rec.get("event") == "signal.down":
                seen[tuple(map(str, rec.get("ref") or ()))] += 1
    return tuple(
        f"Down of monitor {':'.join(ref)} delivered {n} times" for ref, n in seen.items() if n > 1
    )

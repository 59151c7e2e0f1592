"""Judging a soak's history: what `check_history` checks, plus what only a soak knows.

`check_history` (partisan.testing.history) finds lost, duplicated and
reordered messages, messages received by another incarnation than the one
they were sent to (stale), NodeDown twice per incarnation and a monitor's
Down twice. A soak with kills and
partitions loses messages legitimately, so `judge` sorts each lost message
by what the logs say happened to it, and adds the checks the workload
(`partisan.testing.workload_commands`) makes possible:

* **acked channel**: a message whose awaited send was acknowledged
  (``app.acked``), or a cast followed on its stream by an acknowledged send
  to the same receiver incarnation (no kill of either node in between: the
  stream is cumulative), must be received exactly once. A message whose send
  failed (``app.ack_failed``: restarted, left, timeout) or was refused at
  once (``app.unsent``) may be missing. An acknowledged message whose
  receiver was SIGKILLed within `MAILBOX_S` of the ack died in its mailbox
  (counted, allowed: nothing is persisted);
* **plain channel**: loss only across a NodeDown: the sender saw NodeDown of
  the receiver within `PLAIN_WINDOW_S` after the send, or one of the two
  was killed; duplicates and reorders never, except those the schedule
  injected itself in user space (`_injected`: counted, not violations);
* **monitors and links** (``app.watch`` / ``app.down`` / ``app.exit``): at
  most one Down and one Exit per watch; exactly one of each when the
  watcher saw NodeDown of the peer (or the peer was killed) while watching;
  none without such a cause;
* **NodeDown causes**: each ``signal.nodedown`` falls within a schedule
  step that cuts that pair (`schedule.affects`), from its start to its heal
  plus `CAUSE_GRACE_S` (detection: heartbeat timeout 2.0 s + one 0.5 s
  interval, plus slack for two shared cores);
* **calls**: no reply to another request (``mismatch``); **broadcasts**: no
  node incarnation delivers one twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from partisan.testing.history import check_history
from partisan.testing.schedule import Step, affects

MAILBOX_S = 1.0
PLAIN_WINDOW_S = 12.0
CAUSE_GRACE_S = 5.0


@dataclass
class SoakVerdict:
    """Violations by kind (each must be empty) and counts for the report."""

    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def summary(self, limit: int = 5) -> dict[str, list[str]]:
        return {k: v[:limit] for k, v in self.violations.items() if v}


def judge(
    records: Sequence[dict[str, Any]],
    kills: Iterable[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    acked: str = "ack",
) -> SoakVerdict:
    """The soak's verdict from all event-log records, the nemesis kills and the schedule log."""
    out = SoakVerdict()
    report = check_history(records)
    bad = out.violations
    sends = {r["id"]: r for r in records if r.get("event") == "app.send"}
    timed = [_step(s) for s in steps]
    for kind, ids in (
        ("duplicated", report.duplicated),
        ("out_of_order", [_reordered_id(line) for line in report.out_of_order]),
    ):
        for msg_id in ids:
            if _injected(sends.get(msg_id), kind, timed, acked):
                out.counts[f"plain_{kind}_injected"] += 1
            else:
                bad[kind].append(msg_id)
    bad["phantom"] += list(report.phantom)
    bad["stale_incarnation"] += list(report.stale)
    bad["nodedown_twice"] += list(report.signal_violations)
    out.counts["sent"], out.counts["received"] = report.sent, report.received
    killed: dict[str, list[float]] = defaultdict(list)
    for kill in kills:
        killed[kill["args"]["node"]].append(kill["time"])
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_event[str(rec.get("event"))].append(rec)
    downs_at: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for rec in by_event["signal.nodedown"]:
        downs_at[(rec["node"], rec["incarnation"])].append(rec)

    def killed_between(node: str, start: float, end: float) -> bool:
        return any(start <= t <= end for t in killed[node])

    _lost(report.lost, by_event, killed_between, downs_at, acked, out)
    _watches(by_event, killed_between, downs_at, out)
    _causes(by_event["signal.nodedown"], timed, out)
    calls = Counter(str(r["reason"]) for r in by_event["app.call"])
    out.counts.update({f"call.{k}": n for k, n in calls.items()})
    bad["call_mismatch"] += [r["id"] for r in by_event["app.call"] if r["reason"] == "mismatch"]
    seen = Counter((r["node"], r["incarnation"], r["id"]) for r in by_event["app.bdeliver"])
    bad["broadcast_twice"] += [str(k) for k, n in seen.items() if n > 1]
    out.counts["broadcasts"] = len(by_event["app.bcast"])
    out.counts["nodedowns"] = len(by_event["signal.nodedown"])
    return out


def _reordered_id(line: str) -> str:
    """The id in check_history's ``out of order at N: ID after a later message of its key``."""
    return line.split(": ", 1)[1].split(" ", 1)[0]


def _injected(
    send: dict[str, Any] | None, kind: str, steps: Sequence[tuple[Step, float, float]], acked: str
) -> bool:
    """A plain-channel duplicate (reorder) sent while user space duplicated (delayed) that pair.

    The fault injector acts above the transport's sessions, where a plain
    channel has no sequence numbers: what it duplicates or holds back for a
    while reaches the actor so. Only the acked layer undoes that.
    """
    if send is None or send["channel"] == acked:
        return False
    op = "duplicate" if kind == "duplicated" else "delay"
    return any(
        s.op == op and start - 0.5 <= send["mono"] <= end + 1.0
        and affects(s, send["node"], send["peer"])
        for s, start, end in steps
    )  # fmt: skip


def _step(entry: dict[str, Any]) -> tuple[Step, float, float]:
    fields = {k: entry[k] for k in ("index", "op", "hold", "quiet", "args")}
    step = Step(nodes=tuple(tuple(g) for g in entry["nodes"]), **fields)
    return step, entry["start"], entry["end"]


def _lost(
    lost: Iterable[str],
    by_event: dict[str, list[dict[str, Any]]],
    killed_between: Any,
    downs_at: dict[tuple[str, int], list[dict[str, Any]]],
    acked: str,
    out: SoakVerdict,
) -> None:
    sends = {r["id"]: r for r in by_event["app.send"]}
    unsent = {r["id"] for r in by_event["app.unsent"]}
    failed = {r["id"]: r for r in by_event["app.ack_failed"]}
    acks = {r["id"]: r for r in by_event["app.acked"]}
    # Per stream (key), the times of its acknowledged awaited sends, in order.
    acked_at: dict[str, list[float]] = defaultdict(list)
    for msg_id, ack in acks.items():
        acked_at[sends[msg_id]["key"]].append(ack["mono"])
    for msg_id in lost:
        send = sends[msg_id]
        me, peer, t = send["node"], send["peer"], send["mono"]
        if msg_id in unsent:
            out.counts["unsent"] += 1
        elif send["channel"] == acked:
            if msg_id in failed:
                out.counts[f"ack_failed.{failed[msg_id]['reason']}"] += 1
            elif msg_id in acks:
                if killed_between(peer, acks[msg_id]["mono"], acks[msg_id]["mono"] + MAILBOX_S):
                    out.counts["acked_died_in_mailbox"] += 1
                else:
                    out.violations["acked_lost"].append(msg_id)
            elif int(msg_id.rsplit(".", 1)[1]) % 4 == 1:  # the cast of a round (see the workload)
                later = [a for a in acked_at[send["key"]] if a > t]
                if later and not (
                    killed_between(peer, t, later[0]) or killed_between(me, t, later[0])
                ):
                    out.violations["acked_lost"].append(msg_id + " (cast, stream acked later)")
                else:
                    out.counts["acked_cast_unconfirmed"] += 1
            elif killed_between(me, t, float("inf")):
                out.counts["sender_killed"] += 1
            else:
                out.violations["acked_no_outcome"].append(msg_id)
        else:
            seen_down = any(
                d["peer"] == peer and t <= d["mono"] <= t + PLAIN_WINDOW_S
                for d in downs_at[(me, send["incarnation"])]
            )
            end = t + PLAIN_WINDOW_S
            if seen_down or killed_between(me, t, end) or killed_between(peer, t, end):
                out.counts["plain_lost_at_nodedown"] += 1
            else:
                out.violations["plain_lost_without_nodedown"].append(msg_id)


def _watches(
    by_event: dict[str, list[dict[str, Any]]],
    killed_between: Any,
    downs_at: dict[tuple[str, int], list[dict[str, Any]]],
    out: SoakVerdict,
) -> None:
    fired: dict[str, Counter[str]] = defaultdict(Counter)
    first: dict[str, float] = {}
    for kind in ("down", "exit"):
        for rec in by_event[f"app.{kind}"]:
            fired[rec["id"]][kind] += 1
            first[rec["id"]] = min(first.get(rec["id"], rec["mono"]), rec["mono"])
    ended = {r["id"]: r["mono"] for r in by_event["app.unwatch"]}
    for watch in by_event["app.watch"]:
        wid, me, peer, t = watch["id"], watch["node"], watch["peer"], watch["mono"]
        out.counts["watches"] += 1
        if killed_between(me, t, float("inf")) and wid not in first:
            continue  # the watcher died before anything fired
        until = ended.get(wid, first.get(wid, float("inf")))
        cause = killed_between(peer, t, until) or any(
            d["peer"] == peer and t <= d["mono"] <= until + 0.5
            for d in downs_at[(me, watch["incarnation"])]
        )
        got = fired[wid]
        if got["down"] > 1 or got["exit"] > 1:
            out.violations["monitor_twice"].append(f"{wid}: {dict(got)}")
        elif cause and (got["down"] != 1 or got["exit"] != 1):
            if not killed_between(me, t, float("inf")):
                out.violations["monitor_missing"].append(f"{wid}: {dict(got)}")
        elif not cause and (got["down"] or got["exit"]):
            out.violations["monitor_without_cause"].append(f"{wid}: {dict(got)}")
        out.counts["watches_fired"] += bool(got["down"])


def _causes(
    downs: Iterable[dict[str, Any]], steps: Sequence[tuple[Step, float, float]], out: SoakVerdict
) -> None:
    for down in downs:
        me, peer, t = down["node"], down["peer"], down["mono"]
        causes = [
            s.index
            for s, start, end in steps
            if start - 0.5 <= t <= end + CAUSE_GRACE_S and affects(s, me, peer)
        ]
        if not causes:
            out.violations["nodedown_without_cause"].append(
                f"{me} saw {peer} down at {t:.2f} ({down.get('reason')})"
            )
        elif len(causes) > 1:
            out.counts["nodedown_ambiguous_cause"] += 1

"""The chaos report: measurements against the reliability bar's figures, with verdicts.

A scenario (R1..., S1...) measures one or more quantities for which a lower
value is better (seconds, a rate, a count of bad events) and records each as
a `Measurement` against its figure from the bar. The verdict is ``PASS`` at
or under the figure, ``MARGINAL`` within 3x of it (these machines have two
shared cores), ``FAIL`` beyond. A figure of 0 (no executions, no frames
decoded) has no margin: anything above it fails.

`render_table` prints the scenario x figure x goal x verdict table and
`to_json` / `from_json` round-trip a report, so ``make chaos`` can print it,
write it, and docs can quote it; `render_runs` sets several runs' reports
side by side (``python -m partisan.testing.chaos run1.json run2.json``).
Pure functions apart from that command line.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "MARGIN",
    "Measurement",
    "Verdict",
    "from_json",
    "render_runs",
    "render_table",
    "to_json",
    "verdict",
]

#: How far over its figure a measurement is still MARGINAL rather than FAIL.
MARGIN = 3.0


class Verdict(enum.Enum):
    PASS = "PASS"
    MARGINAL = "MARGINAL"
    FAIL = "FAIL"


def verdict(measured: float, figure: float) -> Verdict:
    """PASS at or under `figure`, MARGINAL within `MARGIN` x, FAIL beyond."""
    if measured <= figure:
        return Verdict.PASS
    if measured <= figure * MARGIN:
        return Verdict.MARGINAL
    return Verdict.FAIL


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured quantity of a scenario against its figure (lower is better)."""

    scenario: str  # e.g. "S1"
    name: str  # e.g. "wrong_cluster_key"
    quantity: str  # what was measured, e.g. "time to rejection"
    measured: float
    figure: float
    unit: str  # "s", "ms", "count", "ratio", "/s", "bytes"
    goal: str  # the invariant in words, from the bar
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        return verdict(self.measured, self.figure)


def _number(value: float, unit: str) -> str:
    if unit == "count":
        return f"{value:g}"
    if unit == "bytes":
        return f"{value / 1_048_576:.2f} MiB"
    return f"{value:.3g} {unit}"


def render_table(measurements: Iterable[Measurement]) -> str:
    """A Markdown table: scenario, quantity, figure, measured, goal, verdict."""
    rows = [
        "| scenario | quantity | figure | measured | goal | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for m in sorted(measurements, key=lambda m: (_order(m.scenario), m.quantity)):
        rows.append(
            f"| {m.scenario} {m.name} | {m.quantity} | ≤ {_number(m.figure, m.unit)} "
            f"| {_number(m.measured, m.unit)} | {m.goal} | {m.verdict.value} |"
        )
    return "\n".join(rows)


def render_runs(runs: Sequence[Sequence[Measurement]]) -> str:
    """One Markdown row per (scenario, quantity), one column per run, and the verdicts.

    A quantity missing from a run shows as "-"; the verdict column lists each
    run's verdict when they differ (``PASS / MARGINAL``).
    """
    keyed: dict[tuple[str, str, str], list[Measurement | None]] = {}
    for index, run in enumerate(runs):
        for m in run:
            slots = keyed.setdefault((m.scenario, m.name, m.quantity), [None] * len(runs))
            slots[index] = m
    head = " | ".join(f"run {i + 1}" for i in range(len(runs)))
    rows = [
        f"| scenario | quantity | figure | {head} | goal | verdict |",
        "|---|---|---|" + "---|" * len(runs) + "---|---|",
    ]
    for (scenario, name, quantity), slots in sorted(
        keyed.items(), key=lambda kv: (_order(kv[0][0]), kv[0][1], kv[0][2])
    ):
        first = next(m for m in slots if m is not None)
        cells = " | ".join("-" if m is None else _number(m.measured, m.unit) for m in slots)
        verdicts = [m.verdict.value for m in slots if m is not None]
        shown = verdicts[0] if len(set(verdicts)) == 1 else " / ".join(verdicts)
        rows.append(
            f"| {scenario} {name} | {quantity} | ≤ {_number(first.figure, first.unit)} "
            f"| {cells} | {first.goal} | {shown} |"
        )
    return "\n".join(rows)


def _order(scenario: str) -> tuple[str, int]:
    head, digits = scenario.rstrip("0123456789"), scenario[len(scenario.rstrip("0123456789")) :]
    return head, int(digits or 0)


def to_json(measurements: Sequence[Measurement]) -> str:
    """The report as JSON: ``{"measurements": [{..., "verdict"}], "summary": {...}}``."""
    items = [{**asdict(m), "verdict": m.verdict.value} for m in measurements]
    summary = {v.value: sum(1 for m in measurements if m.verdict is v) for v in Verdict}
    return json.dumps({"measurements": items, "summary": summary}, indent=2)


def from_json(text: str) -> list[Measurement]:
    """Measurements from `to_json`'s output (the verdict is recomputed)."""
    data = json.loads(text)
    return [
        Measurement(**{k: v for k, v in item.items() if k != "verdict"})
        for item in data["measurements"]
    ]


if __name__ == "__main__":
    import sys

    reports = []
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as handle:
            reports.append(from_json(handle.read()))
    if not reports:
        raise SystemExit("usage: python -m partisan.testing.chaos REPORT.json [REPORT.json ...]")
    print(render_runs(reports))

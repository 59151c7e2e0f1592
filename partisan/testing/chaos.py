"""The chaos report: measurements against the reliability bar's figures, with verdicts.

A scenario (R1..., S1...) measures one or more quantities for which a lower
value is better (seconds, a rate, a count of bad events) and records each as
a `Measurement` against its figure from the bar. The verdict is ``PASS`` at
or under the figure, ``MARGINAL`` within 3x of it (these machines have two
shared cores), ``FAIL`` beyond. A figure of 0 (no executions, no frames
decoded) has no margin: anything above it fails.

`render_table` prints the scenario x figure x goal x verdict table and
`to_json` / `from_json` round-trip a report, so ``make chaos`` can print it,
write it, and docs can quote it. Pure functions, no I/O.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["MARGIN", "Measurement", "Verdict", "from_json", "render_table", "to_json", "verdict"]

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

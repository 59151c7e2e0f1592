"""The chaos report: verdicts against figures, the table, the JSON round trip."""

from __future__ import annotations

import json

import pytest

from partisan.testing.chaos import Measurement, Verdict, from_json, render_table, to_json, verdict


@pytest.mark.parametrize(
    ("measured", "figure", "expected"),
    [
        (0.5, 1.0, Verdict.PASS),
        (1.0, 1.0, Verdict.PASS),
        (2.9, 1.0, Verdict.MARGINAL),
        (3.0, 1.0, Verdict.MARGINAL),
        (3.01, 1.0, Verdict.FAIL),
        (0, 0, Verdict.PASS),
        (1, 0, Verdict.FAIL),  # a zero figure has no margin
    ],
)
def test_verdict(measured: float, figure: float, expected: Verdict) -> None:
    assert verdict(measured, figure) is expected


def test_table_and_json_round_trip() -> None:
    rows = [
        Measurement("S10", "safe_defaults", "unsafe binds", 0, 0, "count", "loopback only"),
        Measurement("S9", "flood", "closed after", 4.04, 4.0, "s", "closed", "backlog"),
        Measurement("S1", "wrong_key", "rejected after", 0.003, 1.0, "s", "refused"),
    ]
    table = render_table(rows)
    lines = table.splitlines()
    assert [line.split(" |")[0] for line in lines[2:]] == [
        "| S1 wrong_key",
        "| S9 flood",
        "| S10 safe_defaults",
    ]
    assert lines[3].endswith("| MARGINAL |")
    text = to_json(rows)
    assert json.loads(text)["summary"] == {"PASS": 2, "MARGINAL": 1, "FAIL": 0}
    assert from_json(text) == rows


def test_runs_side_by_side_show_each_value_and_differing_verdicts() -> None:
    from partisan.testing.chaos import render_runs

    one = [
        Measurement("R5", "partition", "detection", 2.4, 2.5, "s", "both sides"),
        Measurement("R1", "crash", "lost", 0, 0, "count", "none lost"),
    ]
    two = [Measurement("R5", "partition", "detection", 2.9, 2.5, "s", "both sides")]
    table = render_runs([one, two]).splitlines()
    assert table[0] == "| scenario | quantity | figure | run 1 | run 2 | goal | verdict |"
    assert table[2] == "| R1 crash | lost | ≤ 0 | 0 | - | none lost | PASS |"
    assert (
        table[3]
        == "| R5 partition | detection | ≤ 2.5 s | 2.4 s | 2.9 s | both sides | PASS / MARGINAL |"
    )

"""`python -m partisan.membership.table`: the paper's rows under both failure models."""

from __future__ import annotations

from pathlib import Path

import pytest

from partisan.membership import table

pytestmark = pytest.mark.timeout(60)


def test_the_table_compares_both_models_on_the_same_victims_and_writes_the_doc(
    tmp_path: Path,
) -> None:
    rows = table.measure(n=300, fails=(0.7,), broadcasts=30, seed=1)
    (row,) = rows
    assert row.fail == 0.7 and row.survivors == 90
    assert 0.0 < row.alone <= row.cut_off < 1.0  # a survivor alone is cut off
    reset, on_use = row.results["reset"], row.results["on-use"]
    # Under on-use the cut-off survivors are reached only once one of them is a
    # source; under reset they repair at once (docs/simulator.md).
    assert on_use["reliability"] < reset["reliability"]
    assert reset["duplicates"] == on_use["duplicates"] == 0
    text = table.render(rows, 300, 30, 1)
    assert "| 70% | 100.0% | T6 >= 99.5% |" in text
    doc = tmp_path / "simulator.md"
    doc.write_text(f"before\n{table.BEGIN}\nold\n{table.END}\nafter\n")
    assert table.write_doc(text, doc)
    assert doc.read_text() == f"before\n{table.BEGIN}\n{text}\n{table.END}\nafter\n"
    assert not table.write_doc(text, tmp_path / "missing.md")


def test_the_paper_rows_are_papers_md_section_6() -> None:
    assert table.PAPER[0.7][2] == (0.995, 1.0)  # T6
    assert table.PAPER[0.9][2] == (0.98, 1.0)  # T7
    assert table.PAPER[0.95][2] == (0.85, 0.95)  # T8

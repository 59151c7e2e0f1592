"""`make bench-peers`'s report: the markdown section and its splice into docs/performance.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.peers import report

HOST = {
    "cpu": "Test CPU",
    "cores": "2 logical",
    "ram": "1.0 GiB",
    "os": "TestOS",
    "python": "3.11.7",
    "load": "0.10 0.20 0.30",
}
OURS = {
    "framework": "partisan",
    "version": "0.1.0 (abc)",
    "python": "3.11.7",
    "sizes": {"calls": 10, "pipelined": 100, "casts": 1000},
    "call_p50_us": 100.0,
    "call_p99_us": 200.0,
    "pipelined_calls_per_s": 20_000.0,
    "casts_per_s": 100_000.0,
    "pyzmq": "27.0",
    "libzmq": "4.3.5",
}
RAY = {
    **OURS,
    "framework": "ray",
    "version": "2.0",
    "call_p50_us": 500.0,
    "pipelined_calls_per_s": 4_000.0,
    "casts_per_s": 5_000.0,
}
BROKEN = {"framework": "thespian", "error": "not installed: pip install failed: no network"}


def test_markdown_has_a_row_per_framework_and_says_why_one_did_not_run() -> None:
    text = report.markdown([OURS, RAY, BROKEN], HOST, "today", "make bench-peers")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| framework",
        "| partisan",
        "| ray",
        "| thespian",
    ]
    assert "100 µs" in rows[1] and "100,000" in rows[1]
    assert BROKEN["error"] in rows[3]
    assert "- ray: call p50 5.0x partisan's; partisan does 5.0x" in text
    assert "Test CPU, 2 logical cores, 1.0 GiB RAM; TestOS; Python 3.11.7" in text
    assert "load average 0.10 0.20 0.30" in text
    assert "partisan 0.1.0 (abc) with pyzmq 27.0 / libzmq 4.3.5; ray 2.0." in text


def test_splice_replaces_only_the_generated_section() -> None:
    page = f"# Title\n\nbefore\n\n{report.BEGIN}\nold table\n{report.END}\n\nafter\n"
    spliced = report.splice(page, "new table")
    assert spliced == f"# Title\n\nbefore\n\n{report.BEGIN}\nnew table\n{report.END}\n\nafter\n"
    assert report.splice(spliced, "new table") == spliced


def test_splice_refuses_a_page_without_the_markers() -> None:
    with pytest.raises(ValueError, match="bench-peers:begin"):
        report.splice("# no section\n", "table")


def test_the_performance_page_has_the_section() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
    report.splice(page.read_text(), "table")

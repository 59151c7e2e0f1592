"""``make bench``: run every benchmark module, print one table each, write JSON.

Each module in `BENCHMARKS` defines ``run(args) -> list[Row]`` where a row is a
dict with at least ``name`` (what was measured), ``value``, ``unit`` and,
where there is one, ``baseline`` (the same quantity for the baseline measured
in the same run), ``ratio`` (value / baseline, or the direction that makes
>1 better, stated in ``note``) and ``goal``. Timings never live in the tests.

Usage: ``python -m benchmarks [--only transport,sim] [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from typing import Any

BENCHMARKS = [
    "benchmarks.transport",
    "benchmarks.actors",
    "benchmarks.sim",
    "benchmarks.supervision",
    "benchmarks.codec",
    "benchmarks.cluster",
    "benchmarks.distribution",
    "benchmarks.channels",
    "benchmarks.formation",
    "benchmarks.broadcast",
    "benchmarks.delivery",
]


def _print_table(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("name", "value", "unit", "baseline", "ratio", "goal", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                _fmt(row.get(c))
                for c in ("name", "value", "unit", "baseline", "ratio", "goal", "note")
            )
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file: wide enough that rows stay on one line
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--only", default="", help="comma-separated module names, e.g. transport,sim"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--json", default="bench-results.json", help="where to write the results")
    args = parser.parse_args(argv)
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "benchmarks": {},
    }
    failed = False
    for module_name in BENCHMARKS:
        short = module_name.rsplit(".", 1)[-1]
        if wanted and short not in wanted:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not written yet
            raise
        started = time.perf_counter()
        try:
            rows = module.run(args)
        except Exception as exc:  # report and go on: one broken benchmark must not hide the others
            print(f"benchmark {short} failed: {exc!r}", file=sys.stderr)
            failed = True
            continue
        results["benchmarks"][short] = {"seconds": time.perf_counter() - started, "rows": rows}
        _print_table(f"{short} ({time.perf_counter() - started:.1f} s)", rows)
    with open(args.json, "w") as fh:
        json.dump(results, fh, indent=2, default=str)
    print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

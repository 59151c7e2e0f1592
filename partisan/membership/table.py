"""The HyParView paper's reliability rows (TR Fig. 2; papers.md §6 T6-T8) on our simulator.

``python -m partisan.membership.table`` (or ``make sim-table``) builds one
overlay the paper's way (``n`` nodes join one by one through n1, then 50
membership rounds), then for every failure rate crashes the same random
victims twice, once per failure model, and sends ``broadcasts`` floods from
random live nodes with no membership round in between:

* ``on-use``: a node learns of a crash only when it next sends to the dead
  peer (``crash_detect_delay=None``);
* ``reset``: both ends of a TCP connection learn that it closed (the dead
  peer's connections are reset one link delay after the crash).

Beside the reliabilities it prints two facts about the live active graph
right after the crash, before any repair, that decide what ``on-use`` can
reach: the share of survivors whose every active peer died (``alone``), and
the share outside the largest connected group of survivors (``cut off``).
Under ``on-use`` no node of a cut-off group ever sends anything unless it is
itself a broadcast's source (it receives no broadcast and the membership
timers are held), and its members believe their active views are full, so
they refuse every LOW-priority `NeighborRequest` (TR §4.3): the paper's
protocol has no rule that reaches them. See docs/simulator.md.

With ``--write`` the table replaces the ``sim-on-use-table`` section of
docs/simulator.md. Same arguments, same table (no wall-clock field).
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partisan.membership import metrics
from partisan.membership.experiments import ExperimentSpec, build_overlay, summarize
from partisan.membership.sim import BroadcastRecord, Simulator

__all__ = ["PAPER", "Row", "main", "measure", "render"]

#: HyParView's mean reliability in TR Fig. 2 (papers.md §2.2, pixel-measured)
#: and the pass criterion papers.md §6 gives for it (T6, T7, T8).
PAPER: dict[float, tuple[float, str, tuple[float, float]]] = {
    0.5: (1.000, "T6", (0.995, 1.0)),
    0.7: (1.000, "T6", (0.995, 1.0)),
    0.8: (0.997, "T7", (0.98, 1.0)),
    0.9: (0.996, "T7", (0.98, 1.0)),
    0.95: (0.910, "T8", (0.85, 0.95)),
}
DETECT = {"on-use": None, "reset": 0.0}
BEGIN, END = "<!-- BEGIN sim-on-use-table -->", "<!-- END sim-on-use-table -->"
DOC = Path("docs/simulator.md")


@dataclass(frozen=True, slots=True)
class Row:
    """One failure rate: the graph right after the crash and both models' reliability."""

    fail: float
    survivors: int
    alone: float  # survivors whose every active peer died
    cut_off: float  # survivors outside the largest live component
    results: dict[str, dict[str, Any]]  # detect -> summarize() plus "last100"


def _crash(sim: Simulator, fail: float, rng: random.Random) -> tuple[int, float, float]:
    victims = rng.sample(sim.live_names(), round(fail * len(sim.nodes)))
    for name in victims:
        sim.crash(name)
    dead = set(victims)
    live = sim.live_names()
    alone = sum(all(p.name in dead for p in sim.manager(x).active()) for x in live)
    groups = metrics.components(sim.active_graph())
    largest = max((len(g) for g in groups), default=0)
    return len(live), alone / len(live), 1 - largest / len(live)


def measure(
    n: int = 10_000,
    fails: tuple[float, ...] = tuple(PAPER),
    broadcasts: int = 1000,
    seed: int = 1,
    log: Any = None,
) -> list[Row]:
    """Build the overlay once, then every (failure rate, model) on a copy of it."""
    blob = pickle.dumps(build_overlay(ExperimentSpec(n=n, seed=seed)))
    rows = []
    for fail in fails:
        results: dict[str, dict[str, Any]] = {}
        facts = (0, 0.0, 0.0)
        for detect, delay in DETECT.items():
            started = time.perf_counter()
            sim: Simulator = pickle.loads(blob)
            sim.crash_detect_delay = delay
            rng = random.Random(f"partisan-sim/{seed}/table/{fail}")  # same victims, both models
            facts = _crash(sim, fail, rng)
            records: list[BroadcastRecord] = []
            for _ in range(broadcasts):
                records.append(sim.broadcasts[sim.broadcast(rng.choice(sim.live_names()))])
                sim.run_until_idle()
            stats = summarize(records)
            stats["last100"] = summarize(records[-100:])["reliability"]
            results[detect] = stats
            if log is not None:
                print(
                    f"fail={fail:.0%} {detect}: {stats['reliability']:.4f} "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=log,
                    flush=True,
                )
        rows.append(Row(fail, *facts, results))
    return rows


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render(rows: list[Row], n: int, broadcasts: int, seed: int) -> str:
    """The markdown table (paper beside ours), with how it was made."""
    lines = [
        f"`python -m partisan.membership.table -n {n} --broadcasts {broadcasts} "
        f"--seed {seed} --write` (`make sim-table`): n = {n:,}, {broadcasts:,} broadcasts "
        "per row from random live nodes, no membership round in between; the same victims "
        "and the same sources for both models.",
        "",
        "| failed | paper (Fig. 2) | target | on-use mean | on-use min "
        "| on-use last 100 | reset mean | reset min | survivors alone | survivors cut off |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paper, tid, (lo, hi) = PAPER.get(row.fail, (float("nan"), "", (0.0, 1.0)))
        target = f"{tid} >= {_pct(lo)}" if hi >= 1.0 else f"{tid} {_pct(lo)}-{_pct(hi)}"
        cells = []
        for detect in DETECT:
            r = row.results[detect]
            ok = lo <= r["reliability"] <= hi
            cells.append(f"{_pct(r['reliability'])} {'(met)' if ok else '(**missed**)'}")
            cells.append(_pct(r["reliability_min"]))
            if detect == "on-use":
                cells.append(_pct(r["last100"]))
        lines.append(
            f"| {row.fail:.0%} | {_pct(paper)} | {target} | {' | '.join(cells)} "
            f"| {_pct(row.alone)} | {_pct(row.cut_off)} |"
        )
    return "\n".join(lines)


def write_doc(text: str, doc: Path = DOC) -> bool:
    """Replace the table between the markers of `doc`; False if they are missing."""
    if not doc.exists():
        return False
    content = doc.read_text()
    if BEGIN not in content or END not in content:
        return False
    head, rest = content.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m partisan.membership.table", description=__doc__
    )
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--broadcasts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--fail",
        type=float,
        action="append",
        help="failure rate (repeatable; default: the paper's)",
    )
    parser.add_argument("--write", action="store_true", help=f"update {DOC}")
    args = parser.parse_args(argv)
    fails = tuple(args.fail) if args.fail else tuple(PAPER)
    rows = measure(args.n, fails, args.broadcasts, args.seed, log=sys.stderr)
    text = render(rows, args.n, args.broadcasts, args.seed)
    print(text)
    if args.write and not write_doc(text):
        print(f"no {BEGIN} section in {DOC}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

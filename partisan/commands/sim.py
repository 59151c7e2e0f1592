"""``partisan sim``: the HyParView paper's experiment on the in-process simulator.

Nodes join one by one through n1, 50 membership rounds run, the overlay is
measured, a fraction of the nodes crash, broadcasts go out from random live
nodes with no round in between, then rounds of 10 broadcasts run until every
live node is reached again. See docs/simulator.md and
`partisan.membership.experiments`. Imports no zmq or dill: it runs anywhere.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: `partisan --help` and the other subcommands
# do not pay for the simulator. None closes an import cycle (tests/unit/test_imports.py).
import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["register"]

_MANAGERS = ("hyparview", "full-mesh", "client-server", "static", "cyclon")


def register(subparsers: Any) -> None:
    """Add the ``sim`` command."""
    parser = subparsers.add_parser(
        "sim",
        help="simulate an overlay and broadcasts (HyParView paper experiment)",
        description="Build an overlay of N simulated nodes, fail a fraction, broadcast, "
        "and report overlay metrics, reliability, RMR and healing rounds. "
        "Same arguments, same output (except wall_s and events_per_s).",
    )
    parser.add_argument("--manager", default="hyparview", choices=_MANAGERS)
    parser.add_argument("-n", type=_positive_int, default=1000, help="number of nodes")
    parser.add_argument("--fail", type=_fraction, default=0.5, help="fraction to crash, [0, 1)")
    parser.add_argument(
        "--broadcasts", type=_non_negative_int, default=100, help="broadcasts after failures"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broadcast", default="flood", choices=("flood", "plumtree"))
    parser.add_argument(
        "--rounds", type=_non_negative_int, default=50, help="membership rounds after joins"
    )
    parser.add_argument(
        "--detect",
        default="reset",
        choices=("reset", "on-use"),
        help="how peers learn of a crash: 'reset' (connected peers see the connection "
        "close one link delay later, as with a killed process: the paper's model, "
        "docs/simulator.md) or 'on-use' (only when they next send to it)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(func=_run)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _run(args: argparse.Namespace) -> int:
    from partisan.membership.experiments import ExperimentSpec, run_experiment

    spec = ExperimentSpec(
        n=args.n,
        manager=args.manager,
        broadcast=args.broadcast,
        fail=args.fail,
        broadcasts=args.broadcasts,
        seed=args.seed,
        rounds=args.rounds,
        crash_detect_delay=0.0 if args.detect == "reset" else None,
    )
    with _progress_on_terminal() as progress:
        result = run_experiment(spec, progress)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(render(result))
    return 0


@contextlib.contextmanager
def _progress_on_terminal() -> Iterator[Any]:
    """A progress bar on stderr while the run lasts, if stderr is a terminal (else nothing).

    stdout stays the report (or the one JSON document); the bar is transient.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def report(phase: str, done: int, total: int | None) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        yield report


def render(result: dict[str, Any]) -> str:
    """Plain-text report of a `run_experiment` result."""
    hist = ", ".join(f"{k}: {v}" for k, v in result["in_degree"].items())

    def num(key: str, fmt: str = ".4f") -> str:
        value = result.get(key)
        return "n/a" if value is None else format(value, fmt)

    lines = [
        f"{result['manager']} + {result['broadcast']}, n={result['n']}, seed={result['seed']}, "
        f"{result['rounds']} rounds",
        f"overlay: in-degree {{{hist}}}",
        f"  clustering {num('clustering', '.6f')}, avg path {num('avg_path')} "
        f"({result['avg_path_sources']} BFS sources), connected {result['connected']}, "
        f"symmetric {result['symmetric']}",
        f"after failing {result['failed']} nodes ({result['fail']:.0%}), "
        f"{result['broadcasts']} broadcasts:",
        f"  reliability {num('reliability')}, RMR {num('rmr')}, "
        f"last delivery hop {num('last_delivery_hop', '.2f')}",
        f"  healing rounds {result['healing_rounds'] if result['healing_rounds'] is not None else 'not healed'}",
        f"{result['events']} events in {result['wall_s']:.1f} s ({result['events_per_s']:,.0f} events/s)",
    ]
    return "\n".join(lines)

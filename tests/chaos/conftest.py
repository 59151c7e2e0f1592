"""Chaos tier: nodes on simulated hosts (network namespaces), measured against the bar.

Every scenario records `Measurement`s through the ``measure`` fixture; the
session prints the scenario x figure x goal x verdict table at the end and
writes it as JSON to ``CHAOS_JSON`` (default ``chaos-report.json`` under the
pytest cache dir). A scenario fails its test on a FAIL verdict; MARGINAL
passes and shows in the table.

Two tiers: tests marked ``chaos_quick`` run in ``make test`` (a few seconds
each); the rest run only under ``make chaos`` (``CHAOS_FULL=1``). Without
root / ``ip`` / ``iptables`` the tests that need simulated hosts skip with
one line saying what is missing — except under ``make chaos``
(``CHAOS_REQUIRE=1``), where that line is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from partisan.testing.chaos import Measurement, Verdict, render_table, to_json
from partisan.testing.hosts import SimulatedHosts, capability_problem
from partisan.transport.keys import PRIVATE_DIR, PUBLIC_DIR, create_keys

_RESULTS: list[Measurement] = []
_PROBLEM: list[str | None] = []


def _capability() -> str | None:
    if not _PROBLEM:
        _PROBLEM.append(capability_problem())
    return _PROBLEM[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = bool(os.environ.get("CHAOS_FULL"))
    for item in items:
        if "tests/chaos/" not in str(item.fspath).replace(os.sep, "/"):
            continue
        if not full and item.get_closest_marker("chaos_quick") is None:
            item.add_marker(pytest.mark.skip(reason="chaos suite only: make chaos"))


@pytest.fixture
def hosts() -> Iterator[SimulatedHosts]:
    """A run's simulated hosts (add them with `add_host`); every trace removed at teardown."""
    problem = _capability()
    if problem is not None:
        if os.environ.get("CHAOS_REQUIRE"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    net = SimulatedHosts()
    try:
        yield net
    finally:
        net.close()
        left = net.leftovers()
        assert not left, f"left behind: {left}"


@pytest.fixture
def measure() -> Callable[..., Measurement]:
    """Record a measurement for the report; fail the test on a FAIL verdict (if `fatal`)."""

    def record(
        scenario: str,
        name: str,
        quantity: str,
        measured: float,
        figure: float,
        unit: str,
        goal: str,
        note: str = "",
        *,
        fatal: bool = True,
    ) -> Measurement:
        m = Measurement(scenario, name, quantity, float(measured), float(figure), unit, goal, note)
        _RESULTS.append(m)
        # Timing rows on two shared cores are reported, not asserted (fatal=False):
        # a FAIL there shows in the table; an invariant's FAIL fails the test.
        assert not fatal or m.verdict is not Verdict.FAIL, (
            f"{scenario} {name}: {quantity} = {measured} {unit}, figure {figure} {unit}"
        )
        return m

    return record


@pytest.fixture
def host_keys(tmp_path: Path) -> Callable[[list[str]], dict[str, Path]]:
    """``host_keys(names)``: one key directory per node, as on real hosts (see `make_host_keys`)."""
    return lambda names: make_host_keys(tmp_path / "keys", names)


def make_host_keys(root: Path, names: list[str]) -> dict[str, Path]:
    """Keys for `names`, one directory per node as on real hosts.

    Each directory holds every public key and only its own node's secret key.
    """
    central = root / "central"
    create_keys(central, names)
    dirs = {}
    for name in names:
        target = root / name
        (target / PRIVATE_DIR).mkdir(parents=True, mode=0o700)
        shutil.copytree(central / PUBLIC_DIR, target / PUBLIC_DIR)
        secret = f"{name}.key_secret"
        shutil.copy2(central / PRIVATE_DIR / secret, target / PRIVATE_DIR / secret)
        dirs[name] = target
    return dirs


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("chaos report")
    terminalreporter.write_line(render_table(_RESULTS))
    counts = {v: sum(1 for m in _RESULTS if m.verdict is v) for v in Verdict}
    terminalreporter.write_line(
        ", ".join(f"{n} {v.value}" for v, n in counts.items())
        + " (a FAIL of a timing row is reported here, not raised as a test failure)"
    )
    cache = getattr(terminalreporter.config, "cache", None)
    default = Path(str(cache.mkdir("chaos"))) if cache is not None else Path()
    path = Path(os.environ.get("CHAOS_JSON") or default / "chaos-report.json")
    path.write_text(to_json(_RESULTS))
    terminalreporter.write_line(f"written to {path}")

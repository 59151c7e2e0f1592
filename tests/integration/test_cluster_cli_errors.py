"""``partisan cluster`` help and bad input, without a running cluster.

The contract's exit codes: 0 for ``--help``; 2 for a usage error (an unknown
manager, ``-n 0``, an unknown flag); 1 for an operational error, with exactly
one line on stderr (here: no cluster in DIR). Never a traceback, and a
refused command leaves DIR as it was. Refusals that need a running cluster
(``up`` on a running DIR, an unknown node) are in ``test_cluster_cli.py``;
``partisan node start`` errors (a malformed ``--join``, a busy ``--port``) in
``test_node_start_cli.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

VERBS = (
    "up",
    "status",
    "top",
    "wait",
    "kill",
    "restart",
    "stop",
    "start",
    "logs",
    "events",
    "graph",
    "down",
)


def partisan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partisan", *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def files_under(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*")) if directory.exists() else []


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "args", [[], ["cluster"], *([["cluster", verb] for verb in VERBS])], ids=lambda a: " ".join(a)
)
def test_help_exits_0(args: list[str], tmp_path: Path) -> None:
    result = partisan(*args, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: partisan"), result.stdout
    assert result.stderr == ""
    assert files_under(tmp_path) == []  # --help creates no .partisan


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["up", "--manager", "nope"], "'nope'"),
        (["up", "-n", "0"], "-n"),
        (["up", "-n", "2", "--no-such-flag"], "--no-such-flag"),
        (["status", "--no-such-flag"], "--no-such-flag"),
        (["kill", "n1", "--signal", "HUP"], "--signal"),
    ],
    ids=["unknown-manager", "n-0", "up-unknown-flag", "status-unknown-flag", "bad-signal"],
)
def test_usage_errors_exit_2_and_change_nothing(
    args: list[str], culprit: str, tmp_path: Path
) -> None:
    directory = tmp_path / "cluster"
    result = partisan("cluster", *args, "--dir", str(directory), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    # argparse may print its usage block first; the error itself is one line, the last.
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0] == result.stderr.splitlines()[-1]
    assert culprit in errors[0], errors[0]
    assert files_under(tmp_path) == []  # no DIR, no keys, no cluster.json


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "verb", [["status"], ["wait"], ["kill", "n1"], ["down"], ["graph"], ["events"], ["logs"]]
)
@pytest.mark.parametrize("exists", [True, False], ids=["empty-dir", "missing-dir"])
def test_no_cluster_in_dir_is_one_line_and_exit_1(
    verb: list[str], exists: bool, tmp_path: Path
) -> None:
    directory = tmp_path / "cluster"
    if exists:
        directory.mkdir()
    result = partisan("cluster", *verb, "--dir", str(directory), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"no cluster in {directory}" in lines[0], lines[0]
    assert files_under(tmp_path) == ([directory] if exists else [])  # nothing created

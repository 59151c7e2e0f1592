"""examples/code_lock.py runs as a user would run it, on a real node, and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_code_lock_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "code_lock.py")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("->", 1)[1].split() for line in result.stdout.splitlines()]
    assert [words[0] for words in lines] == [
        "locked",
        "open",
        "open",
        "locked",
        "locked",
        "suspended",
        "locked",
    ]
    assert "typed='45'" in lines[3]  # the presses postponed while open were kept

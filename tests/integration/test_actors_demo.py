"""``make demo``'s second part (examples/actors_demo.py), run as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_actors_demo_shows_remote_calls_and_failure_semantics() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "actors_demo.py")],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "demo (hidden) joined n1, n2, n3" in out
    assert out.count("exited: 'normal'") == 2  # both remote workers finished
    assert "-> {'from-n1': 50, 'from-n3': 50}" in out  # every call from n1 and n3 counted on n2
    assert re.search(
        r"pending call failed after \d+\.\d+ s: call to .+ exited: 'noconnection'", out
    )
    assert "reason='noconnection')" in out  # the monitor's Down
    assert "NodeDown(node='n2'" in out
    assert "demo sees nodes ['n1', 'n3']" in out
    assert out.rstrip().endswith("all nodes stopped")

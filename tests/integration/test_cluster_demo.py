"""``make demo`` without a terminal (examples/cluster_demo.py), run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_demo_kills_repairs_restarts_and_leaves_nothing_running() -> None:
    env = dict(os.environ, DEMO_SECONDS="6", TERM="dumb")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "cluster_demo.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=110,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert "8 hyparview nodes up and converged" in done.stderr
    for step in (
        "$ partisan cluster kill n3",
        "$ partisan cluster start n3",
        "$ partisan cluster down",
    ):
        assert step in out
    # The repair is visible in the event log: n3's neighbours saw it go.
    assert "peer.down n3" in out
    # At the end all 8 nodes are up again, n3 included, and the demo checked for leftovers.
    final = out.split("$ partisan cluster status", 1)[1]
    assert final.splitlines()[1].startswith("hyparview: 8/8 up")
    # The application's traffic shows: n1 (never killed) receives echo calls every second.
    n1 = next(line.split() for line in final.splitlines() if line.startswith("n1 "))
    assert float(n1[11]) > 0, n1  # msg in/s
    assert "no node process is left" in out

"""``partisan node start`` and ``make demo``'s example, as users run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from partisan.testing import NodeProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(30)
def test_node_start_prints_one_ready_line_joins_and_leaves_on_sigterm(
    node_factory: Callable[..., NodeProcess], key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("a", "b")
    a = node_factory("a", keys=keys)
    b = NodeProcess.start("b", "--keys", str(keys), "--port", "0", "--join", str(a.spec))
    try:
        assert set(b.ready) == {"name", "address", "incarnation", "public_key", "pid"}
        assert b.ready["public_key"] == b.spec.public_key and b.ready["pid"] == b.pid
        wait_until(lambda: a.request("events")["events"], 5, message="a to see b join")
        assert a.request("events")["events"][0]["peer"] == "b"
        b.signal(signal.SIGTERM)
        assert b.proc.wait(timeout=10) == 0
        down = wait_until(
            lambda: [e for e in a.request("events")["events"] if e["event"] == "down"], 5
        )
        assert down[0]["reason"] == "left"
    finally:
        b.stop()


@pytest.mark.timeout(30)
def test_node_start_exits_when_its_stdin_closes() -> None:
    node = NodeProcess.start("solo", "--insecure")
    try:
        assert node.proc.stdin is not None
        node.proc.stdin.close()  # the parent went away
        assert node.proc.wait(timeout=10) == 0
    finally:
        node.stop()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "heartbeat_timeout=soon"], "heartbeat_timeout"),
        (["--insecure", "--host", "0.0.0.0"], "not a loopback address"),
        (["--keys", "/nonexistent/keys"], "partisan keys new /nonexistent/keys --node x"),
    ],
)
def test_node_start_with_a_bad_option_exits_1_with_one_line(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "partisan", "node", "start", "x", *args],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("partisan: error")]
    assert len(errors) == 1 and message in errors[0]


@pytest.mark.timeout(60)
def test_demo_runs_without_a_tty_and_shows_every_channel() -> None:
    env = {**os.environ, "DEMO_SECONDS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    final = result.stdout.split("final:")[1]
    for channel in ("default", "membership", "data", "gossip"):
        assert f"{channel}=" in final
    rounds = result.stdout.count("\nt=")
    assert f"default={200 * rounds}," in final  # 200 a round, nothing lost
    assert "both nodes stopped" in result.stdout

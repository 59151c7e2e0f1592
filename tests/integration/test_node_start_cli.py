"""``partisan node start`` as a user (or ``partisan cluster``) runs it: errors, joins, user code.

Every failure must be one line on stderr with the right exit code (1: it
could not do it, 2: the command line is wrong), never a traceback and never
a ready line on stdout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from partisan.testing import NodeProcess, wait_until

APP = """
import os
from pathlib import Path

import partisan


async def main():
    # Written aside, then renamed: the test sees the marker only once it is complete.
    marker = Path(os.environ["APP_MARKER"])
    marker.with_suffix(".tmp").write_text(partisan.node())
    os.replace(marker.with_suffix(".tmp"), marker)


async def crash():
    raise ValueError("boom from the entry point")


def plain():
    return 42
"""


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "partisan", "node", "start", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """Exit `code`, no ready line, exactly one stderr line containing `parts`, no traceback."""
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for part in parts:
        assert part in lines[0]
    return lines[0]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "myapp.py").write_text(APP)
    (directory / "broken.py").write_text("raise RuntimeError('broken at import')\n")
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------- (a) (b) joins


@pytest.mark.timeout(30)
def test_a_failed_join_exits_1_with_one_line_and_no_ready_line(
    key_dir: Callable[..., Path],
) -> None:
    keys = key_dir("x", "n1")
    result = run_cli(
        "x", "--keys", str(keys), "--join", "n1@127.0.0.1:9", "--set", "handshake_timeout=1"
    )
    assert_one_line(result, 1, "partisan: error: could not join n1@127.0.0.1:9: ")


@pytest.mark.timeout(40)
def test_join_timeout_retries_until_the_seed_is_up(
    key_dir: Callable[..., Path], tmp_path: Path
) -> None:
    keys = key_dir("seed", "b")
    port = free_port()
    argv = [sys.executable, "-m", "partisan", "-v", "node", "start", "b", "--keys", str(keys)]
    argv += ["--join", f"seed@127.0.0.1:{port}", "--join-timeout", "20"]
    argv += ["--set", "handshake_timeout=0.5"]
    stderr = tmp_path / "b.stderr"
    with stderr.open("w") as err:
        early = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
    seed = None
    try:
        # b's first try fails: nothing listens at the seed's address yet.
        wait_until(lambda: "retrying" in stderr.read_text(), 15, message="b to retry its join")
        seed = NodeProcess.start("seed", "--keys", str(keys), "--port", str(port))
        assert early.stdout is not None
        ready = json.loads(early.stdout.readline())  # printed only once the join succeeded
        assert ready["name"] == "b"
    finally:
        if early.stdin is not None:
            early.stdin.close()  # stdin EOF: b stops gracefully
        code = early.wait(timeout=15)
        if early.stdout is not None:
            early.stdout.close()
        if seed is not None:
            seed.stop()
    assert code == 0


@pytest.mark.timeout(30)
def test_join_timeout_gives_up_with_the_last_reason(key_dir: Callable[..., Path]) -> None:
    keys = key_dir("x", "n1")
    port = free_port()
    started = time.monotonic()
    result = run_cli(
        "x",
        "--keys",
        str(keys),
        "--join",
        f"n1@127.0.0.1:{port}",
        "--join-timeout",
        "1.5",
        "--set",
        "handshake_timeout=5",
    )
    assert_one_line(result, 1, f"could not join n1@127.0.0.1:{port}")
    assert time.monotonic() - started < 15  # each try is cut to the time that is left


# ---------------------------------------------------------------- (c) (d) bad addresses


@pytest.mark.timeout(30)
def test_a_port_in_use_exits_1_with_one_line(key_dir: Callable[..., Path]) -> None:
    keys = key_dir("x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("x", "--keys", str(keys), "--port", str(port))
    assert_one_line(result, 1, f"cannot listen on 127.0.0.1:{port}", "Address already in use")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("contact", ["nonsense", "n1@127.0.0.1:notaport", "bad name@h:1"])
def test_a_malformed_join_is_a_usage_error(contact: str) -> None:
    result = run_cli("x", "--insecure", "--join", contact)
    assert_one_line(result, 2, "partisan node start: error: argument --join: ")


@pytest.mark.timeout(30)
def test_a_missing_key_directory_names_a_command_that_works(tmp_path: Path) -> None:
    missing = tmp_path / "keys"
    line = assert_one_line(run_cli("x", "--keys", str(missing)), 1, "--insecure")
    assert f"partisan keys new {missing} --node x" in line
    subprocess.run(
        [sys.executable, "-m", "partisan", "keys", "new", str(missing), "--node", "x"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with NodeProcess.start("x", "--keys", str(missing)) as node:
        assert node.ready["name"] == "x"
    line = assert_one_line(run_cli("x"), 1, "partisan keys new DIR --node x", "--insecure")
    assert "insecure=True" not in line


# ---------------------------------------------------------------- (e) (f) user code


@pytest.mark.timeout(30)
def test_import_and_run_call_the_entry_point_inside_the_ready_node(
    app_dir: Path, key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("app")
    marker = app_dir / "started.txt"
    argv = [sys.executable, "-m", "partisan", "node", "start", "app", "--keys", str(keys)]
    argv += ["--import", "json", "--import", "myapp", "--run", "myapp:main"]
    env = {**os.environ, "PYTHONPATH": str(app_dir), "APP_MARKER": str(marker)}
    with NodeProcess(argv, env=env) as node:
        assert node.ready["name"] == "app"
        wait_until(marker.exists, 10, message="the entry point to run")
        assert marker.read_text() == "app"  # partisan.node() inside the entry point


@pytest.mark.timeout(30)
def test_a_crashing_entry_point_is_logged_and_the_node_keeps_serving(
    app_dir: Path, key_dir: Callable[..., Path]
) -> None:
    keys = key_dir("app")
    log = app_dir / "node.log"
    argv = [sys.executable, "-m", "partisan", "node", "start", "app", "--keys", str(keys)]
    argv += ["--run", "myapp:crash", "--log-file", str(log)]
    with NodeProcess(argv, env={**os.environ, "PYTHONPATH": str(app_dir)}) as node:
        wait_until(lambda: "boom from the entry point" in log.read_text(), 10)
        text = log.read_text()
        assert "entry point myapp:crash failed" in text and "Traceback" in text
        assert node.proc.poll() is None  # still serving
        assert node.stop() == 0


@pytest.mark.timeout(30)
def test_the_current_directory_is_searched_for_user_modules(app_dir: Path) -> None:
    result = run_cli("x", "--insecure", "--run", "myapp:nope", cwd=app_dir)
    assert_one_line(result, 1, "module 'myapp' has no attribute 'nope'")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--import", "no_such_module_here"], 1, "cannot import 'no_such_module_here': "),
        (["--import", "broken"], 1, "cannot import 'broken': RuntimeError: broken at import"),
        (["--run", "broken:main"], 1, "cannot import 'broken'"),
        (["--run", "myapp"], 2, "partisan node start: error: argument --run: "),
        (["--run", "myapp:"], 2, "expected MODULE:FUNCTION"),
        (["--run", "my app:main"], 2, "expected MODULE:FUNCTION"),
    ],
)
def test_bad_user_code_exits_with_one_line(
    app_dir: Path, args: list[str], code: int, message: str
) -> None:
    assert_one_line(run_cli("x", "--insecure", *args, cwd=app_dir), code, message)

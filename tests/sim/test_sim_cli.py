"""`partisan sim`: the JSON contract, byte-identical output across processes, usage errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from partisan.cli import main
from partisan.testing import wait_until

ARGS = ["sim", "-n", "120", "--fail", "0.3", "--broadcasts", "12", "--rounds", "5", "--seed", "3"]
WALL_CLOCK = ("wall_s", "events_per_s")  # the only fields allowed to differ between runs


def run_cli(*extra: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from partisan.cli import main; rc = main(sys.argv[1:]); "
        "assert 'zmq' not in sys.modules and 'dill' not in sys.modules, 'sim imported zmq/dill'; "
        "sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-c", code, *ARGS, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )


@pytest.mark.timeout(120)
def test_same_seed_same_json_across_processes_and_hash_seeds() -> None:
    outs = []
    for hash_seed in ("1", "4242"):
        proc = run_cli("--broadcast", "plumtree", "--json", hash_seed=hash_seed)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        for key in WALL_CLOCK:
            assert doc.pop(key) > 0
        outs.append(json.dumps(doc, sort_keys=True))
    assert outs[0] == outs[1]
    doc = json.loads(outs[0])
    # the CONTRACT.md fields
    for key in ("in_degree", "clustering", "avg_path", "avg_path_sources", "connected",
                "symmetric", "reliability", "rmr", "last_delivery_hop", "healing_rounds"):  # fmt: skip
        assert key in doc, key
    assert sum(doc["in_degree"].values()) == 120 and doc["failed"] == 36
    assert doc["connected"] and doc["symmetric"] and doc["duplicates"] == 0
    assert doc["reliability"] >= 0.9 and doc["manager"] == "hyparview"


def test_text_output_and_full_mesh(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sim", "-n", "12", "--manager", "full-mesh", "--broadcasts", "3", "--rounds", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "full-mesh + flood, n=12" in out and "in-degree {11: 12}" in out
    assert "reliability 1.0000" in out and "events/s" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "0"], "must be >= 1"),
        (["--fail", "1"], "must be in [0, 1)"),
        (["--fail", "x"], "not a number"),
        (["--broadcasts", "-1"], "must be >= 0"),
        (["--manager", "nope"], "invalid choice"),
        (["--broadcast", "gossip"], "invalid choice"),
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed (make test-tools installs it): the bar needs a terminal",
)
@pytest.mark.timeout(120)
def test_a_terminal_sees_a_progress_bar_and_stdout_stays_one_json_document(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.json"
    server = f"partisan-sim-{os.getpid()}"
    tmux = ["tmux", "-L", server]
    command = (
        shlex.join([sys.executable, "-m", "partisan", "sim", "-n", "1500", "--json"])
        + f" > {shlex.quote(str(out))}; echo EXIT=$?; sleep 60"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", "sim"], capture_output=True, text=True, timeout=10
        ).stdout

    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "sim", "-x", "120", "-y", "20", command],
            check=True,
            env=env,
            timeout=10,
        )
        # While it runs, stderr (the terminal) shows the phase and how far it is.
        wait_until(
            lambda: re.search(r"joining .* \d+/1500", screen()),
            60,
            interval=0.1,
            message=lambda: f"a 'joining n/1500' bar on screen:\n{screen()}",
        )
        wait_until(lambda: "EXIT=0" in screen(), 100, interval=0.2, message=screen)
        assert "joining" not in screen()  # transient: gone once done
        result = json.loads(out.read_text())  # stdout: exactly one JSON document
        assert result["n"] == 1500
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)

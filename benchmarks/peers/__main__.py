"""``make bench-peers``: the same call and cast workloads on partisan, Ray and Thespian.

Each framework's workload runs in its own interpreter as a subprocess
(`on_partisan`, `on_ray`, `on_thespian`) that prints one JSON line; Ray and
Thespian get throwaway virtualenvs (`venvs`). A framework that cannot be
installed or run gets a row saying why, and the others still run. Each
worker starts in a session of its own, and whatever is left in that session
when it is done (a Ray raylet, a Thespian admin) is ended by pid.

Usage: ``python -m benchmarks.peers [--quick] [--only ray,thespian] [--no-docs]``.
Without ``--quick`` the table also replaces the generated section of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import report, venvs

COMMAND = "make bench-peers"
PAGE = venvs.ROOT / "docs" / "performance.md"
WORKER_TIMEOUT = 150.0
FRAMEWORKS = ("partisan", "ray", "thespian")


def _session_pids(sid: int) -> list[int]:
    pids = []
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            if os.getsid(pid) == sid and pid != os.getpid():
                pids.append(pid)
        except OSError:
            continue  # gone meanwhile
    return pids


def _end_session(sid: int, grace: float = 5.0) -> int:
    """End what is left of the session `sid` (ours: the worker's); return how many we ended.

    A framework's own shutdown may still be under way when its worker exits
    (Ray's raylet): wait `grace` seconds before sending SIGTERM, then SIGKILL.
    """
    deadline = time.monotonic() + grace
    while _session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _session_pids(sid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sid):
            with contextlib.suppress(OSError):  # gone meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + 3.0
        while _session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return len(left)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _result(out: str) -> dict[str, Any] | None:
    """The worker's JSON record: its last line that is one (Ray's raylet may print after it)."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "framework" in record:
                return record
    return None


def run_worker(
    framework: str, argv: list[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one worker in a session of its own; its JSON record, or an error record."""
    print(f"bench-peers: running {framework}", flush=True)
    proc = subprocess.Popen(
        argv,
        cwd=venvs.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    error = None
    try:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        _end_session(proc.pid, grace=0)
        out, err = proc.communicate()
        error = f"timed out after {WORKER_TIMEOUT:.0f} s"
    finally:
        leftovers = _end_session(proc.pid)
    if error is None and proc.returncode != 0:
        error = f"exit {proc.returncode}: {_last_line(err) or _last_line(out)}"
    if error is None:
        result = _result(out)
        if result is None:
            error = f"no result: {_last_line(out) or _last_line(err)}"
    if error is not None:
        print(err, file=sys.stderr)
        return {"framework": framework, "error": f"did not run: {error}"}
    assert result is not None
    result["leftovers"] = leftovers
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _partisan(quick: list[str]) -> dict[str, Any]:
    return run_worker("partisan", [sys.executable, "-m", "benchmarks.peers.on_partisan", *quick])


def _ray(quick: list[str]) -> dict[str, Any]:
    python = venvs.ensure("ray")
    home = venvs.CACHE_DIR / "ray-home"  # Ray writes ~/.ray/auth_token: keep it in the cache
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home), RAY_USAGE_STATS_ENABLED="0")
    # Ray's session directory holds unix sockets (a path of at most 107 bytes): keep it short.
    temp_dir = tempfile.mkdtemp(prefix="pbray-")
    try:
        argv = [str(python), "-m", "benchmarks.peers.on_ray", temp_dir, *quick]
        return run_worker("ray", argv, env)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _thespian(quick: list[str]) -> dict[str, Any]:
    python = venvs.ensure("thespian")
    argv = [str(python), "-m", "benchmarks.peers.on_thespian", str(_free_port()), *quick]
    return run_worker("thespian", argv)


RUNNERS = {"partisan": _partisan, "ray": _ray, "thespian": _thespian}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes; docs untouched")
    parser.add_argument("--only", default="", help="comma-separated: partisan,ray,thespian")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--json", default="bench-results-peers.json", help="where to write results")
    args = parser.parse_args(argv)
    wanted = [f.strip() for f in args.only.split(",") if f.strip()] or list(FRAMEWORKS)
    unknown = set(wanted) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"unknown framework(s): {', '.join(sorted(unknown))}")
    quick = ["--quick"] if args.quick else []
    host = report.machine()  # before the run: its load average is the machine's, not ours
    started = time.perf_counter()
    results = []
    for framework in wanted:
        try:
            results.append(RUNNERS[framework](quick))
        except venvs.VenvError as exc:
            results.append({"framework": framework, "error": f"not installed: {exc}"})
    elapsed = time.perf_counter() - started
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report.print_table(results, f"bench-peers ({elapsed:.0f} s)")
    with open(args.json, "w") as fh:
        json.dump({"started": when, "machine": host, "results": results}, fh, indent=2)
    print(f"results written to {args.json}")
    if not (args.quick or args.no_docs or args.only):
        section = report.markdown(results, host, when, COMMAND)
        PAGE.write_text(report.splice(PAGE.read_text(), section))
        print(f"table written to {Path(PAGE).relative_to(venvs.ROOT)}")
    ours = next(r for r in results if r["framework"] == "partisan") if "partisan" in wanted else {}
    return 1 if "error" in ours else 0


if __name__ == "__main__":
    raise SystemExit(main())

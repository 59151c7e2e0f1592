"""The throwaway virtualenvs the other frameworks run in (never a dependency of partisan).

Each lives under `CACHE_DIR` (``.bench-peers/``, gitignored; ``make clean``
removes it), is created on first use with this interpreter's ``venv`` and
pip, and is reinstalled when its pinned requirements change. The pins are
what docs/performance.md was measured with: bump them here, deliberately.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Where the virtualenvs live; ``BENCH_PEERS_DIR`` moves them (e.g. to a cache).
CACHE_DIR = Path(os.environ.get("BENCH_PEERS_DIR", ROOT / ".bench-peers"))
#: The pinned requirements of each framework's virtualenv.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "ray": ("ray==2.60.0",),
    "thespian": ("thespian==4.0.1",),
}
INSTALL_TIMEOUT = 1800.0  # ray is a few hundred MB on the first run


class VenvError(RuntimeError):
    """A virtualenv could not be created or its requirements installed; the message says why."""


def ensure(framework: str) -> Path:
    """Create (or reuse) `framework`'s virtualenv; return its python."""
    venv = CACHE_DIR / f"{framework}-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-peers-installed"
    wanted = "\n".join(REQUIREMENTS[framework]) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"bench-peers: installing {' '.join(REQUIREMENTS[framework])} into {venv}", flush=True)
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], "venv")
    _run(
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS[framework]],
        "pip install",
    )
    stamp.write_text(wanted)
    return python


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise VenvError(f"{what} timed out after {INSTALL_TIMEOUT:.0f} s") from exc
    except OSError as exc:
        raise VenvError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        # pip's last error line says why (no matching distribution, no network...);
        # its warnings about unreachable local indexes do not.
        lines = [
            line.strip()
            for line in (done.stderr or done.stdout).splitlines()
            if line.strip() and not line.startswith("WARNING")
        ]
        raise VenvError(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")

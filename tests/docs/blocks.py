"""Find and run the code blocks of README.md and docs/ (the docs tests' runner).

Rules (also in docs/writing-docs.md, for authors):

- ```` ```python ```` and ```` ```sh ```` blocks run; other fences (``text``,
  ``toml``, ``json``, none) are shown, never run.
- A block whose first line is ``# no-run: REASON`` is not run; the tests list
  every such block, so an exemption is a visible, reviewed decision.
- The blocks of one page run in order, in one fresh directory, so a page's
  setup (``partisan keys new keys ...``) is what its later blocks use.
- A python block whose first line is ``# file: NAME.py`` is saved as NAME.py
  for a later ``sh`` block to run; any other python block runs as a script.
- An ``sh`` line ending in ``&`` starts a background process; the runner waits
  for its first line of output (a node's ready line) and stops it when the
  page is done. ``CMD  # -> TEXT`` asserts that CMD prints exactly TEXT;
  ``print(...)  # -> TEXT`` in python asserts that the line is printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = ("python", "sh")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_NO_RUN = re.compile(r"^#\s*no-run:\s*(?P<reason>.+)$")
_FILE = re.compile(r"^#\s*file:\s*(?P<name>[\w.-]+\.py)\s*$")
_EXPECT = re.compile(r"\s+#\s*->\s*(?P<text>.+?)\s*$")
BLOCK_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block of a Markdown page."""

    page: str  # relative to the repository
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def no_run(self) -> str | None:
        """The reason given by a ``# no-run:`` first line, if any."""
        first = self.code.lstrip("\n").split("\n", 1)[0].strip()
        match = _NO_RUN.match(first)
        return match.group("reason") if match else None

    @property
    def file_name(self) -> str | None:
        first = self.code.lstrip("\n").split("\n", 1)[0].strip()
        match = _FILE.match(first)
        return match.group("name") if match else None

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and self.no_run is None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, in order."""
    out: list[Block] = []
    lines = page.read_text().split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match.group("indent"), match.group("fence")
        language = match.group("info").strip().split(" ")[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        out.append(Block(page.relative_to(ROOT).as_posix(), i + 1, language, "\n".join(body)))
        i = j + 1
    return out


class PageRun:
    """Run one page's blocks in order in `directory`; stop its background processes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.background: list[subprocess.Popen[str]] = []
        venv_bin = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
        }
        self.env.pop("PARTISAN_CONFIG", None)

    def run(self, block: Block) -> None:
        if block.language == "python":
            self._python(block)
        else:
            for line in block.code.split("\n"):
                if line.strip() and not line.strip().startswith("#"):
                    self._sh(block, line)

    def _python(self, block: Block) -> None:
        name = block.file_name
        if name is not None:
            (self.directory / name).write_text(block.code)
            return
        script = self.directory / f"block_{block.line}.py"
        script.write_text(block.code)
        result = self._check([sys.executable, script.name], block, block.code)
        expected = [m.group("text") for m in map(_EXPECT.search, block.code.split("\n")) if m]
        printed = iter(result.stdout.split("\n"))
        for text in expected:  # each expected line, in order (other output may come between)
            assert any(line.strip() == text for line in printed), (
                f"{block.where()}: expected the line {text!r} in the output:\n{result.stdout}"
            )

    def _sh(self, block: Block, line: str) -> None:
        expect = _EXPECT.search(line)
        command = line[: expect.start()] if expect else line.split("  #", 1)[0]
        command = command.strip()
        if command.endswith("&"):
            proc = subprocess.Popen(
                ["bash", "-c", command[:-1]],
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self.background.append(proc)
            ready = proc.stdout.readline() if proc.stdout else ""
            assert ready, f"{block.where()}: {command!r} exited before printing a line: " + (
                proc.stderr.read() if proc.stderr else ""
            )
            return
        result = self._check(["bash", "-c", command], block, command)
        if expect:
            assert result.stdout.strip() == expect.group("text"), (
                f"{block.where()}: {command!r} printed {result.stdout.strip()!r}, "
                f"the page says {expect.group('text')!r}"
            )

    def _check(self, argv: list[str], block: Block, what: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, (
            f"{block.where()} failed (exit {result.returncode}):\n{what}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        return result

    def close(self) -> None:
        for proc in reversed(self.background):
            if proc.stdin:
                proc.stdin.close()  # a node started this way stops when its stdin closes
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()

"""``partisan cluster logs``: node logs merged into one stream, each line prefixed by its node.

Log lines start with a timestamp (``2026-12-03 07:10:15,462``, which sorts as
text); lines without one (a traceback's body) belong to the line above them.
Entries of all files are merged by that timestamp, so a peer.down on n2 shows
right after the crash on n5 that caused it. ``-n LINES`` keeps the last LINES
lines of each log before merging (as ``docker compose logs --tail`` does);
``-f`` then prints what the files gain, polling every 0.2 s, until Ctrl-C.
"""

from __future__ import annotations

import heapq
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["merge", "print_logs"]

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?")
Entry = tuple[str, str, list[str]]  # (timestamp, node, lines)


def _entries(node: str, lines: list[str]) -> Iterator[Entry]:
    stamp, block = "", []  # type: str, list[str]
    for line in lines:
        match = _STAMP.match(line)
        if match and block:
            yield stamp, node, block
            block = []
        if match:
            stamp = line[: match.end()]
        block.append(line)
    if block:
        yield stamp, node, block


def merge(texts: Mapping[str, list[str]]) -> Iterator[tuple[str, str]]:
    """(node, line) pairs of every node's lines, merged by timestamp (stable per node)."""
    streams = [_entries(node, lines) for node, lines in texts.items()]
    for _stamp, node, block in heapq.merge(*streams, key=lambda e: e[0]):
        for line in block:
            yield node, line


def _read_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines of `path` from `offset`; returns them and the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", errors="replace")
    return text.splitlines(), offset + end


def print_logs(paths: Mapping[str, Path], *, lines: int | None, follow: bool) -> None:
    width = max((len(n) for n in paths), default=0)
    offsets: dict[str, int] = {}
    texts: dict[str, list[str]] = {}
    for node, path in paths.items():
        got, offsets[node] = _read_lines(path, 0)
        texts[node] = got[-lines:] if lines else ([] if lines == 0 else got)
    for node, line in merge(texts):
        print(f"{node:<{width}} | {line}")
    sys.stdout.flush()
    while follow:
        time.sleep(0.2)
        fresh = {}
        for node, path in paths.items():
            if path.exists() and path.stat().st_size < offsets[node]:
                offsets[node] = 0  # rotated or recreated: read it again
            fresh[node], offsets[node] = _read_lines(path, offsets[node])
        for node, line in merge(fresh):
            print(f"{node:<{width}} | {line}")
        sys.stdout.flush()

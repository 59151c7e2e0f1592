"""Reading the per-node event logs (``DIR/events/NAME.jsonl``) that `partisan.eventlog` writes.

``partisan cluster events`` merges them into one timeline, ``--follow``
tails them, and the observer derives `Health.last_repair_s` from them. The
files are written by other processes that may be killed mid-write or
restarted, so reading is forgiving: a malformed line is skipped and counted,
never raised; an unterminated last line is a write in progress, not an
error. Each record is a dict (see `partisan.eventlog` for the keys).
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TOPOLOGY_EVENTS",
    "EventBatch",
    "EventTail",
    "follow_events",
    "format_event",
    "last_repair_s",
    "load_events",
    "parse_line",
    "read_events",
    "repair_episode",
    "repair_point",
    "repair_time",
]

Record = dict[str, Any]
PathLike = str | os.PathLike[str]

#: The events that change the overlay; a burst of them after a ``peer.down`` is a repair.
TOPOLOGY_EVENTS = frozenset({"peer.down", "peer.up", "view.active"})


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Records merged in time order, and how many lines were skipped as malformed."""

    records: tuple[Record, ...]
    malformed: int = 0


def _epoch(ts: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (``Z`` or an offset)."""
    moment = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_line(line: str) -> Record | None:
    """One record, or None if the line is not a JSON object with a valid ``ts`` and ``event``."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    ts, event = record.get("ts"), record.get("event")
    if not isinstance(ts, str) or not isinstance(event, str):
        return None
    try:
        _epoch(ts)
    except ValueError:
        return None
    return record


def _parse_text(text: str, *, final: bool) -> tuple[list[Record], int, int]:
    """Records from complete lines of `text`, malformed count, characters consumed.

    An unterminated last line is left unconsumed (it is still being written),
    unless `final`, when it is taken if it parses and otherwise dropped
    without counting it as malformed.
    """
    records: list[Record] = []
    malformed = 0
    lines = text.split("\n")
    for line in lines[:-1]:
        if not line.strip():
            continue
        record = parse_line(line)
        if record is None:
            malformed += 1
        else:
            records.append(record)
    consumed = len(text) - len(lines[-1])
    if final and lines[-1].strip():
        record = parse_line(lines[-1])
        if record is not None:
            records.append(record)
        consumed = len(text)
    return records, malformed, consumed


def _sort(records: Iterable[Record]) -> list[Record]:
    """Stable sort by time: records of equal ``ts`` keep file order (a node's own order)."""
    return sorted(records, key=lambda r: _epoch(r["ts"]))


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def load_events(paths: Iterable[PathLike]) -> EventBatch:
    """Every record of `paths` (missing files are empty), merged by ``ts``."""
    records: list[Record] = []
    malformed = 0
    for path in paths:
        found, bad, _ = _parse_text(_read_text(Path(path)), final=True)
        records += found
        malformed += bad
    return EventBatch(tuple(_sort(records)), malformed)


def read_events(paths: Iterable[PathLike]) -> list[Record]:
    """The records of `paths` merged by ``ts`` (`load_events` also counts skipped lines)."""
    return list(load_events(paths).records)


def _expand(items: Sequence[Path]) -> list[Path]:
    """A directory stands for its ``*.jsonl`` files, listed again on every poll."""
    out: list[Path] = []
    for path in items:
        out += sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    return out


class EventTail:
    """What a set of event logs gained since the previous `read`: the offsets of a ``tail -F``.

    `follow_events` polls one of these forever; the observer reads one per
    snapshot, so a long-running view costs only the new bytes, not a re-read
    of every log every second. `paths` (files, or directories standing for
    their ``*.jsonl`` files) may be replaced between reads: a file seen for
    the first time is read from its start, except on the very first read when
    `from_start` is False (then only what is written afterwards counts). A
    file that shrank or was replaced (new inode) was rewritten, and is read
    again from its start. An unterminated last line is left for the next read.
    """

    def __init__(self, paths: PathLike | Iterable[PathLike], *, from_start: bool = True) -> None:
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        self.paths: list[Path] = [Path(item) for item in items]
        self.from_start = from_start
        #: Lines skipped as malformed so far.
        self.malformed = 0
        self._offsets: dict[Path, int] = {}
        self._inodes: dict[Path, int] = {}
        self._first = True

    def read(self) -> list[Record]:
        """The complete records written since the previous read, sorted by ``ts``."""
        batch: list[Record] = []
        for path in _expand(self.paths):
            try:
                stat = path.stat()
            except OSError:
                continue
            size = stat.st_size
            if path not in self._offsets:
                self._offsets[path] = 0 if (self.from_start or not self._first) else size
            if size < self._offsets[path] or self._inodes.get(path, stat.st_ino) != stat.st_ino:
                self._offsets[path] = 0  # truncated or replaced: a new file under the old name
            self._inodes[path] = stat.st_ino
            if size == self._offsets[path]:
                continue
            try:
                with path.open("rb") as handle:
                    handle.seek(self._offsets[path])
                    data = handle.read()
            except OSError:
                continue
            # Split on bytes so offsets stay byte offsets even with multi-byte UTF-8.
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] += len(complete)
            found, bad, _ = _parse_text(complete.decode("utf-8", errors="replace"), final=False)
            batch += found
            self.malformed += bad
        self._first = False
        return _sort(batch)


def follow_events(
    paths: PathLike | Iterable[PathLike],
    *,
    poll: float = 0.2,
    from_start: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Record]:
    """Yield records as the files grow, forever (the caller stops iterating).

    `paths` may name files that do not exist yet, or directories whose
    ``*.jsonl`` files (including ones created later) are all followed. Each
    poll reads what every file gained (an `EventTail`), sorts that batch by
    ``ts`` and yields it; then it waits `poll` seconds (`sleep`, replaceable
    in tests). A file that shrank or was replaced (new inode) was rewritten,
    and is read again from its start. Records from different files are only
    ordered within one poll: a node that flushes late can appear after a
    later record of another node.
    """
    tail = EventTail(paths, from_start=from_start)
    while True:
        yield from tail.read()
        sleep(poll)


def _clock(ts: str) -> str:
    """``HH:MM:SS.mmm`` (UTC, like the logs) of an RFC 3339 timestamp."""
    moment = datetime.datetime.fromtimestamp(_epoch(ts), tz=datetime.UTC)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _names(value: Any) -> Sequence[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def format_event(record: Record) -> str:
    """One human line: ``19:00:00.123 n2 peer.down n5 (heartbeat_timeout)``.

    View changes show ``+added -removed``; ``node.start`` shows its address.
    """
    parts = [_clock(record["ts"]), str(record.get("node") or "?"), str(record["event"])]
    if record.get("peer") is not None:
        parts.append(str(record["peer"]))
    parts += ["+" + n for n in _names(record.get("added"))]
    parts += ["-" + n for n in _names(record.get("removed"))]
    if record.get("address") is not None:
        parts.append(f"@{record['address']}")
    if record.get("reason") is not None:
        parts.append(f"({record['reason']})")
    return " ".join(parts)


def last_repair_s(
    records: Iterable[Record], *, converged_now: bool, quiet: float = 3.0
) -> float | None:
    """How long the latest repair took, in seconds, or None (none yet, or still repairing).

    Approximation, from the logs alone: topology events (``peer.down``,
    ``peer.up``, ``view.active``) are grouped into episodes. An episode opens
    at a *failure* — a ``peer.down`` whose reason is not a deliberate
    disconnect (`DELIBERATE_REASONS`: HyParView dropping a peer from a full
    active view, a node leaving) — when none is open; topology events outside
    an episode, e.g. the start-up joins and their churn, are ignored. It stays
    open while each further topology event follows the previous one within
    `quiet` seconds. The repair time is from its first ``peer.down`` to its
    last topology event, i.e. to when the overlay last *changed*, not to when
    an observer saw it converged; the timestamps are each node's wall clock
    (one machine, so comparable). A repair with a pause longer than `quiet`
    counts as two episodes, the latest one reported. While the cluster is not
    converged (`converged_now` False) the repair is in progress: None.
    """
    if not converged_now:
        return None
    return repair_time(sorted(filter(None, map(repair_point, records))), quiet=quiet)


#: ``peer.down`` reasons that are not failures: no repair episode starts at them.
DELIBERATE_REASONS = frozenset({"disconnected", "left"})


def repair_point(record: Record) -> tuple[float, bool] | None:
    """``(epoch seconds, is_failure)`` for a topology record, None for any other.

    Parse once, keep the point: `RepairClock`-style callers hold thousands of
    these and recompute `repair_time` on every poll.
    """
    event = record.get("event")
    if event not in TOPOLOGY_EVENTS:
        return None
    failure = event == "peer.down" and record.get("reason") not in DELIBERATE_REASONS
    return _epoch(record["ts"]), failure


def repair_time(points: Iterable[tuple[float, bool]], *, quiet: float = 3.0) -> float | None:
    """The latest episode's length over time-sorted `repair_point` tuples (see `last_repair_s`)."""
    episode = repair_episode(points, quiet=quiet)
    return None if episode is None else episode[1] - episode[0]


def repair_episode(
    points: Iterable[tuple[float, bool]], *, quiet: float = 3.0
) -> tuple[float, float] | None:
    """``(first failure, last topology event)`` of the latest episode, in epoch seconds."""
    start: float | None = None
    end = 0.0
    latest: tuple[float, float] | None = None
    for at, failure in points:
        if start is not None and at - end > quiet:
            latest, start = (start, end), None
        if start is None:
            if failure:
                start = end = at
        else:
            end = at
    if start is not None:
        latest = (start, end)
    return latest

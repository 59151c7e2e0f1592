"""A node's event log: one JSON line per thing an observer wants to replay.

Why a separate log: the node's text log is for people; ``partisan cluster``
(and a test) needs to know *when* a node started, saw a peer come or go, or
changed its views, in a form a program can merge across nodes. A node with
``config.event_log`` set appends one JSON object per line to that file::

    {"ts": "2026-12-02T19:00:00.123456Z", "mono": 12345.678, "node": "n1",
     "incarnation": 17647..., "event": "peer.down", "peer": "n2",
     "peer_incarnation": 17647..., "reason": "heartbeat_timeout"}

Every record has those eight keys (``null`` when not applicable) plus the
kind's extras. Kinds: ``node.start`` (``address``, ``manager``, ``role``,
``os_pid``), ``node.stop``, ``peer.up``, ``peer.down``, ``peer.join``,
``peer.leave``, ``view.active`` and ``view.passive`` (``view``, ``added``,
``removed``: sorted names).

Each record is one ``write`` followed by a ``flush``, so a node killed with
SIGKILL loses nothing it logged. The log never raises into its caller: the
first I/O error is logged and the log goes quiet.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

from partisan.membership.types import Disconnect, Leave, PeerDown, Received

__all__ = [
    "EventLog",
    "ViewTracker",
    "leave_reasons",
    "open_event_log",
    "start_event_log",
    "utc_timestamp",
]

logger = logging.getLogger(__name__)


def utc_timestamp(epoch: float | None = None) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-12-02T19:00:00.123456Z``."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if epoch is None else epoch, tz=datetime.UTC
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventLog:
    """Append-only JSON-lines writer for one node incarnation (see the module docstring)."""

    def __init__(self, path: str, node: str, incarnation: int) -> None:
        self.path = path
        self.node = node
        self.incarnation = incarnation
        self._file: IO[str] | None = None
        self._failed = False
        try:
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115  # closed in close()
        except OSError as exc:
            self._fail(exc)

    @property
    def enabled(self) -> bool:
        """False once the file could not be opened or written."""
        return self._file is not None

    def write(
        self,
        event: str,
        *,
        peer: str | None = None,
        peer_incarnation: int | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> None:
        """Append one record; never raises."""
        out = self._file
        if out is None:
            return
        record = {
            "ts": utc_timestamp(),
            "mono": time.monotonic(),
            "node": self.node,
            "incarnation": self.incarnation,
            "event": event,
            "peer": peer,
            "peer_incarnation": peer_incarnation,
            "reason": reason,
            **extra,
        }
        try:
            line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
            out.write(line)
            out.flush()
        except (OSError, ValueError) as exc:  # ValueError: written after close
            self._fail(exc)

    def close(self) -> None:
        """Close the file (idempotent); later writes are ignored."""
        out, self._file = self._file, None
        if out is not None:
            try:
                out.close()
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            logger.error("event log %s of %s disabled: %s", self.path, self.node, exc)
        out, self._file = self._file, None
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()


def open_event_log(path: str | None, node: str, incarnation: int) -> EventLog | None:
    """An `EventLog` for `path`, or None when no path is configured or it cannot be opened."""
    if not path:
        return None
    log = EventLog(path, node, incarnation)
    return log if log.enabled else None


def start_event_log(config: Any, spec: Any, incarnation: int) -> EventLog | None:
    """Open `config.event_log` (if set) and write the ``node.start`` record of `spec`."""
    log = open_event_log(config.event_log, spec.name, incarnation)
    if log is not None:
        log.write(
            "node.start",
            address=spec.address,
            manager=config.manager,
            role=config.role,
            os_pid=os.getpid(),
        )
    return log


def _names(specs: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted(spec.name for spec in specs))


class ViewTracker:
    """Turn a manager's views before/after each step into ``peer.*`` / ``view.*`` records.

    Views are kept as sorted tuples of names, so "nothing changed" (the
    common case) costs one tuple comparison per view.
    """

    def __init__(self, log: EventLog, self_name: str) -> None:
        self.log = log
        self.self_name = self_name
        self.members: tuple[str, ...] = (self_name,)
        self._incarnations: dict[str, int] = {}
        self.active: tuple[str, ...] = ()
        self.passive: tuple[str, ...] = ()
        # The views' names in the manager's own order: equal means unchanged, no sort.
        self._raw_active: tuple[str, ...] = ()
        self._raw_passive: tuple[str, ...] = ()

    def members_changed(
        self,
        specs: Sequence[Any],
        reasons: dict[str, str] | None = None,
    ) -> None:
        """Record ``peer.join`` / ``peer.leave`` for the difference to the last members view.

        `reasons` maps a peer name to why it may have left (the step's event).
        """
        names = _names(specs)
        if names == self.members:
            return
        before = set(self.members)
        incarnations = {spec.name: spec.incarnation for spec in specs}
        for name in names:
            if name not in before and name != self.self_name:
                self.log.write("peer.join", peer=name, peer_incarnation=incarnations.get(name))
        now = set(names)
        for name in self.members:
            if name not in now and name != self.self_name:
                self.log.write(
                    "peer.leave",
                    peer=name,
                    peer_incarnation=self._incarnations.get(name),
                    reason=(reasons or {}).get(name),
                )
        self.members = names
        self._incarnations = incarnations

    def views_changed(self, active: Sequence[Any], passive: Sequence[Any]) -> None:
        """Record ``view.active`` / ``view.passive`` when either name set changed."""
        raw = tuple(spec.name for spec in active)
        if raw != self._raw_active:
            self._raw_active = raw
            names = tuple(sorted(raw))
            if names != self.active:
                self._view("view.active", self.active, names)
                self.active = names
        raw = tuple(spec.name for spec in passive)
        if raw != self._raw_passive:
            self._raw_passive = raw
            names = tuple(sorted(raw))
            if names != self.passive:
                self._view("view.passive", self.passive, names)
                self.passive = names

    def _view(self, event: str, before: tuple[str, ...], after: tuple[str, ...]) -> None:
        old, new = set(before), set(after)
        self.log.write(
            event,
            view=list(after),
            added=sorted(new - old),
            removed=sorted(old - new),
        )


def leave_reasons(
    event: object, actions: Sequence[object], members: Sequence[str]
) -> dict[str, str]:
    """Why peers may have left the members view in this step (for ``peer.leave``).

    The step's event says it best (a failure's reason, a leave); else the
    reason of the manager's `Disconnect` for that peer.
    """
    reasons: dict[str, str] = {}
    for action in actions:
        if isinstance(action, Disconnect):
            reasons[action.peer.name] = action.reason.value
    if isinstance(event, PeerDown):
        reasons[event.peer.name] = event.reason
    elif isinstance(event, Leave):
        for name in members if event.node is None else (event.node.name,):
            reasons[name] = "left"
    elif isinstance(event, Received) and type(event.msg).__name__ == "LeaveNotice":
        reasons[event.sender.name] = "left"
    return reasons

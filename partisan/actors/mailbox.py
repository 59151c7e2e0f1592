"""A lean mailbox: a deque plus at most one waiter Future, with selective receive.

Why not an `asyncio.Queue` per actor: an idle actor with a Queue measured
4.5 KB against 0.84 KB for a deque and a lazily created Future, and a put on
a Queue does more work. Here `put` is a plain function call that appends and
wakes the one waiting receiver, if any; no await on the sending side.

Messages from other nodes are *held* (`put_held`): queued inside a small
`_Held` wrapper that carries their size and the transport's account, and
released to the node's `InboundGauge` when an actor takes them (or dies with
them queued). That is how a slow reader pushes back on its senders: the
transport withholds credit while the node holds too many unread bytes (see
`partisan.transport.inflow`). Local messages are queued bare; taking one costs
a type check.

Selective receive (Erlang's ``receive`` with patterns): `receive(match=...)`
takes the first queued message that matches and leaves the others queued in
their order. A waiting receiver is woken by every arrival and scans only the
messages that arrived since its last scan, so a deep mailbox of non-matching
messages is scanned once per receive, not once per wake-up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from partisan.errors import ReceiveTimeout

__all__ = ["Mailbox", "Match", "as_predicate"]

#: A receive pattern: a type, a tuple of types, or a predicate over the message.
Match = type | tuple[type, ...] | Callable[[Any], bool] | None

_TIMED_OUT = object()


def as_predicate(match: Match) -> Callable[[Any], bool] | None:
    """Turn a receive pattern into a predicate (None means "anything")."""
    if match is None:
        return None
    if isinstance(match, type):
        cls = match
        return lambda msg: isinstance(msg, cls)
    if isinstance(match, tuple):
        if not all(isinstance(t, type) for t in match):
            raise TypeError(f"receive(match=...): a tuple must hold only types, got {match!r}")
        types = match
        return lambda msg: isinstance(msg, types)
    if callable(match):
        return match
    raise TypeError(
        f"receive(match=...) takes a type, a tuple of types or a predicate, got {match!r}"
    )


class _Held:
    """A peer's message in a mailbox, with what it holds against the node's inbound bound."""

    __slots__ = ("account", "gauge", "msg", "size")

    def __init__(self, msg: Any, gauge: Any, account: Any, size: int) -> None:
        self.msg = msg
        self.gauge = gauge
        self.account = account
        self.size = size

    def release(self) -> Any:
        """Give the bytes back to the gauge (once) and return the message."""
        size = self.size
        if size:
            self.size = 0
            self.account.held -= size
            gauge = self.gauge
            gauge.held -= size
            if gauge.over and gauge.held <= gauge.low:
                gauge.release(self.account, 0)  # crossing back under: let it tell the links
        return self.msg


def _wake(fut: asyncio.Future[Any], value: object) -> None:
    if not fut.done():
        fut.set_result(value)


class Mailbox:
    """Messages in arrival order and the one coroutine that may be waiting for them.

    The deque exists only while messages are queued (an empty deque costs
    ~760 bytes, most of an idle actor's footprint); it is dropped again when
    the receiver finds it empty and goes to sleep.
    """

    __slots__ = ("_queue", "_waiter")

    def __init__(self) -> None:
        self._queue: deque[Any] | None = None
        self._waiter: asyncio.Future[Any] | None = None

    def put(self, msg: Any) -> None:
        """Append `msg` and wake the receiver; never blocks, never awaits."""
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(msg)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def put_held(self, msg: Any, gauge: Any) -> None:
        """Append a peer's message, holding its bytes against `gauge` until it is taken.

        `gauge.account` and `gauge.size` describe the message the transport
        is delivering right now (`InboundGauge`); they are consumed here.
        """
        size = gauge.size
        if not size:
            self.put(msg)
            return
        account = gauge.account
        gauge.size = 0
        account.held += size
        held = gauge.held = gauge.held + size  # InboundGauge.hold, inlined
        if held > gauge.peak:
            gauge.hold(account, 0)  # a new peak, maybe over the bound: let it record that
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(_Held(msg, gauge, account, size))
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def hold_last(self, gauge: Any) -> None:
        """Hold the message just appended (by a runtime path that called `put`) like `put_held`."""
        size = gauge.size
        queue = self._queue
        if not size or not queue or type(queue[-1]) is _Held:
            return
        account = gauge.account
        gauge.size = 0
        gauge.hold(account, size)
        queue[-1] = _Held(queue[-1], gauge, account, size)

    def __len__(self) -> int:
        return 0 if self._queue is None else len(self._queue)

    def messages(self) -> list[Any]:
        """A copy of the queued messages, oldest first (for inspection and tests)."""
        if self._queue is None:
            return []
        return [m.msg if type(m) is _Held else m for m in self._queue]

    def take(self, match: Match = None) -> tuple[bool, Any]:
        """Remove and return the first matching message without waiting: (found, msg)."""
        return self._scan(as_predicate(match), 0)

    def clear(self) -> None:
        queue, self._queue = self._queue, None
        for msg in queue or ():
            if type(msg) is _Held:
                msg.release()

    def _scan(self, predicate: Callable[[Any], bool] | None, start: int) -> tuple[bool, Any]:
        queue = self._queue
        if queue is None:
            return False, None
        if predicate is None:
            if len(queue) > start:
                if start == 0:
                    msg = queue.popleft()
                else:
                    msg = queue[start]
                    del queue[start]
                return True, msg.release() if type(msg) is _Held else msg
            return False, None
        for index in range(start, len(queue)):
            msg = queue[index]
            held = type(msg) is _Held
            if predicate(msg.msg if held else msg):
                del queue[index]
                return True, msg.release() if held else msg
        return False, None

    def receive(self, match: Match = None, timeout: float | None = None) -> Awaitable[Any]:
        """Wait for the first message matching `match`; `ReceiveTimeout` after `timeout` s.

        A plain function returning an awaitable: when a message is already
        queued no coroutine is created at all.
        """
        if match is None:  # the common case, kept short
            queue = self._queue
            if queue:
                msg = queue.popleft()
                if type(msg) is _Held:  # _Held.release, inlined
                    size = msg.size
                    msg.size = 0
                    msg.account.held -= size
                    gauge = msg.gauge
                    gauge.held -= size
                    if gauge.over and gauge.held <= gauge.low:
                        gauge.release(msg.account, 0)  # crossing back under: tell the links
                    msg = msg.msg
                return _Ready(msg)
            predicate = None
        else:
            predicate = as_predicate(match)
            found, msg = self._scan(predicate, 0)
            if found:
                return _Ready(msg)
        if timeout is not None and timeout <= 0:
            raise ReceiveTimeout(f"no matching message (timeout={timeout})")
        if self._waiter is not None and not self._waiter.done():
            raise RuntimeError("two coroutines are receiving from one mailbox at once")
        return self._wait(predicate, timeout)

    async def _wait(self, predicate: Callable[[Any], bool] | None, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        timer = None if timeout is None else loop.call_later(timeout, _wake_timeout, self)
        queue = self._queue
        if queue is not None and not queue:
            self._queue = queue = None  # idle: give the empty deque back
        scanned = 0 if queue is None else len(queue)
        try:
            while True:
                fut: asyncio.Future[Any] = loop.create_future()
                self._waiter = fut
                if await fut is _TIMED_OUT:
                    raise ReceiveTimeout(f"no matching message within {timeout} s")
                found, msg = self._scan(predicate, scanned)
                if found:
                    return msg
                scanned = len(self)
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


class _Ready:
    """An already-completed awaitable (cheaper than a coroutine or a Future)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # pragma: no cover  # makes this a generator


def _wake_timeout(mailbox: Mailbox) -> None:
    waiter = mailbox._waiter
    if waiter is not None:
        mailbox._waiter = None
        _wake(waiter, _TIMED_OUT)

"""Refuse a coroutine function called from synchronous code, instead of a silent no-op.

``Echo.start()`` written in a plain script returns a coroutine that is never
awaited: nothing starts and the only sign is a ``RuntimeWarning`` at garbage
collection. `needs_loop` wraps an ``async def`` of the public API in a plain
function that checks for a running event loop first and, without one, raises
`RuntimeError` naming the blocking twin to use. With a loop it returns the
coroutine unchanged (one ``get_running_loop`` call, ~0.1 µs).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ["needs_loop", "require_loop"]

P = ParamSpec("P")
R = TypeVar("R")


def require_loop(what: str, twin: str) -> None:
    """Raise `RuntimeError` unless an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            f"{what} is a coroutine: await it inside a node's event loop, or from "
            f"synchronous code call {twin} (with a partisan.blocking.Node running)"
        ) from None


def needs_loop(
    twin: str, *, method: bool = False
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate an ``async def``: calls from sync code fail naming `twin` (``{cls}`` = class).

    `method`: the first argument is the class (a behaviour's classmethod), and
    the message names it.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                owner = getattr(args[0], "__name__", "?") if method and args else ""
                module = "partisan" if fn.__module__ == "partisan.actors.api" else fn.__module__
                what = f"{owner}.{fn.__name__}()" if method else f"{module}.{fn.__name__}()"
                require_loop(what, twin.format(cls=owner))
            return fn(*args, **kwargs)

        return guarded

    return decorate

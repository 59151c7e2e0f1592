"""Misuse of the module functions fails at the call site, in one line.

A bad `timeout=`, or Erlang's habit of ``rpc(node, fn, (a, b))``, raises here,
in the caller's frame, instead of as a confusing error later (or on another
node). Kept apart from `api` so that the public functions there read as what
they do.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["check_rpc_args", "check_timeout"]


def check_timeout(timeout: object, what: str) -> None:
    """Misuse fails here, in one line: `timeout` is seconds (int or float >= 0) or None."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what}: timeout must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"{what}: timeout must be >= 0, got {timeout!r}")


def check_rpc_args(node_name: str, fn: Any, args: tuple[Any, ...]) -> None:
    """Catch ``rpc(node, fn, (a, b))`` — Erlang's habit — here, not as a remote TypeError.

    When `fn`'s signature is known and refuses `args` but would take the one
    tuple given spread out, the caller meant ``rpc(node, fn, *args)``. Other
    mismatches are left to the remote call (a signature may be unknowable).
    """
    if not callable(fn):
        raise TypeError(f"rpc: fn must be callable, got {fn!r}")
    if len(args) != 1 or not isinstance(args[0], tuple):
        return
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args)
    except TypeError:
        try:
            signature.bind(*args[0])
        except TypeError:
            return
        name = getattr(fn, "__name__", repr(fn))
        raise TypeError(
            f"rpc({node_name!r}, {name}, {args[0]!r}) passes one tuple; arguments are "
            f"given one by one: rpc({node_name!r}, {name}, *{args[0]!r})"
        ) from None

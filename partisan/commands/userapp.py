"""The application's own code on a node's command line: ``--import MODULE`` and ``--run MODULE:FUNCTION``.

A node started by ``partisan node start`` (or by ``partisan cluster``) runs
no application code unless told to. ``--import`` makes the user's modules
importable *by reference* before the node serves, which is what remote
``spawn``/``rpc`` of their functions needs; ``--run`` calls one entry point
once the node is ready — the node's "main". Both are resolved before the node
binds, so a typo fails fast with one line instead of a node that serves
nothing useful.

The current directory is put on ``sys.path`` first (as ``python -m`` would),
so ``--import myapp`` finds ``./myapp.py`` also when ``partisan`` runs as an
installed script.

Error contract (the CLI's exit codes): a malformed ``MODULE:FUNCTION`` is a
usage error (`parse_entry_point` raises ValueError: exit 2); a module that
does not import or a missing function is an operational error
(`UserCodeError`: exit 1, one line naming the module and the error).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from partisan.errors import UserCodeError

__all__ = [
    "import_modules",
    "load_entry_point",
    "parse_entry_point",
    "start_entry_point",
]

logger = logging.getLogger(__name__)


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_entry_point(text: str) -> tuple[str, str]:
    """Split ``"pkg.module:function"`` into ``("pkg.module", "function")``.

    The function part may be dotted (``module:Class.method``). Raises
    ValueError with a message fit for the command line otherwise.
    """
    module, sep, function = text.partition(":")
    if not sep or not _dotted(module.strip()) or not _dotted(function.strip()):
        raise ValueError(
            f"invalid entry point {text!r}: expected MODULE:FUNCTION, e.g. 'myapp.main:run'"
        )
    return module.strip(), function.strip()


def _import(name: str) -> ModuleType:
    if not _dotted(name):
        raise UserCodeError(f"cannot import {name!r}: not a module name")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except Exception as exc:  # the user's module may raise anything at import time
        logger.debug("import of %s failed", name, exc_info=True)
        raise UserCodeError(f"cannot import {name!r}: {type(exc).__name__}: {exc}") from None


def import_modules(names: Sequence[str]) -> list[ModuleType]:
    """Import each module in order; the first failure raises `UserCodeError`."""
    return [_import(name) for name in names]


def load_entry_point(module: str, function: str) -> Callable[[], Any]:
    """Import `module` and return its attribute `function` (dotted), which must be callable."""
    target: Any = _import(module)
    for part in function.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UserCodeError(f"module {module!r} has no attribute {function!r}") from None
    if not callable(target):
        raise UserCodeError(f"{module}:{function} is not callable")
    return target


def start_entry_point(fn: Callable[[], Any], label: str) -> asyncio.Task[Any] | None:
    """Call ``fn()`` on the running loop; an awaitable result runs as a task.

    Never raises: an exception (from the call or the task) is logged with its
    traceback and the node keeps serving — its actors and peers do not depend
    on the entry point. Returns the task (None if ``fn`` was synchronous).
    """
    try:
        result = fn()
    except Exception:
        logger.exception("entry point %s failed", label)
        return None
    if not inspect.isawaitable(result):
        logger.info("entry point %s returned %.200r", label, result)
        return None
    task = asyncio.ensure_future(result)
    task.add_done_callback(lambda done: _report(done, label))
    return task


def _report(task: asyncio.Future[Any], label: str) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("entry point %s failed", label, exc_info=exc)
    else:
        logger.info("entry point %s finished", label)

"""Manage a running `Supervisor` from any actor (or the main pseudo-actor): OTP's supervisor API.

Each function is a `call` to the supervisor, so it may wait: ``async def``
with ``timeout=``. Operations that stop or start children default to 10 s
(a worker's default shutdown is 5 s); pass more for slower children. Errors
(unknown id, duplicate id, a child that fails to start) are raised here, at
the call site, as `SupervisorError` / `StartChildError`.
"""

from __future__ import annotations

from typing import Any

from partisan.actors import api
from partisan.actors.loop_guard import needs_loop
from partisan.actors.runtime import Dest
from partisan.identity import Pid
from partisan.supervision.child_spec import ChildInfo, ChildSpec
from partisan.supervision.supervisor import _Failed, _Request

__all__ = [
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "which_children",
]

_SLOW = 10.0


async def _call(sup: Dest, op: str, arg: Any, timeout: float | None) -> Any:
    value = await api.call(sup, _Request(op, arg), timeout=timeout)
    if isinstance(value, _Failed):
        raise value.error
    return value


@needs_loop("partisan.blocking.start_child(...)")
async def start_child(
    sup: Dest, spec_or_args: ChildSpec | tuple[Any, ...] | list[Any], *, timeout: float = _SLOW
) -> Pid:
    """Add and start a child; for SIMPLE_ONE_FOR_ONE pass the extra start args instead."""
    pid: Pid = await _call(sup, "start_child", spec_or_args, timeout)
    return pid


@needs_loop("partisan.blocking.terminate_child(...)")
async def terminate_child(sup: Dest, child: Any, *, timeout: float = _SLOW) -> None:
    """Stop child `child` (its id, or its Pid under SIMPLE_ONE_FOR_ONE); its spec stays.

    A temporary child, or any SIMPLE_ONE_FOR_ONE child, is forgotten.
    """
    await _call(sup, "terminate_child", child, timeout)


@needs_loop("partisan.blocking.restart_child(...)")
async def restart_child(sup: Dest, child_id: Any, *, timeout: float = _SLOW) -> Pid:
    """Start a terminated child again from its spec."""
    pid: Pid = await _call(sup, "restart_child", child_id, timeout)
    return pid


@needs_loop("partisan.blocking.delete_child(...)")
async def delete_child(sup: Dest, child_id: Any, *, timeout: float = 5.0) -> None:
    """Forget a terminated child's spec."""
    await _call(sup, "delete_child", child_id, timeout)


@needs_loop("partisan.blocking.which_children(...)")
async def which_children(sup: Dest, *, timeout: float = 5.0) -> list[ChildInfo]:
    """Every child in start order: id, pid (None when not running), type, restart, node."""
    children: list[ChildInfo] = await _call(sup, "which_children", None, timeout)
    return children


@needs_loop("partisan.blocking.count_children(...)")
async def count_children(sup: Dest, *, timeout: float = 5.0) -> dict[str, int]:
    """OTP's counts: ``specs``, ``active``, ``supervisors``, ``workers``."""
    counts: dict[str, int] = await _call(sup, "count_children", None, timeout)
    return counts

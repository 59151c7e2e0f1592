"""OTP supervisors (`Supervisor`, `ChildSpec`), and the supervisor of node OS processes.

Names are loaded lazily, so the CLI can use the process supervisor without
importing the actor runtime. The supervisor API functions (``start_child``,
``which_children``, ...) live in `partisan.supervision.api`.
"""

from __future__ import annotations

import importlib
import typing

_EXPORTS: dict[str, str] = {
    "Supervisor": "partisan.supervision.supervisor",
    "ChildSpec": "partisan.supervision.child_spec",
    "SupervisorSpec": "partisan.supervision.child_spec",
    "ChildInfo": "partisan.supervision.child_spec",
    "ProcessSupervisor": "partisan.supervision.processes",
    "ProcessSpec": "partisan.supervision.process_spec",
    "SupervisorError": "partisan.supervision.errors",
    "StartChildError": "partisan.supervision.errors",
    **{
        name: "partisan.supervision.policy"
        for name in (
            "PERMANENT",
            "TRANSIENT",
            "TEMPORARY",
            "BRUTAL_KILL",
            "INFINITY",
            "WORKER",
            "SUPERVISOR",
            "ONE_FOR_ONE",
            "ONE_FOR_ALL",
            "REST_FOR_ONE",
            "SIMPLE_ONE_FOR_ONE",
        )
    },
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> typing.Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'partisan.supervision' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

"""`ChildSpec` and `SupervisorSpec`: what an OTP supervisor runs, as frozen data.

``ChildSpec(id, start, args=(), restart=PERMANENT, shutdown=<default>,
type=<default>, node=None, name=None)``. `start` is anything `spawn`
accepts: an ``async def`` function, or an `Actor` / `GenServer` /
`StateMachine` / `Supervisor` subclass; the supervisor spawns it linked, with
`args`, on `node` (None: the supervisor's node), registered as `name`.
`type` defaults to `SUPERVISOR` when `start` is a Supervisor subclass, else
`WORKER`; `shutdown` defaults to 5 s for workers and `INFINITY` for
supervisors, as in OTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from partisan.actors.spawning import check_spawnable
from partisan.identity import Pid
from partisan.supervision.policy import (
    DEFAULT_INTENSITY,
    DEFAULT_PERIOD,
    DEFAULT_WORKER_SHUTDOWN,
    INFINITY,
    PERMANENT,
    ChildType,
    Restart,
    RestartIntensity,
    ShutdownValue,
    Strategy,
    check_shutdown,
)

__all__ = ["ChildInfo", "ChildSpec", "SupervisorSpec"]


def _default_type(start: Any) -> ChildType:
    """`SUPERVISOR` for a Supervisor subclass, else `WORKER`.

    The class says so itself (`Supervisor.child_spec_type`): the supervisor
    module imports this one for its specs, so this one cannot import it.
    """
    kind = getattr(start, "child_spec_type", None) if isinstance(start, type) else None
    return kind if isinstance(kind, ChildType) else ChildType.WORKER


@dataclass(frozen=True, slots=True, eq=False)
class ChildSpec:
    """One child of a supervisor (see the module docstring for the fields)."""

    id: Any
    start: Any
    args: tuple[Any, ...] = ()
    restart: Restart = PERMANENT
    shutdown: ShutdownValue | None = None
    type: ChildType | None = None
    node: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_spawnable(self.start)  # TypeError at the call site, as spawn would
        if not isinstance(self.restart, Restart):
            raise ValueError(
                f"restart: invalid value {self.restart!r}; expected PERMANENT, TRANSIENT or TEMPORARY"
            )
        object.__setattr__(self, "args", tuple(self.args))
        kind = self.type
        if kind is None:
            kind = _default_type(self.start)
        if not isinstance(kind, ChildType):
            raise ValueError(f"type: invalid value {kind!r}; expected WORKER or SUPERVISOR")
        object.__setattr__(self, "type", kind)
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = INFINITY if kind is ChildType.SUPERVISOR else DEFAULT_WORKER_SHUTDOWN
        object.__setattr__(self, "shutdown", check_shutdown(shutdown))

    @property
    def child_type(self) -> ChildType:
        """`type`, resolved (never None after construction)."""
        assert self.type is not None
        return self.type

    @property
    def shutdown_value(self) -> ShutdownValue:
        """`shutdown`, resolved (never None after construction)."""
        assert self.shutdown is not None
        return self.shutdown


@dataclass(frozen=True, slots=True, eq=False)
class SupervisorSpec:
    """A whole supervisor: its children (in start order) and its flags."""

    children: tuple[ChildSpec, ...] = ()
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = DEFAULT_INTENSITY
    period: float = DEFAULT_PERIOD

    def __init__(
        self,
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: int = DEFAULT_INTENSITY,
        period: float = DEFAULT_PERIOD,
    ) -> None:
        object.__setattr__(self, "children", tuple(children))
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "intensity", intensity)
        object.__setattr__(self, "period", period)
        if not isinstance(strategy, Strategy):
            raise ValueError(
                f"strategy: invalid value {strategy!r}; expected ONE_FOR_ONE, ONE_FOR_ALL, "
                "REST_FOR_ONE or SIMPLE_ONE_FOR_ONE"
            )
        RestartIntensity(intensity, period)  # validates both, naming the field
        ids = [c.id for c in self.children]
        for child in self.children:
            if not isinstance(child, ChildSpec):
                raise ValueError(f"children: {child!r} is not a ChildSpec")
        if len(set(map(repr, ids))) != len(ids):
            raise ValueError(f"children: duplicate child ids in {ids!r}")
        if strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(self.children) != 1:
            raise ValueError(
                "children: SIMPLE_ONE_FOR_ONE needs exactly one child spec (the template)"
            )


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of `which_children`: pid is None while it is not running."""

    id: Any
    pid: Pid | None
    type: ChildType
    restart: Restart
    node: str | None = None
    restarting: bool = False
    args: tuple[Any, ...] = field(default=(), repr=False)

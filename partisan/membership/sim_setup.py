"""What a simulation is built from: manager and broadcast-layer factories, and the GC pause.

Split from `partisan.membership.sim_engine` (the hot loop) because none of
this runs per event: it resolves the names `Simulator(manager=...,
broadcast=...)` takes once, and `gc_paused` wraps whole runs.
"""

from __future__ import annotations

# Imports inside functions are lazy on purpose: a run loads only the manager and broadcast
# layer it simulates.
import contextlib
import functools
import gc
import random
from collections.abc import Callable, Iterator

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.broadcast import BroadcastLayer
from partisan.membership.types import Manager

__all__ = ["LayerFactory", "ManagerFactory", "gc_paused", "resolve_layer", "resolve_manager"]

ManagerFactory = Callable[[NodeSpec, Config, random.Random], Manager]
LayerFactory = Callable[[NodeSpec, Config, random.Random], BroadcastLayer]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block (restored after).

    Nothing the simulator allocates is cyclic (reference counting frees it
    all), while each full collection walks every view of every node: ~7% of
    the CPU of a round at n = 6,000, and 17% of the joins at n = 30,000 (the
    node count grows, so full collections keep coming).
    """
    collect = gc.isenabled()
    if collect:
        gc.disable()
    try:
        yield
    finally:
        if collect:
            gc.enable()


def resolve_manager(manager: str | ManagerFactory) -> ManagerFactory:
    """A factory for `manager`: a registered name (validated now) or a factory as is."""
    if not isinstance(manager, str):
        return manager
    from partisan.membership.registry import MANAGER_CLASSES, create_manager

    if manager not in MANAGER_CLASSES:
        create_manager(manager, NodeSpec("x", "sim", 1), Config(), random.Random(0))  # raises
    # a partial of a module-level function pickles, so a built Simulator can be snapshotted
    return functools.partial(create_manager, manager)


def resolve_layer(broadcast: str | LayerFactory | None) -> LayerFactory | None:
    """A factory for `broadcast`: ``"flood"``, ``"plumtree"``, a factory, or None (none)."""
    if broadcast is None or not isinstance(broadcast, str):
        return broadcast
    if broadcast == "flood":
        from partisan.membership.flood import Flood

        return Flood
    if broadcast == "plumtree":
        from partisan.membership.plumtree import Plumtree

        return Plumtree
    raise ValueError(f"unknown broadcast {broadcast!r}: expected 'flood' or 'plumtree'")

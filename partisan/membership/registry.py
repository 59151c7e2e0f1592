"""Build a membership manager by its CLI name, importing only that manager's module."""

from __future__ import annotations

import importlib
import random

from partisan.config import Config
from partisan.errors import ConfigError
from partisan.identity import NodeSpec
from partisan.membership.types import Manager

__all__ = ["MANAGER_CLASSES", "create_manager"]

#: CLI name -> "module:Class". Imported lazily: `partisan sim --manager
#: hyparview` should not pay for the other managers.
MANAGER_CLASSES: dict[str, str] = {
    "full-mesh": "partisan.membership.full_mesh:FullMesh",
    "hyparview": "partisan.membership.hyparview:HyParView",
    "client-server": "partisan.membership.client_server:ClientServer",
    "static": "partisan.membership.static:Static",
}


def create_manager(name: str, self_spec: NodeSpec, config: Config, rng: random.Random) -> Manager:
    """Return a new manager `name` for the node `self_spec`.

    Raises `ConfigError` for an unknown name. Every manager takes
    ``(self_spec, config, rng)``; randomness comes only from `rng`.
    """
    try:
        target = MANAGER_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"manager: invalid value {name!r}; expected one of {', '.join(MANAGER_CLASSES)}"
        ) from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    manager: Manager = cls(self_spec, config, rng)
    return manager

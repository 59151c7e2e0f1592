"""Partisan for Python: membership, distribution layer and actors over ZeroMQ.

Public names are re-exported lazily (PEP 562) so that ``import partisan`` and
``partisan sim`` never pay for importing zmq or dill until they are used.
"""

from __future__ import annotations

import importlib
import typing

__version__ = "0.1.0"

# name -> module that defines it. Each subsystem adds its public names here.
_EXPORTS: dict[str, str] = {
    # identity
    "NodeSpec": "partisan.identity",
    "Pid": "partisan.identity",
    # configuration
    "Config": "partisan.config",
    "ChannelSpec": "partisan.config",
    # errors
    "PartisanError": "partisan.errors",
    "CallTimeout": "partisan.errors",
    "CallExit": "partisan.errors",
    "NotConnected": "partisan.errors",
    "Overloaded": "partisan.errors",
    "DeliveryError": "partisan.errors",
    "JoinRefused": "partisan.errors",
    "SpawnError": "partisan.errors",
    "ReceiveTimeout": "partisan.errors",
    "ConfigError": "partisan.errors",
    "ProtocolError": "partisan.errors",
    "EncodeError": "partisan.errors",
    "BindError": "partisan.errors",
    "AlreadyStarted": "partisan.errors",
    # node and actors
    "Node": "partisan.node",
    "run": "partisan.node",
    "blocking": "partisan.blocking",
    "Actor": "partisan.actors.actor",
    "GenServer": "partisan.actors.gen_server",
    "NoReply": "partisan.actors.signals",
    "Down": "partisan.actors.signals",
    "Exit": "partisan.actors.signals",
    "NodeUp": "partisan.actors.signals",
    "NodeDown": "partisan.actors.signals",
    "Crashed": "partisan.actors.signals",
    "From": "partisan.actors.signals",
    "Ref": "partisan.actors.signals",
    "spawn": "partisan.actors.api",
    "spawn_link": "partisan.actors.api",
    "send": "partisan.actors.api",
    "cast": "partisan.actors.api",
    "broadcast": "partisan.actors.api",
    "call": "partisan.actors.api",
    "reply": "partisan.actors.api",
    "receive": "partisan.actors.api",
    "monitor": "partisan.actors.api",
    "demonitor": "partisan.actors.api",
    "link": "partisan.actors.api",
    "unlink": "partisan.actors.api",
    "exit": "partisan.actors.api",
    "trap_exit": "partisan.actors.api",
    "register": "partisan.actors.api",
    "unregister": "partisan.actors.api",
    "whereis": "partisan.actors.api",
    "self": "partisan.actors.api",
    "node": "partisan.actors.api",
    "nodes": "partisan.actors.api",
    "members": "partisan.actors.api",
    "monitor_node": "partisan.actors.api",
    "is_alive": "partisan.actors.api",
    "ping": "partisan.actors.api",
    "send_after": "partisan.actors.api",
    "cancel_timer": "partisan.actors.api",
    "rpc": "partisan.actors.api",
    # behaviours and supervision
    "StateMachine": "partisan.actors.state_machine",
    "Supervisor": "partisan.supervision.supervisor",
    "ChildSpec": "partisan.supervision.child_spec",
    "SupervisorSpec": "partisan.supervision.child_spec",
    "ProcessSupervisor": "partisan.supervision.processes",
    "ProcessSpec": "partisan.supervision.process_spec",
    "PERMANENT": "partisan.supervision.policy",
    "TRANSIENT": "partisan.supervision.policy",
    "TEMPORARY": "partisan.supervision.policy",
    "BRUTAL_KILL": "partisan.supervision.policy",
    "INFINITY": "partisan.supervision.policy",
    "WORKER": "partisan.supervision.policy",
    "SUPERVISOR": "partisan.supervision.policy",
    "ONE_FOR_ONE": "partisan.supervision.policy",
    "ONE_FOR_ALL": "partisan.supervision.policy",
    "REST_FOR_ONE": "partisan.supervision.policy",
    "SIMPLE_ONE_FOR_ONE": "partisan.supervision.policy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> typing.Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'partisan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Every public name resolves, and the actor API names of CONTRACT.md are all there."""

from __future__ import annotations

import importlib

import partisan

ACTOR_NAMES = [
    "Node",
    "Actor",
    "GenServer",
    "NoReply",
    "spawn",
    "spawn_link",
    "send",
    "cast",
    "broadcast",
    "call",
    "receive",
    "monitor",
    "demonitor",
    "link",
    "unlink",
    "exit",
    "register",
    "unregister",
    "whereis",
    "self",
    "node",
    "nodes",
    "members",
    "monitor_node",
    "is_alive",
    "ping",
    "send_after",
    "cancel_timer",
    "rpc",
    "run",
    "Down",
    "Exit",
    "NodeUp",
    "NodeDown",
    "Crashed",
    "blocking",
]


def test_every_name_in_all_imports() -> None:
    for name in partisan.__all__:
        assert getattr(partisan, name) is not None, name


def test_actor_api_names_are_exported() -> None:
    missing = [name for name in ACTOR_NAMES if name not in partisan.__all__]
    assert missing == []


def test_node_is_both_a_module_and_the_node_function() -> None:
    module = importlib.import_module("partisan.node")
    assert module.Node is partisan.Node
    assert callable(partisan.node)

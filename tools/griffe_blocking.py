"""Griffe extension: show `partisan.blocking`'s twins as the functions they are.

``call = _mirror(api.call)`` is an attribute to static analysis; at run time it
is a plain function with the signature and docstring of `partisan.call`. This
extension gives the API reference the run-time view: each twin becomes a
(synchronous) function with the original's parameters and docstring.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MIRROR = re.compile(r"^_mirror\((\w+)\.(\w+)\)$")


class BlockingTwins(griffe.Extension):
    """Replace each ``X = _mirror(module.X)`` attribute with a documented function."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "partisan":
            return
        blocking = pkg.get_member("blocking")
        for name, member in list(blocking.members.items()):
            if member.is_alias or not member.is_attribute:
                continue
            match = _MIRROR.match(str(member.value))
            if match is None:
                continue
            source = blocking.get_member(match.group(1))  # an imported module, e.g. `api`
            source_path = source.target_path if source.is_alias else source.path
            original = pkg.modules_collection.get_member(source_path).get_member(match.group(2))
            if original.is_alias:
                original = original.final_target
            doc = original.docstring.value if original.docstring else ""
            twin = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=original.parameters,
                returns=None if "async" in original.labels else original.returns,
                docstring=griffe.Docstring(
                    f"Blocking `{_public(original.path)}`: run it on the node's loop and wait.\n\n{doc}",
                    parent=None,
                ),
            )
            blocking.set_member(name, twin)
            twin.docstring.parent = twin  # type: ignore[union-attr]  # set just above


def _public(path: str) -> str:
    """`partisan.call` for a module function, else the defining path."""
    module, _, name = path.rpartition(".")
    return f"partisan.{name}" if module == "partisan.actors.api" else path

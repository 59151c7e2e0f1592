"""The import graph of `partisan/`: no cycles, and lower layers never import higher ones.

Imports inside functions count: moving an import into a function hides a
cycle from Python's import machinery, not from the design (docs/design.md,
"Layers"). Imports under ``if TYPE_CHECKING:`` do not count: they never run.
The lazy re-exports of ``partisan/__init__.py`` (``importlib`` by name) are
not import statements and are not followed either. Third-party imports are
not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import partisan

ROOT = Path(partisan.__file__).parent

#: Lowest first; a module may import its own layer and the ones before it.
#: A module is placed by the longest matching name (package or module).
LAYERS: list[tuple[str, ...]] = [
    # Config's channel specs and its loading are modules of their own (config imports them).
    (
        "partisan.identity",
        "partisan.errors",
        "partisan.config",
        "partisan.config_channels",
        "partisan.config_loading",
    ),
    ("partisan.membership",),
    ("partisan.transport",),
    # Fault injection wraps the transport; acked/causal channels sit above it and are
    # driven by the Distribution (actors), so they import nothing of the runtime.
    ("partisan.delivery",),
    ("partisan.actors",),
    # The peer service and what only it drives on the live overlay.
    ("partisan.peer_service", "partisan.eventlog", "partisan.broadcast_service", "partisan.relay"),
    ("partisan.supervision",),
    ("partisan.node",),
    # The package itself re-exports the public API (node, blocking) lazily.
    ("partisan.blocking", "partisan"),
    ("partisan.commands", "partisan.cli", "partisan.__main__", "partisan.cluster"),
    ("partisan.testing",),
]

Edge = tuple[str, str, str]  # importer, imported, where ("path:line")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ["partisan", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions, not under TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _edges(source: str, module: str, is_package: bool, modules: set[str]) -> Iterator[Edge]:
    package = module if is_package else module.rpartition(".")[0]
    for node in _imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the submodule; `from mod import name` the module.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a name inside a module
                name = name.rpartition(".")[0]
            if name.startswith("partisan") and name != module:
                yield module, name, str(node.lineno)


def _graph() -> list[Edge]:
    modules = _modules()
    edges = []
    for module, path in modules.items():
        for importer, imported, where in _edges(
            path.read_text(), module, path.name == "__init__.py", set(modules)
        ):
            edges.append((importer, imported, f"{path.relative_to(ROOT.parent)}:{where}"))
    return edges


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (name length, layer)
    for number, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[0]
            ):
                best = (len(name), number)
    return None if best is None else best[1]


@pytest.mark.timeout(30)
def test_there_is_no_import_cycle_inside_partisan() -> None:
    edges = _graph()
    problems = []
    for component in _cycles(edges):
        members = set(component)
        lines = [
            f"  {a} -> {b} ({where})" for a, b, where in edges if a in members and b in members
        ]
        problems.append("cycle among " + ", ".join(component) + ":\n" + "\n".join(lines))
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(30)
def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    unplaced = sorted(m for m in _modules() if _layer(m) is None)
    assert not unplaced, f"place these in LAYERS (and docs/design.md): {unplaced}"
    violations = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)}) at {where}"
        for a, b, where in _graph()
        if (_layer(a) or 0) < (_layer(b) or 0)
    ]
    assert not violations, "\n".join(violations)


@pytest.mark.timeout(30)
def test_the_scan_counts_imports_in_functions_but_not_type_only_ones() -> None:
    source = """
from typing import TYPE_CHECKING
import partisan.errors
if TYPE_CHECKING:
    from partisan.node import Node
def later():
    from partisan.actors import api
class K:
    def method(self):
        import partisan.transport.links
"""
    modules = {"partisan.x", "partisan.errors", "partisan.node", "partisan.actors.api"}
    modules |= {"partisan.actors", "partisan.transport.links"}
    found = {b for _, b, _ in _edges(source, "partisan.x", False, modules)}
    assert found == {"partisan.errors", "partisan.actors.api", "partisan.transport.links"}
    assert _cycles([("a", "b", ""), ("b", "c", ""), ("c", "a", ""), ("c", "d", "")]) == [
        ["a", "b", "c"]
    ]

"""Every public name has a docstring and an API reference entry; every Config field a comment."""

from __future__ import annotations

from pathlib import Path

import docs_api  # tools/, put on sys.path by conftest.py
import pytest

griffe = pytest.importorskip("griffe")


@pytest.fixture(scope="module")
def package() -> object:
    extension = griffe.load_extensions(str(docs_api.ROOT / "tools" / "griffe_blocking.py"))
    loader = griffe.GriffeLoader(extensions=extension, search_paths=[str(docs_api.ROOT)])
    package = loader.load("partisan")
    loader.resolve_aliases(implicit=False, external=False)
    return package


@pytest.mark.timeout(60)
def test_every_public_name_has_a_docstring(package: object) -> None:
    missing = []
    for public in docs_api.public_names():
        obj = package.modules_collection.get_member(public.identifier)  # type: ignore[attr-defined]
        if obj.is_alias:
            obj = obj.final_target
        if not (obj.docstring and obj.docstring.value.strip()):
            missing.append(f"{public.namespace}.{public.name} ({public.identifier})")
    assert not missing, "public names without a docstring: " + ", ".join(missing)


@pytest.mark.timeout(30)
def test_every_public_name_has_a_reference_entry() -> None:
    missing = [f"{p.namespace}.{p.name} -> ::: {p.identifier}" for p in docs_api.missing_entries()]
    assert not missing, "no API reference entry for: " + ", ".join(missing)


@pytest.mark.timeout(30)
def test_every_config_field_is_documented() -> None:
    fields = docs_api.config_fields()
    assert {f.name for f in fields if not f.section} >= {"name", "host", "advertise_host"}
    undocumented = [f.toml for f in fields if not f.doc]
    assert not undocumented, "add a '#:' comment in partisan/config.py for: " + ", ".join(
        undocumented
    )


def test_a_reference_entry_is_found(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "x.md").write_text("# X\n\n::: partisan.node.Node\n")
    assert docs_api.reference_entries(tmp_path) == {"partisan.node.Node": "reference/x.md"}

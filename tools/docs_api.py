"""What the documentation site is generated from: public names and `Config` fields.

Used by the MkDocs hook (`tools/mkdocs_hooks.py`) and by the docs tests
(`tests/docs/`), so the site and its checks read the same lists:

- `public_names()`: every name in the ``__all__`` of `partisan`,
  `partisan.blocking` and `partisan.testing`, with the dotted path where it is
  defined (the identifier its API reference entry uses).
- `reference_entries(docs_dir)`: the ``::: identifier`` entries of the API
  reference pages, and the page each one is on.
- `config_fields()` / `config_reference_markdown()`: every `Config` field
  (and its `[hyparview]` / `[plumtree]` sections) with its type, default,
  TOML and environment forms and the ``#:`` comment above it in
  `partisan/config.py`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMESPACES = ("partisan", "partisan.blocking", "partisan.testing")
_ENTRY = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PublicName:
    """One public name: where users import it from and where it is defined."""

    namespace: str
    name: str
    identifier: str


def public_names() -> list[PublicName]:
    """Every public name of the three documented namespaces, in ``__all__`` order."""
    out: list[PublicName] = []
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            out.append(PublicName(namespace, name, _identifier(module, namespace, name)))
    return out


def _identifier(module: typing.Any, namespace: str, name: str) -> str:
    if namespace == "partisan":
        defined_in = module._EXPORTS[name]
        if defined_in == f"partisan.{name}":  # a submodule exported by name (`blocking`)
            return defined_in
        return f"{defined_in}.{name}"
    if namespace == "partisan.blocking":
        return f"{namespace}.{name}"  # the twins are defined in `partisan.blocking` itself
    value = getattr(module, name)
    return f"{value.__module__}.{name}"


def reference_entries(docs_dir: Path = ROOT / "docs") -> dict[str, str]:
    """Map each ``::: identifier`` of ``docs/reference/*.md`` to its page (relative to docs)."""
    entries: dict[str, str] = {}
    for page in sorted((docs_dir / "reference").glob("*.md")):
        for identifier in _ENTRY.findall(page.read_text()):
            entries.setdefault(identifier, page.relative_to(docs_dir).as_posix())
    return entries


def missing_entries(docs_dir: Path = ROOT / "docs") -> list[PublicName]:
    """Public names whose identifier has no API reference entry."""
    entries = reference_entries(docs_dir)
    return [p for p in public_names() if p.identifier not in entries]


def api_index_markdown(docs_dir: Path = ROOT / "docs") -> str:
    """The API reference index: every public name, linked to its entry."""
    entries = reference_entries(docs_dir)
    lines: list[str] = []
    for namespace in NAMESPACES:
        lines += [f"## `{namespace}`", "", "| name | documented on |", "|---|---|"]
        for p in (p for p in public_names() if p.namespace == namespace):
            page = entries.get(p.identifier)
            where = page.removeprefix("reference/").removesuffix(".md") if page else "missing"
            # An autorefs link: the build fails (strict) if the entry does not exist.
            lines.append(f"| [`{namespace}.{p.name}`][{p.identifier}] | {where} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One `Config` field as the reference shows it."""

    section: str  # "" for top-level fields, else "hyparview" / "plumtree"
    name: str
    type: str
    default: str
    doc: str

    @property
    def toml(self) -> str:
        """How the field is written in a TOML file."""
        return f"[{self.section}] {self.name}" if self.section else self.name

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        path = f"{self.section}__{self.name}" if self.section else self.name
        return "PARTISAN_" + path.upper()


def config_fields() -> list[ConfigField]:
    """Every field of `Config` and of its sections, with the comment documenting it."""
    from partisan import config

    source = (ROOT / "partisan" / "config.py").read_text().splitlines()
    out: list[ConfigField] = []
    for cls, section in (
        (config.Config, ""),
        (config.HyParViewConfig, "hyparview"),
        (config.PlumtreeConfig, "plumtree"),
    ):
        comments = _field_comments(source, cls.__name__)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in config._SECTIONS and cls is config.Config:
                default = f"see `[{f.name}]` below"
            elif f.default is not dataclasses.MISSING:
                default = _show(f.default)
            else:
                default = _show(f.default_factory())  # type: ignore[misc]  # set when no default
            out.append(
                ConfigField(
                    section, f.name, _type_name(hints[f.name]), default, comments.get(f.name, "")
                )
            )
    return out


def _field_comments(source: list[str], class_name: str) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of `class_name`."""
    comments: dict[str, str] = {}
    inside = False
    pending: list[str] = []
    for line in source:
        if line.startswith("class "):
            inside = line.startswith(f"class {class_name}(") or line.startswith(
                f"class {class_name}:"
            )
            pending = []
            continue
        if not inside:
            continue
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"^    (\w+): ", line)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def _type_name(hint: typing.Any) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    text = text.replace("partisan.config_channels.", "")  # ChannelSpec's own module
    return text.replace("partisan.config.", "").replace("typing.", "")


def _show(value: typing.Any) -> str:
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`" if value else "empty"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, int) and value >= 1024 * 1024 and value % (1024 * 1024) == 0:
        return f"`{value}` ({value // (1024 * 1024)} MiB)"
    return f"`{value}`"


def config_reference_markdown() -> str:
    """A table per section: field, type, default, TOML and environment forms, meaning."""
    lines: list[str] = []
    fields = config_fields()
    for section in ("", "hyparview", "plumtree"):
        title = f"`[{section}]` table" if section else "Top-level fields"
        lines += [
            f"## {title}",
            "",
            "| field | type | default | environment | meaning |",
            "|---|---|---|---|---|",
        ]
        for f in (f for f in fields if f.section == section):
            doc = f.doc.replace("|", r"\|")
            lines.append(f"| `{f.toml}` | `{f.type}` | {f.default} | `{f.env}` | {doc} |")
        lines.append("")
    return "\n".join(lines)

"""How a `Config` is loaded: reading the sources, coercing their values, merging them.

The sources are a TOML file, ``PARTISAN_*`` environment variables and
keywords; each gives text (or TOML values, or Python values) that is checked
against the dataclass fields (an unknown option is an error naming the known
ones) and coerced to the field's type (`_coerce`: booleans, numbers, strings,
channel specs, string lists). The layers are merged, nested sections key by
key, and the result built into the dataclasses, whose own checks then run.
`partisan.config` holds the dataclasses and their validation and calls this;
it passes its nested sections in, so this module never imports `Config`.
`_bad` is the one "invalid value; expected" message both use.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from partisan.config_channels import ChannelSpec, parse_channels
from partisan.errors import ConfigError

__all__ = ["ENV_PREFIX"]

ENV_PREFIX = "PARTISAN_"

T = TypeVar("T")


def _bad(field_name: str, value: object, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{field_name}: invalid value {value!r}; expected {allowed}")


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here, not at the top: most nodes never read a file (~0.5 MB of RSS each)

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


#: PARTISAN_* variables that are not config fields: the config file's path, and the
#: switch partisan/delivery/faults.py reads at import (benchmarks only).
_NOT_FIELDS = frozenset({ENV_PREFIX + "CONFIG", ENV_PREFIX + "FAULTS"})


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``PARTISAN_FIELD`` and ``PARTISAN_SECTION__FIELD`` variables."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in _NOT_FIELDS:
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if len(path) == 1:
            out[path[0]] = value
        elif len(path) == 2:
            out.setdefault(path[0], {})
            if isinstance(out[path[0]], dict):
                out[path[0]][path[1]] = value
        else:
            raise ConfigError(f"environment variable {key}: too deeply nested (one '__' at most)")
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce_section(
    cls: type,
    raw: Mapping[str, Any],
    source: str,
    prefix: str,
    sections: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """Check names and coerce values of one section against `cls`'s fields.

    `sections` maps the fields of `cls` that are nested sections (TOML tables)
    to their dataclass; `Config` passes its own, a section none.
    """
    sections = sections or {}
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in names:
            raise ConfigError(
                f"{source}: unknown option {prefix + key!r}; known options: {', '.join(sorted(names))}"
            )
        if name in sections:
            if isinstance(value, sections[name]):
                value = _as_dict(value)
            if not isinstance(value, Mapping):
                _bad(prefix + name, value, f"a table of {name} options")
            out[name] = _coerce_section(sections[name], value, source, f"{name}.")
        else:
            out[name] = _coerce(prefix + name, hints[name], value)
    return out


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """Turn a TOML, environment or keyword value into the field's type."""
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        _bad(name, value, "a boolean (true/false, 1/0, yes/no, on/off)")
    if hint is int:
        return _number(name, value, int, "an integer")
    if hint is float:
        return float(_number(name, value, float, "a number of seconds"))
    if hint is str:
        if not isinstance(value, str):
            _bad(name, value, "a string")
        return value
    if hint == tuple[ChannelSpec, ...]:
        if isinstance(value, str):
            return parse_channels(value, field_name=name)
        if isinstance(value, (list, tuple)):
            return tuple(
                v if isinstance(v, ChannelSpec) else parse_channels(str(v), field_name=name)[0]
                for v in value
            )
        _bad(name, value, "channels like 'data:4,gossip:1:monotonic'")
    if hint == tuple[str, ...]:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        _bad(name, value, "a list of strings (or a comma-separated string)")
    raise AssertionError(f"no coercion for {name}: {hint!r}")  # a new field type needs a rule here


def _number(name: str, value: Any, kind: Callable[[Any], Any], what: str) -> Any:
    if isinstance(value, bool):
        _bad(name, value, what)
    if isinstance(value, (int, float)) and not (kind is int and isinstance(value, float)):
        return value
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    _bad(name, value, what)


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        elif isinstance(value, dict):
            into[key] = dict(value)
        else:
            into[key] = value


def _build(cls: type[T], merged: Mapping[str, Any], sections: Mapping[str, type]) -> T:
    """``cls(**merged)``, each nested section's dict first built into its dataclass."""
    values = dict(merged)
    for name, section in sections.items():
        if name in values:
            sub = values[name]
            values[name] = section(**sub) if isinstance(sub, Mapping) else sub
    return cls(**values)

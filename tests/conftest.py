"""Shared pytest configuration: tiers are marked by directory."""

from __future__ import annotations

import pathlib

import pytest

_TIERS = {"integration": pytest.mark.integration, "sim": pytest.mark.sim}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = pathlib.Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(_TIERS[tier])

"""Shared pytest configuration: tiers are marked by directory."""

from __future__ import annotations

import os
import pathlib

import pytest

# tests/slow takes minutes (128 node processes): `make test-slow` runs it.
collect_ignore_glob = [] if os.environ.get("RUN_SLOW_TESTS") else ["slow/*"]

_TIERS = {"integration": pytest.mark.integration, "sim": pytest.mark.sim}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = pathlib.Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(_TIERS[tier])

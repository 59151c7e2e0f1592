"""Shared pytest configuration: tiers are marked by directory."""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

# Property tests: `make test` runs the same examples every time (derandomized,
# no example database), so a red run is reproducible and CI never flakes on a
# newly found example; `make test-props` sets PROPS_SCALE for a long
# randomized run with that many times the examples (the test files scale their
# max_examples and timeouts by it), and prints a blob to replay any failure.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("derandomized", derandomize=True, database=None, **_COMMON)
settings.register_profile("randomized", derandomize=False, print_blob=True, **_COMMON)
settings.load_profile("randomized" if int(os.environ.get("PROPS_SCALE") or 0) else "derandomized")

# tests/slow takes minutes (128 node processes): `make test-slow` runs it.
collect_ignore_glob = [] if os.environ.get("RUN_SLOW_TESTS") else ["slow/*"]

_TIERS = {"integration": pytest.mark.integration, "sim": pytest.mark.sim}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = pathlib.Path(str(item.fspath)).parent.name
        if tier in _TIERS:
            item.add_marker(_TIERS[tier])

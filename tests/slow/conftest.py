"""Slow tier (``make test-slow``): the plugin's fixtures, as in the integration tier."""

from __future__ import annotations

from partisan.testing.plugin import key_dir

__all__ = ["key_dir"]

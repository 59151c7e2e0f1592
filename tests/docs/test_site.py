"""`mkdocs build --strict` passes, and the built API index names every public name."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import docs_api  # tools/, put on sys.path by conftest.py
import pytest

pytest.importorskip("mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=docs_api.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


@pytest.mark.timeout(150)
def test_the_api_index_links_every_public_name_to_its_entry(site: Path) -> None:
    index = (site / "reference" / "index.html").read_text()
    for public in docs_api.public_names():
        shown = f"{public.namespace}.{public.name}"
        link = re.search(
            r'<a[^>]*href="(?P<href>[^"]*)"[^>]*>\s*<code>'
            + re.escape(html.escape(shown))
            + "</code>",
            index,
        )
        assert link, f"{shown} is not in the built API index"
        page, _, anchor = html.unescape(link.group("href")).partition("#")
        assert anchor == public.identifier, f"{shown} links to {anchor!r}"
        target = (
            (site / "reference" / page / "index.html")
            if page
            else site / "reference" / "index.html"
        )
        assert f'id="{anchor}"' in target.read_text(), f"{shown}: no entry #{anchor} in {target}"


@pytest.mark.timeout(150)
def test_the_config_reference_lists_every_field(site: Path) -> None:
    text = (site / "reference" / "config-fields" / "index.html").read_text()
    for field in docs_api.config_fields():
        assert f"<code>{field.env}</code>" in text, field.env


@pytest.mark.timeout(150)
def test_the_site_points_nowhere_outside_the_project(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        for needle in ("../shared", "CONTRACT.md", "DESIGN.md"):
            assert needle not in text, f"{page.relative_to(site)} mentions {needle}"

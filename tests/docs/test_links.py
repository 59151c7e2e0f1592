"""The docs stand on their own: no link leaves the repository, nothing points at the team's notes."""

from __future__ import annotations

import re

import pytest

from tests.docs.blocks import ROOT, pages

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)|href=\"(?P<href>[^\"]+)\"")
#: Names of files that are the team's, not the project's.
_OUTSIDE = ("../shared", "shared/CONTRACT", "shared/DESIGN", "CONTRACT.md", "DESIGN.md", "STYLE.md")


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


@pytest.mark.timeout(30)
def test_relative_links_stay_in_the_repository_and_exist() -> None:
    for page in pages():
        for match in _LINK.finditer(_without_code(page.read_text())):
            target = match.group("target") or match.group("href")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # absolute URLs and in-page anchors
            path = (page.parent / target.split("#", 1)[0]).resolve()
            where = f"{page.relative_to(ROOT)}: {target}"
            assert path.is_relative_to(ROOT), f"{where} leaves the repository"
            assert path.exists(), f"{where} does not exist"


@pytest.mark.timeout(30)
def test_no_reference_to_files_outside_the_project() -> None:
    for page in pages():
        text = page.read_text()
        for needle in _OUTSIDE:
            assert needle not in text, f"{page.relative_to(ROOT)} mentions {needle!r}"

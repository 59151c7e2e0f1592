"""MkDocs hooks: fill the generated parts of the site (config fields, API index).

A page holding ``<!-- generated: config-fields -->`` gets the table of every
`Config` field; ``<!-- generated: api-index -->`` gets the index of every
public name. A public name without an API reference entry, or a config field
without a ``#:`` comment, is a warning, so ``mkdocs build --strict`` fails.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_api  # found through the path set just above

log = logging.getLogger("mkdocs.plugins.partisan")

MARKERS = {
    "<!-- generated: config-fields -->": docs_api.config_reference_markdown,
    "<!-- generated: api-index -->": docs_api.api_index_markdown,
}


def on_pre_build(config: Any) -> None:
    for public in docs_api.missing_entries(Path(config["docs_dir"])):
        log.warning(
            "public name %s.%s has no API reference entry (add '::: %s' to a docs/reference page)",
            public.namespace,
            public.name,
            public.identifier,
        )
    for field in docs_api.config_fields():
        if not field.doc:
            log.warning("Config field %s has no '#:' comment in partisan/config.py", field.toml)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, generate in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown

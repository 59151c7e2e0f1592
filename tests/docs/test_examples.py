"""Every python and sh block of README.md and docs/ runs (examples that cannot rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, PageRun, blocks, pages

#: Blocks that are shown but not run, and why. The reason is the block's own
#: visible ``# no-run:`` first line; adding one means adding it here too.
NO_RUN = {
    ("README.md", "make demo and make test take minutes; make test runs this check itself"),
    ("docs/broadcast.md", "a fragment: `msg`, `request` and node n7 stand for your own cluster"),
    ("docs/delivery.md", "a fragment of a test; `cluster` stands for your own Cluster"),
    (
        "docs/delivery.md",
        "a fragment; msg_id, key, sender and paths stand for your application's",
    ),
    ("docs/design.md", "an interface sketch, not a program"),
    ("docs/reliability.md", "needs root, ip and iptables; about 11 minutes"),
    ("docs/reliability.md", "needs root, ip and iptables; the soak runs five minutes"),
    (
        "docs/testing.md",
        "needs root and network namespaces; tests/chaos/test_hosts.py runs the real thing",
    ),
    ("docs/simulator.md", "a summary of the Simulator's methods, not a program"),
    (
        "docs/transport.md",
        "a sketch of the wire API; `incarnation`, `seq`, `frame` stand for real values",
    ),
    (
        "docs/transport.md",
        "a sketch of the codec API; `sock` and `received` stand for real sockets and frames",
    ),
    (
        "docs/supervision.md",
        "a fragment: `Db` and `Web` stand for your GenServers, and it awaits outside a coroutine",
    ),
    (
        "docs/supervision.md",
        "runs `partisan node start` under a supervisor until stopped; the getting-started supervisor runs",
    ),
    (
        "docs/testing.md",
        "a sketch: `keys` stands for a key directory; tests/integration/test_testing_harness.py runs the real thing",
    ),
    (
        "docs/testing.md",
        "needs your application module `myapp`; tests/integration/test_cluster_examples.py runs this with the examples",
    ),
    ("docs/writing-docs.md", "shows the marker itself"),
    ("docs/guide/cli.md", "a cluster that runs until Ctrl-C"),
    ("docs/deployment.md", "runs on your hosts: the addresses are examples"),
    (
        "docs/performance.md",
        "installs Ray and Thespian into throwaway virtualenvs (.bench-peers/) and runs for a few minutes",
    ),
}

RUNNABLE_PAGES = [p.relative_to(ROOT).as_posix() for p in pages() if any(b.runs for b in blocks(p))]


def test_every_no_run_block_is_listed() -> None:
    found = {(b.page, b.no_run) for p in pages() for b in blocks(p) if b.no_run}
    assert found == NO_RUN, (
        f"unlisted exemptions: {sorted(found - NO_RUN)}; stale entries: {sorted(NO_RUN - found)}"
    )


def test_python_code_is_in_python_blocks() -> None:
    """Code in an unlabelled fence would escape the runner: label it python (or sh)."""
    for page in pages():
        for block in blocks(page):
            if block.language == "":
                assert "import partisan" not in block.code and "from partisan" not in block.code, (
                    f"{block.where()}: Python code in an unlabelled fence; label it ```python"
                )


def test_saved_files_are_run() -> None:
    for page in pages():
        page_blocks = blocks(page)
        for i, block in enumerate(page_blocks):
            if block.runs and block.file_name:
                later = " ".join(b.code for b in page_blocks[i + 1 :] if b.language == "sh")
                assert block.file_name in later, f"{block.where()}: {block.file_name} is never run"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_blocks_run(page: str, tmp_path: Path) -> None:
    run = PageRun(tmp_path)
    try:
        for block in blocks(ROOT / page):
            if block.runs:
                run.run(block)
    finally:
        run.close()

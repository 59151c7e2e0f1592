"""S7: coverage-guided fuzzing of what a node parses before any payload is unpickled.

Run by ``make fuzz`` (``FUZZ_SECONDS``, default 600): atheris (libFuzzer)
mutates inputs for the header decoder, the HELLO/WELCOME greeting parser,
the routing-id parser and the BATCH splitter; each must return or raise `ProtocolError` — anything
else is a crash libFuzzer reports with the input that caused it (saved as
``crash-*`` under ``FUZZ_ARTIFACTS``). The process runs under an address-space
limit (RLIMIT_AS, 2 GiB) and libFuzzer's per-input timeout (``-timeout=1``),
so a huge allocation or a hang is a finding too, not a stuck machine.

Payloads (pickle/dill) are deliberately not fuzzed in this process:
unpickling corrupted frames once hung the interpreter and left it raising
SystemError, so payload decoding is fuzzed one forked child per input by
tests/integration/test_payload_fuzz.py, and an authenticated peer's payload
is trusted by design (CURVE admits only listed keys).

Fallback when atheris cannot be installed (no wheel for the interpreter): the
same targets under hypothesis, random rather than coverage-guided, for the
same time budget (``--fallback``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from typing import Any

from partisan.errors import ProtocolError

_LIMIT = 2 << 30
# The parsers, imported by `_load` (under atheris's instrumentation when it runs).
_TARGETS: list[Any] = []


def _load() -> None:
    from partisan.transport.batch import BATCH_PREFIX, split_batch
    from partisan.transport.session import Greeting, parse_routing_id
    from partisan.transport.wire import decode_header

    def batch(data: bytes) -> None:  # past the prefix, or every input would stop there
        split_batch(BATCH_PREFIX + data)

    _TARGETS[:] = [decode_header, Greeting.from_bytes, parse_routing_id, batch]


def one_input(data: bytes) -> None:
    """Feed one input to every pre-authentication parser; only ProtocolError may escape."""
    if not data:
        return
    with contextlib.suppress(ProtocolError):
        _TARGETS[data[0] % len(_TARGETS)](data[1:])


def _fallback(seconds: float) -> int:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    _load()
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        settings(max_examples=5000, database=None, deadline=1000)(
            given(st.binary(max_size=4096))(one_input)
        )()
        rounds += 1
    print(f"fallback fuzzing: {rounds * 5000} inputs in {seconds:.0f} s, no finding")
    return 0


def main() -> int:
    resource.setrlimit(resource.RLIMIT_AS, (_LIMIT, _LIMIT))
    seconds = float(os.environ.get("FUZZ_SECONDS", "600"))
    if "--fallback" in sys.argv:
        return _fallback(seconds)
    try:
        import atheris  # type: ignore[import-not-found]  # optional: `pip install .[fuzz]`
    except ImportError:
        print("atheris is not installed: falling back to hypothesis (random, not coverage-guided)")
        return _fallback(seconds)
    artifacts = os.environ.get("FUZZ_ARTIFACTS", "fuzz-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", "-timeout=1", "-rss_limit_mb=2048",
            f"-artifact_prefix={artifacts}/", *[a for a in sys.argv[1:] if a.startswith("-")]]  # fmt: skip
    with atheris.instrument_imports():
        _load()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())

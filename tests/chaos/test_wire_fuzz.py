"""S6: arbitrary frames against the header decoder: a Header or `ProtocolError`, never else.

The header is the one part of a frame read before anything is unpickled
(and, over CURVE, only after authentication); its decoder must reject any
input with `ProtocolError` in bounded time. Random bytes, truncated and
bit-flipped valid headers, wrong version bytes. Payloads (pickle/dill) are
fuzzed out of process: tests/integration/test_payload_fuzz.py, and `make fuzz`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partisan.errors import ProtocolError
from partisan.transport.wire import Header, Kind, decode_header, encode_header

EXAMPLES = 10_000
_VALID = [
    encode_header(Header(Kind.DATA, "n1", 1796, "default", "echo", 7, 0)),
    encode_header(Header(Kind.HELLO, "a-long-node-name", 2**62, "membership", "", 0, 0)),
    encode_header(Header(Kind.PING, "n2", 1, "", "", 0, 0)),
]


@st.composite
def frames(draw: Any) -> bytes:
    """Random bytes, or a valid header truncated, extended, bit-flipped or re-versioned."""
    how = draw(st.sampled_from(["random", "truncate", "flip", "version", "extend"]))
    if how == "random":
        return bytes(draw(st.binary(max_size=512)))
    base = bytearray(draw(st.sampled_from(_VALID)))
    if how == "truncate":
        return bytes(base[: draw(st.integers(0, len(base) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(base) - 1))
            base[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(base)
    if how == "version":
        base[0] = draw(st.integers(0, 255))
        return bytes(base)
    return bytes(base) + draw(st.binary(min_size=1, max_size=64))


@pytest.mark.timeout(300)
def test_s6_header_decoder_fuzz(measure: Callable[..., Any]) -> None:
    spent = [0.0, 0]
    other: list[str] = []

    @settings(max_examples=EXAMPLES, database=None, deadline=None)
    @given(frames())
    def check(frame: bytes) -> None:
        start = time.perf_counter()
        try:
            decode_header(frame)
        except ProtocolError:
            pass
        except Exception as exc:  # the finding: any other exception type
            other.append(f"{type(exc).__name__}: {exc} for {frame!r}")
        spent[0] += time.perf_counter() - start
        spent[1] += 1

    check()
    measure("S6", "wire_decoder_fuzz", "non-ProtocolError outcomes", len(other), 0, "count",
            f"{spent[1]} examples: a Header or ProtocolError, never another exception",
            "; ".join(other[:3]))  # fmt: skip
    measure("S6", "wire_decoder_fuzz", "time per input", spent[0] / max(1, spent[1]) * 1000, 5.0,
            "ms", "bounded time per input")  # fmt: skip

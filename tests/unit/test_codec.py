"""Payload codec: pickle 5 round trips, out-of-band buffers, the dill fallback.

Fuzzing the decoder with mutated frames happens only in a subprocess
(tests/integration/test_payload_fuzz.py): corrupted pickles can wreck the
interpreter that loads them. Here we only feed well-formed or clearly framed
bad input.
"""

from __future__ import annotations

import array
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest

from partisan.errors import PartisanError, ProtocolError
from partisan.identity import NodeSpec, Pid
from partisan.transport.codec import (
    CODEC_FLAGS_MASK,
    FLAG_DILL,
    FLAG_OOB,
    OOB_CHUNK_BYTES,
    OOB_MIN_BYTES,
    EncodeError,
    decode_payload,
    encode_payload,
)

MB = 1 << 20


def round_trip(obj: object) -> tuple[int, list[bytes | memoryview], object]:
    flags, frames = encode_payload(obj)
    # What a receiver holds: read-only views of received frames, not our objects.
    received = [memoryview(bytes(frame)) for frame in frames]
    return flags, frames, decode_payload(flags, received)


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    "obj",
    [
        None,
        0,
        -(2**80),
        3.5,
        "héllo",
        b"",
        b"small bytes",
        (1, "two", 3.0, None),
        [1, [2, [3]]],
        {"a": 1, ("t", 2): {3, 4}},
        frozenset({1, 2}),
        Point(1, 2),
        Pid("n1", 123, 7),
        NodeSpec("n1", "127.0.0.1", 9000, public_key="k", incarnation=5),
        ProtocolError("an exception is a message too"),
        range(10),
        bytearray(b"abc"),
    ],
    ids=repr,
)
def test_plain_objects_round_trip_in_one_pickle_frame(obj: object) -> None:
    flags, frames, value = round_trip(obj)
    assert flags == 0
    assert len(frames) == 1
    assert pickle.loads(frames[0]) == obj or isinstance(obj, Exception)  # plain pickle 5
    if isinstance(obj, Exception):
        assert type(value) is type(obj) and value.args == obj.args
    else:
        assert value == obj
        assert type(value) is type(obj)


def test_large_bytes_travel_out_of_band_without_a_copy() -> None:
    data = bytes(range(256)) * (MB // 256)
    flags, frames, value = round_trip(("put", "key", data))
    assert flags & FLAG_OOB and not flags & FLAG_DILL
    assert len(frames) == 2
    assert len(frames[0]) < 200, "the pickle stream must not contain the data"
    assert isinstance(frames[1], memoryview)
    assert frames[1].obj is data, "the frame must alias the caller's bytes (zero-copy)"
    assert value == ("put", "key", data)
    assert type(value[2]) is bytes  # type: ignore[index]


def test_bytes_over_the_chunk_size_travel_as_several_frames_and_arrive_whole() -> None:
    """libzmq encrypts a frame whole: 1 MiB frames let other connections through between them."""
    data = bytes(range(256)) * ((4 * MB + 1000) // 256)
    buf = bytearray(b"q" * (2 * MB))
    flags, frames, value = round_trip(("put", data, buf, data, 7))
    assert flags == FLAG_OOB
    sizes = [memoryview(f).nbytes for f in frames[1:]]
    assert sizes == [OOB_CHUNK_BYTES] * 4 + [len(data) - 4 * OOB_CHUNK_BYTES] + [MB, MB]
    assert all(f.obj is data for f in frames[1:6]), "chunks alias the caller's bytes"  # type: ignore[union-attr]
    assert value == ("put", data, buf, data, 7)
    assert type(value[1]) is bytes and type(value[2]) is bytearray  # type: ignore[index]
    assert value[1] is value[3]  # type: ignore[index]


def test_memoryviews_stay_one_frame_whatever_their_size() -> None:
    data = bytearray(3 * MB)
    _, frames, value = round_trip(memoryview(data))
    assert len(frames) == 2
    assert isinstance(value, memoryview) and value.nbytes == 3 * MB


def test_each_large_buffer_is_its_own_frame_and_shared_ones_stay_shared() -> None:
    a, b = b"a" * MB, bytearray(b"b" * (MB // 2))  # neither over OOB_CHUNK_BYTES
    flags, frames, value = round_trip({"a": a, "b": b, "again": a, "b2": b})
    assert flags == FLAG_OOB
    assert len(frames) == 3
    assert sorted(memoryview(f).nbytes for f in frames[1:]) == [MB // 2, MB]
    assert value == {"a": a, "b": b, "again": a, "b2": b}
    assert value["a"] is value["again"]  # type: ignore[index]
    assert value["b"] is value["b2"]  # type: ignore[index]
    assert type(value["b"]) is bytearray  # type: ignore[index]


def test_buffers_below_the_threshold_stay_in_band() -> None:
    flags, frames, value = round_trip(("x", b"y" * (OOB_MIN_BYTES - 100)))
    assert (flags, len(frames)) == (0, 1)
    assert value == ("x", b"y" * (OOB_MIN_BYTES - 100))


def test_top_level_bytes_and_bytearray() -> None:
    data = b"z" * MB
    flags, frames, value = round_trip(data)
    assert flags == FLAG_OOB
    assert len(frames) == 2 and frames[1].obj is data  # type: ignore[union-attr]
    assert value == data
    _, frames, value = round_trip(bytearray(data))
    assert type(value) is bytearray and value == data


def test_memoryviews_keep_format_and_shape() -> None:
    ints = array.array("i", range(100_000))
    flags, frames, value = round_trip(memoryview(ints))
    assert len(frames) == 2
    assert isinstance(value, memoryview)
    assert value.format == "i" and value.shape == (100_000,)
    assert value.tolist() == ints.tolist()
    assert value.readonly

    small = memoryview(b"abcdef").cast("B", (2, 3))
    flags, frames, value = round_trip({"m": small})
    assert flags == FLAG_OOB and len(frames) == 1
    assert value["m"].shape == (2, 3) and value["m"].tobytes() == b"abcdef"  # type: ignore[index]


def test_non_contiguous_memoryview_is_sent_as_its_bytes() -> None:
    strided = memoryview(bytes(range(200)))[::2]
    _, _, value = round_trip(strided)
    assert bytes(value) == bytes(range(0, 200, 2))  # type: ignore[arg-type]


def test_picklebuffer_objects_go_out_of_band() -> None:
    payload = pickle.PickleBuffer(bytearray(b"q" * MB))
    _, frames, value = round_trip(payload)
    assert len(frames) == 2
    assert bytes(value) == b"q" * MB  # type: ignore[arg-type]


def make_closure(offset: int) -> Any:
    return lambda x: x + offset


def test_lambdas_closures_and_local_classes_fall_back_to_dill() -> None:
    class Local:
        def __init__(self, v: int) -> None:
            self.v = v

        def double(self) -> int:
            return self.v * 2

    def local_function(x: int) -> int:
        return x * 3

    big = b"B" * MB
    cases: list[tuple[object, Any]] = [
        (lambda x: x + 1, lambda f: f(1) == 2),
        (make_closure(10), lambda f: f(1) == 11),
        (local_function, lambda f: f(2) == 6),
        (Local(21), lambda o: o.double() == 42),
        (Local, lambda cls: cls(2).double() == 4),
        (("with a big buffer", Local(1), big), lambda t: t[1].v == 1 and t[2] == big),
    ]
    for obj, check in cases:
        flags, frames, value = round_trip(obj)
        assert flags & FLAG_DILL, obj
        assert check(value), obj
    flags, frames, _ = round_trip(cases[-1][0])
    assert len(frames) == 2 and len(frames[0]) < MB, "dill payloads keep big buffers out of band"


def test_unserializable_object_is_an_encode_error_naming_the_type() -> None:
    def gen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(EncodeError, match="generator") as info:
        encode_payload(gen())
    assert isinstance(info.value, PartisanError) and isinstance(info.value, TypeError)


def test_reducer_that_raises_is_an_encode_error() -> None:
    class Refuses:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("no way")

    with pytest.raises(EncodeError, match="no way"):
        encode_payload(Refuses())


@pytest.mark.parametrize(
    ("flags", "frames", "message"),
    [
        (0, [], "no payload frame"),
        (0, [b"not a pickle"], "does not decode"),
        (0, [b""], "does not decode"),
        (0x04, [pickle.dumps(1)], "unknown codec flags"),
        (0, [pickle.dumps(1), b"extra"], "no buffer flag"),
        (FLAG_OOB, [pickle.dumps(1), b"extra"], "1 buffer frames sent, 0 referenced"),
        (FLAG_OOB, [b"\x80\x05(K\x00K\x00tQ."], "missing"),  # pid (0, 0), no frame
        (FLAG_OOB, [b"\x80\x05(K\x07K\x00tQ.", b"x"], "bad persistent id"),
        (FLAG_OOB, [b"\x80\x05(K\x00K\x05tQ.", b"x"], "out of order"),
        # chunked bytes (tag 4): more frames announced than sent, or a count below 2
        (FLAG_OOB, [b"\x80\x05(K\x04K\x00K\x03tQ.", b"x", b"y"], "frame 2 is missing"),
        (FLAG_OOB, [b"\x80\x05(K\x04K\x00K\x01tQ.", b"x"], "bad persistent id"),
        (FLAG_OOB, [b"\x80\x05(K\x04K\x00K\x02tQ.", b"x", b"y", b"z"], "3 buffer frames sent, 2"),
        (FLAG_OOB, [b"\x80\x05X\x01\x00\x00\x00aQ."], "bad persistent id"),
        (0, [b"\x80\x05(K\x00K\x00tQ."], "no persistent_load"),
    ],
)
def test_malformed_payloads_are_protocol_errors(
    flags: int, frames: Sequence[bytes], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_payload(flags, frames)


def test_link_flags_outside_the_codec_mask_are_ignored() -> None:
    flags, frames = encode_payload(("hello", 1))
    assert decode_payload(flags | (0xAB00 & ~CODEC_FLAGS_MASK), frames) == ("hello", 1)


def test_decode_failure_inside_a_class_is_a_protocol_error() -> None:
    # A stream naming a module that does not exist here (another node's code).
    module = Point.__module__.encode()
    stream = pickle.dumps(Point(1, 2)).replace(module, module[:-1] + b"_")
    with pytest.raises(ProtocolError, match="ModuleNotFoundError"):
        decode_payload(0, [stream])


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(60)
def test_dill_is_not_imported_for_ordinary_payloads() -> None:
    out = _run(
        """
        import sys
        from partisan.transport.codec import encode_payload, decode_payload
        for obj in [1, "s", (1, b"x" * (1 << 20)), {"k": [1.0]}, memoryview(b"abc")]:
            flags, frames = encode_payload(obj)
            decode_payload(flags, frames)
        print("dill" in sys.modules)
        flags, frames = encode_payload(lambda: 1)
        print("dill" in sys.modules)
        """
    )
    assert out.splitlines() == ["False", "True"]


@pytest.mark.timeout(60)
def test_classes_defined_in_main_are_carried_by_value() -> None:
    # pickle would name __main__.Message, which another process cannot load.
    out = _run(
        """
        import dataclasses, subprocess, sys
        from partisan.transport.codec import FLAG_DILL, encode_payload

        # No class or function of __main__ yet: the plain path, no scan needed.
        assert encode_payload(["__main__ as data"])[0] == 0

        @dataclasses.dataclass
        class Message:
            text: str

        flags, frames = encode_payload([Message("hi")])
        assert flags & FLAG_DILL, flags
        child = (
            "import sys; from partisan.transport.codec import decode_payload; "
            "v = decode_payload(int(sys.argv[1]), [sys.stdin.buffer.read()]); print(v[0].text)"
        )
        done = subprocess.run([sys.executable, "-c", child, str(flags)], input=bytes(frames[0]),
                              capture_output=True, timeout=30)
        sys.stdout.write(done.stdout.decode() + done.stderr.decode())
        """
    )
    assert out == "hi"

"""Payload codec: pickle protocol 5, large buffers out of band, dill only as a fallback.

Theory of operation
-------------------
`encode_payload(obj)` returns ``(flags, frames)``: ``frames[0]`` is a pickle
stream and ``frames[1:]`` are out-of-band buffers, one ZeroMQ frame each (a
`bytes` or `bytearray` over `OOB_CHUNK_BYTES` as several), that the stream
refers to by frame index. The links put `flags` into the low byte of
`Header.flags` and send ``[header, *frames]`` with ``copy=False``, so a large
`bytes`, `bytearray`, `memoryview` or protocol-5 `PickleBuffer` (numpy arrays)
travels without being copied into the pickle stream.

Encoding tries, in order:

1. ``pickle.dumps(obj, 5)`` — the C pickler with no Python callbacks, the
   fastest path (~1-3 µs for a small message). If the stream is shorter than
   `OOB_MIN_BYTES` it cannot contain a large buffer, so it is sent as is.
2. A pickler whose ``persistent_id`` moves every buffer of at least
   `OOB_MIN_BYTES` out of band. It runs only for large or memoryview-carrying
   messages, because a Python callback per object costs ~60 % on small ones
   (measured: 3.1 µs -> 5.1 µs). The C pickler never calls ``reducer_override``
   for `bytes`, so ``persistent_id`` is the only hook that sees them.
3. dill, imported lazily and flagged with `FLAG_DILL`, only when pickle cannot
   carry the object (lambdas, closures, classes defined in a function or in
   ``__main__`` of another process). dill is a pure-Python pickler: ~30x
   slower, so never on the common path.

Decoding mirrors this: one frame is plain ``pickle.loads``; more frames use an
unpickler whose ``persistent_load`` hands out the buffer frames (bytes and
bytearrays are rebuilt with one copy; memoryviews and PickleBuffers are
returned as read-only views of the received frame, zero-copy). A peer's bad
bytes never escape as anything but `ProtocolError`.

Security: unpickling runs code chosen by the sender. The links decode a
payload only after CURVE authenticated the sender (whose Poly1305 MAC also
rules out corrupted frames); in ``insecure`` mode that guarantee is gone,
which is why insecure nodes bind loopback only.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from partisan.errors import EncodeError, ProtocolError

__all__ = [
    "CODEC_FLAGS_MASK",
    "FLAG_DILL",
    "FLAG_OOB",
    "OOB_CHUNK_BYTES",
    "OOB_MIN_BYTES",
    "PICKLE_PROTOCOL",
    "EncodeError",
    "decode_payload",
    "encode_payload",
]

log = logging.getLogger(__name__)

PICKLE_PROTOCOL = 5
#: Buffers at least this large travel as their own frame (zero-copy on send).
#: Below it an extra ZeroMQ frame costs more than copying the bytes.
OOB_MIN_BYTES = 64 * 1024
#: Header.flags bit: frames[0] is a dill stream.
FLAG_DILL = 0x01
#: Header.flags bit: the stream carries persistent ids (buffer frames, small memoryviews).
FLAG_OOB = 0x02
#: The bits of Header.flags the codec owns; the links own the rest.
CODEC_FLAGS_MASK = 0x00FF

#: A bytes or bytearray larger than this travels as several frames of at most this
#: size: libzmq encrypts and decrypts a frame whole in its I/O thread (~1 ms per MB
#: here), so an 8 MB frame held every other connection of that thread for ~8 ms,
#: while frames of 1 MiB let them through in between (issue 10's channel isolation).
#: The receiver joins them with the one copy a `bytes` costs anyway; memoryviews and
#: PickleBuffers stay one frame, so they still arrive zero-copy.
OOB_CHUNK_BYTES = 1024 * 1024

# Tags of our persistent ids: (tag, first frame index[, format, shape | frame count]).
_BYTES, _BYTEARRAY, _VIEW, _PICKLEBUFFER, _BYTES_CHUNKS, _BYTEARRAY_CHUNKS = 0, 1, 2, 3, 4, 5
_MAIN = b"__main__"
_SCAN_FIRST = 1024  # streams shorter than this are scanned for _MAIN before _main_has_globals
_PickleBuffer = pickle.PickleBuffer
_main_cache: list[Any] = [None, -1, False]  # module, namespace size, answer
_dumps = pickle.dumps
_loads = pickle.loads
_dill_codec: tuple[type, type] | None = None


Frame = bytes | memoryview


def encode_payload(obj: object) -> tuple[int, list[Frame]]:
    """Serialize `obj` into ``(flags, frames)``; raise `EncodeError` if it cannot be.

    ``frames[0]`` is the stream; further frames are out-of-band buffers that
    alias `obj`'s memory: the caller must not mutate those objects until
    ZeroMQ has sent them (as with any ``copy=False`` send).
    """
    kind = type(obj)
    if (
        kind is memoryview
        or kind is _PickleBuffer
        or ((kind is bytes or kind is bytearray) and len(obj) >= OOB_MIN_BYTES)  # type: ignore[arg-type]
    ):
        return _encode_slow(obj, None)
    try:
        stream = _dumps(obj, PICKLE_PROTOCOL)
    except Exception as exc:  # a memoryview inside, or not picklable: the slower paths decide
        return _encode_slow(obj, exc)
    size = len(stream)
    if size < _SCAN_FIRST:
        # Scanning a small stream is cheaper than asking whether it is needed.
        if stream.find(_MAIN) < 0 or not _main_has_globals():
            return 0, [stream]
    elif size < OOB_MIN_BYTES and (not _main_has_globals() or stream.find(_MAIN) < 0):
        return 0, [stream]
    return _encode_slow(obj, None)


def decode_payload(flags: int, frames: Sequence[Frame]) -> object:
    """Rebuild the object from `frames`; raise `ProtocolError` for anything malformed.

    `flags` is ``Header.flags`` (only the codec's bits are read). Frames may
    be `bytes` or memoryviews of received ZeroMQ frames.
    """
    codec_flags = flags & CODEC_FLAGS_MASK
    try:
        if codec_flags == 0 and len(frames) == 1:
            return _loads(frames[0])  # the common path
        if codec_flags & ~(FLAG_DILL | FLAG_OOB):
            raise ProtocolError(f"unknown codec flags 0x{codec_flags:02x}")
        if not frames:
            raise ProtocolError("message has no payload frame")
        if codec_flags & FLAG_DILL:
            unpickler_class = _dill()[1]
        elif codec_flags & FLAG_OOB:
            unpickler_class = _OobUnpickler
        else:
            raise ProtocolError(f"{len(frames)} payload frames but no buffer flag")
        unpickler = unpickler_class(io.BytesIO(frames[0]))
        unpickler.frames = frames
        unpickler.loaded = {}
        unpickler.next_frame = 0
        value = unpickler.load()
        if unpickler.next_frame != len(frames) - 1:
            raise pickle.UnpicklingError(
                f"{len(frames) - 1} buffer frames sent, {unpickler.next_frame} referenced"
            )
        return value
    except ProtocolError:
        raise
    # A hostile or corrupted stream can raise nearly anything (MemoryError,
    # RecursionError, ImportError, even SystemExit through a crafted REDUCE);
    # all of it is the peer's bad input, never a reason to stop the node.
    except (Exception, SystemExit) as exc:
        raise ProtocolError(f"payload does not decode: {type(exc).__name__}: {exc}") from None


def _main_has_globals() -> bool:
    """Whether ``__main__`` defines a class or function pickle could name by reference.

    Only then can a stream that pickled fine name ``__main__`` (pickle refers
    to classes and functions by module and qualified name, and finds them in
    the module), so only then is it worth scanning streams for it: the scan
    costs ~0.3 µs per KB. Cached until ``__main__``'s namespace changes size.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return False
    namespace = main.__dict__
    cache = _main_cache
    if cache[0] is main and cache[1] == len(namespace):
        return bool(cache[2])
    answer = any(
        isinstance(value, (type, types.FunctionType))
        and getattr(value, "__module__", None) == "__main__"
        for value in list(namespace.values())
    )
    cache[:] = [main, len(namespace), answer]
    return answer


def _encode_slow(obj: object, pickle_error: Exception | None) -> tuple[int, list[Frame]]:
    """Pickle with out-of-band buffers; fall back to dill when that cannot work."""
    try:
        frames, uses_ids = _dumps_oob(_OobPickler, obj)
    except Exception as exc:
        return _encode_dill(obj, pickle_error or exc)
    if _main_has_globals() and frames[0].find(_MAIN) >= 0:  # type: ignore[union-attr]  # bytes
        return _encode_dill(obj, None)
    # Without ids (a large str made the stream long, say) plain pickle.loads reads it.
    return (FLAG_OOB if uses_ids else 0), frames


def _encode_dill(obj: object, pickle_error: Exception | None) -> tuple[int, list[Frame]]:
    """Fall back to dill: pickle failed, or its stream names ``__main__``.

    A ``__main__`` reference pickles fine here but names another program's
    ``__main__`` on the receiving node, where it cannot load; dill carries
    such classes and functions by value.
    """
    try:
        return FLAG_DILL, _dumps_oob(_dill()[0], obj)[0]
    except Exception as exc:
        raise EncodeError(_unserializable(obj, exc)) from None


def _unserializable(obj: object, error: BaseException) -> str:
    """One line naming what cannot be serialized and where it sits inside `obj`."""
    path, part = _find_unserializable(obj)
    why = f"{type(error).__name__}: {error}"
    kind = type(obj).__qualname__
    if not path:
        return f"cannot send a {kind}: neither pickle nor dill can serialize it ({why})"
    return (
        f"cannot send a {kind}: {path} is a {type(part).__qualname__}, which neither "
        f"pickle nor dill can serialize ({why})"
    )


def _find_unserializable(obj: object, path: str = "", depth: int = 0) -> tuple[str, object]:
    """The innermost part of `obj` that dill cannot serialize, and its path (``[1].name``)."""
    if depth >= 16:
        return path, obj
    children: list[tuple[str, object]] = []
    if isinstance(obj, (tuple, list)):
        children = [(f"[{i}]", value) for i, value in enumerate(obj)]
    elif isinstance(obj, dict):
        for key, value in obj.items():
            children += [(f" key {key!r}", key), (f"[{key!r}]", value)]
    elif isinstance(obj, (set, frozenset)):
        children = [(" an element", value) for value in obj]
    else:
        fields = getattr(obj, "__dict__", None)
        if isinstance(fields, dict):
            children = [(f".{name}", value) for name, value in fields.items()]
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                children.append((f".{name}", getattr(obj, name)))
    dumps = importlib.import_module("dill").dumps
    for label, child in children:
        try:
            dumps(child, PICKLE_PROTOCOL)
        except Exception:
            return _find_unserializable(child, f"{path}{label}".strip(), depth + 1)
    return path, obj


def _dumps_oob(pickler_class: Callable[..., Any], obj: object) -> tuple[list[Frame], bool]:
    """Pickle with our persistent ids; also say whether any id was written."""
    out = io.BytesIO()
    pickler = pickler_class(out, PICKLE_PROTOCOL)
    buffers: list[Frame] = []
    pickler.buffers = buffers
    pickler.seen = {}
    pickler.inline = 0
    pickler.dump(obj)
    return [out.getvalue(), *buffers], bool(buffers or pickler.inline)


def _persistent_id(pickler: Any, obj: object) -> tuple[Any, ...] | None:
    """Move a large buffer out of band; carry a small memoryview in band.

    Persistent ids are ``(tag, frame index, ...)``. A buffer seen twice in
    one message is sent once and referenced twice, so identity survives as it
    does with pickle's memo.
    """
    kind = type(obj)
    # Exact types: a subclass keeps its own reduction (and its class) in band.
    if kind is bytes or kind is bytearray:
        data = typing.cast(bytes, obj)
        if len(data) < OOB_MIN_BYTES:
            return None
        if len(data) > OOB_CHUNK_BYTES:
            return _add_chunks(pickler, obj, memoryview(data), kind is bytes)
        return _add_buffer(
            pickler, obj, memoryview(data), (_BYTES if kind is bytes else _BYTEARRAY,)
        )
    if kind is pickle.PickleBuffer:
        view = typing.cast(pickle.PickleBuffer, obj).raw()  # raises BufferError if not contiguous
        if view.nbytes < OOB_MIN_BYTES:
            return None  # pickle carries it in band itself
        return _add_buffer(pickler, obj, view, (_PICKLEBUFFER, bool(view.readonly)))
    if kind is memoryview:
        view = typing.cast(memoryview, obj)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view_format, shape = view.format, view.shape or ()
        flat = view.cast("B") if view_format != "B" or view.ndim != 1 else view
        if not _restorable(flat, view_format, shape):
            view_format, shape = "B", (flat.nbytes,)
        if flat.nbytes < OOB_MIN_BYTES:
            pickler.inline += 1
            return (_VIEW, flat.tobytes(), view_format, shape)
        return _add_buffer(pickler, obj, flat, (_VIEW, view_format, shape))
    return None


def _add_buffer(
    pickler: Any, obj: object, view: memoryview, extra: tuple[Any, ...]
) -> tuple[Any, ...]:
    key = id(obj)
    pid = pickler.seen.get(key)
    if pid is None:
        pickler.buffers.append(view)
        pid = (extra[0], len(pickler.buffers) - 1, *extra[1:])
        pickler.seen[key] = pid
    return typing.cast(tuple[Any, ...], pid)


def _add_chunks(pickler: Any, obj: object, view: memoryview, is_bytes: bool) -> tuple[Any, ...]:
    """Send a large bytes or bytearray as frames of `OOB_CHUNK_BYTES` (views, zero-copy)."""
    key = id(obj)
    pid = pickler.seen.get(key)
    if pid is None:
        first = len(pickler.buffers)
        for start in range(0, view.nbytes, OOB_CHUNK_BYTES):
            pickler.buffers.append(view[start : start + OOB_CHUNK_BYTES])
        count = len(pickler.buffers) - first
        pid = (_BYTES_CHUNKS if is_bytes else _BYTEARRAY_CHUNKS, first, count)
        pickler.seen[key] = pid
    return typing.cast(tuple[Any, ...], pid)


def _restorable(flat: memoryview, view_format: str, shape: tuple[int, ...]) -> bool:
    try:
        _cast(flat, view_format, shape)
    except (TypeError, ValueError):
        return False
    return True


def _cast(flat: memoryview, view_format: Any, shape: Any) -> memoryview:
    """Give a flat byte view its original format and shape back (zero-copy)."""
    if view_format == "B" and len(shape) == 1:
        return flat
    return flat.cast(view_format, shape)


def _persistent_load(unpickler: Any, pid: object) -> object:
    """Resolve one of our persistent ids; anything else is a malformed stream."""
    if not isinstance(pid, tuple) or len(pid) < 2 or type(pid[0]) is not int:
        raise pickle.UnpicklingError(f"bad persistent id {pid!r}")
    tag, ref = pid[0], pid[1]
    if tag == _VIEW and len(pid) == 4 and type(ref) is bytes:
        return _cast(memoryview(ref).cast("B"), pid[2], pid[3])
    loaded: dict[int, object] = unpickler.loaded
    if type(ref) is not int:
        raise pickle.UnpicklingError(f"bad persistent id {pid!r}")
    if ref in loaded:
        return loaded[ref]  # the same buffer again: same object, as pickle's memo would give
    if ref != unpickler.next_frame:
        raise pickle.UnpicklingError(f"buffer frame {ref!r} referenced out of order")
    frames = unpickler.frames
    count = 1
    if tag in (_BYTES_CHUNKS, _BYTEARRAY_CHUNKS) and len(pid) == 3:
        count = pid[2]
        if type(count) is not int or count < 2:
            raise pickle.UnpicklingError(f"bad persistent id {pid!r}")
    if ref + count >= len(frames):
        raise pickle.UnpicklingError(f"buffer frame {ref + count - 1} is missing")
    frame = frames[ref + 1]
    value: object
    if tag == _BYTES and len(pid) == 2:
        value = bytes(frame)
    elif tag == _BYTEARRAY and len(pid) == 2:
        value = bytearray(frame)
    elif tag == _VIEW and len(pid) == 4:
        value = _cast(memoryview(frame).cast("B").toreadonly(), pid[2], pid[3])
    elif tag == _PICKLEBUFFER and len(pid) == 3:
        view = memoryview(frame).cast("B")
        # pickle's rule: a read-only original stays read-only; a writable one is
        # writable only if the received frame is.
        value = view.toreadonly() if pid[2] else view
    elif tag == _BYTES_CHUNKS and len(pid) == 3:
        value = b"".join(frames[ref + 1 : ref + 1 + count])
    elif tag == _BYTEARRAY_CHUNKS and len(pid) == 3:
        value = bytearray().join(frames[ref + 1 : ref + 1 + count])
    else:
        raise pickle.UnpicklingError(f"bad persistent id {pid!r}")
    loaded[ref] = value
    unpickler.next_frame = ref + count
    return value


class _OobPickler(pickle.Pickler):
    buffers: list[Frame]
    seen: dict[int, tuple[Any, ...]]
    inline: int

    def persistent_id(self, obj: object) -> tuple[Any, ...] | None:
        return _persistent_id(self, obj)


class _OobUnpickler(pickle.Unpickler):
    frames: Sequence[Frame]
    loaded: dict[int, object]  # by first frame index
    next_frame: int  # the index of the first frame not yet referenced

    def persistent_load(self, pid: object) -> object:
        return _persistent_load(self, pid)


def _dill() -> tuple[type, type]:
    """Import dill on first use and build its out-of-band pickler pair."""
    global _dill_codec
    if _dill_codec is None:
        dill = importlib.import_module("dill")

        class DillPickler(dill.Pickler):  # type: ignore[name-defined]
            buffers: list[Frame]
            seen: dict[int, tuple[Any, ...]]
            inline: int

            def persistent_id(self, obj: object) -> tuple[Any, ...] | None:
                return _persistent_id(self, obj)

        class DillUnpickler(dill.Unpickler):  # type: ignore[name-defined]
            frames: Sequence[Frame]
            loaded: dict[int, object]
            next_frame: int

            def persistent_load(self, pid: object) -> object:
                return _persistent_load(self, pid)

        _dill_codec = (DillPickler, DillUnpickler)
        log.debug("dill %s loaded for the payload fallback", getattr(dill, "__version__", "?"))
    return _dill_codec

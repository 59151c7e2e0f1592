"""Wire format: the versioned header frame that starts every transport message.

Theory of operation
-------------------
A transport message is a ZeroMQ multipart message::

    [header frame][payload frame 0 (pickle stream)][out-of-band buffer frames ...]

The header is *not* pickle: it is decoded for every message before anything
else, from bytes a peer controls, so it is a fixed struct followed by three
length-prefixed UTF-8 strings, all big-endian::

    offset  size  field
    0       2     magic  b"PZ"
    2       1     version (WIRE_VERSION)
    3       1     kind (Kind)
    4       2     flags (low byte: codec flags, see codec.py; high byte: link flags)
    6       8     incarnation of the sender (unsigned; time.time_ns() at start)
    14      8     seq (unsigned; per session and lane, owned by the links)
    22      1     len(sender)   <= 255 bytes
    23      1     len(channel)  <= 255 bytes
    24      2     len(dest)     <= MAX_DEST_BYTES
    26      ...   sender, channel, dest (UTF-8)

(A BATCH frame keeps only the first four bytes of this layout and carries
whole DATA messages after them: see `batch.py`.) The frame must be exactly that long: trailing bytes are an error, so one
header never hides a second. The magic and version bytes keep their place in
every future version, so a node can always tell "not ours" (bad magic) from
"ours, but another version" (`WireVersionError`, which carries the peer's
version so the links can REFUSE a HELLO with a clear reason).

`decode_header` only ever raises `ProtocolError`: the links count and log it
and drop the message, never the node. `encode_header` is our own side: a bad
field is a programming error and raises `ValueError` at the call site.

Partisan (Erlang) sends a term_to_binary'd tuple; we cannot safely unpickle
before authentication and header checks, hence this explicit layout.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from partisan.errors import ProtocolError

__all__ = [
    "HEADER_FIXED_SIZE",
    "MAGIC",
    "MAX_DEST_BYTES",
    "MAX_NAME_BYTES",
    "WIRE_VERSION",
    "Header",
    "Kind",
    "WireVersionError",
    "decode_header",
    "encode_header",
]

MAGIC = b"PZ"
#: 3: BATCH frames carry several DATA messages of one lane (`batch.py`).
#: 2: CREDIT frames are per channel (the header's channel) and carry the bytes
#: read so far as an 8-byte payload; version 1 credited a whole peer at once.
WIRE_VERSION = 3
MAX_NAME_BYTES = 255  # sender and channel: one length byte
MAX_DEST_BYTES = 1024  # dest: pids and registered names, with room to spare
_MAX_U64 = (1 << 64) - 1
_MAX_U16 = (1 << 16) - 1

_FIXED = struct.Struct("!2sBBHQQBBH")
HEADER_FIXED_SIZE = _FIXED.size  # 26
HEADER_MAX_SIZE = HEADER_FIXED_SIZE + 2 * MAX_NAME_BYTES + MAX_DEST_BYTES


class Kind(enum.IntEnum):
    """What a message is; the values are on the wire, so never renumber them."""

    HELLO = 1  # dialer -> listener: name, incarnation, manager, wire version
    WELCOME = 2  # listener -> dialer: HELLO accepted
    REFUSE = 3  # listener -> dialer: HELLO refused, payload says why
    DATA = 4  # a payload for `dest` on `channel`
    BYE = 5  # graceful leave: the session ends, reason "left"
    PING = 6  # application-level liveness / session check
    PONG = 7  # answer to PING
    CREDIT = 8  # flow control: room on `channel` (seq = credit; payload = bytes read)
    ACK = 9  # acknowledgement of `seq` (at-least-once sends)
    BATCH = (
        10  # several DATA messages of one lane in one frame; no header of this layout (batch.py)
    )


_KINDS: dict[int, Kind] = {int(k): k for k in Kind}


class WireVersionError(ProtocolError):
    """The frame is ours (right magic) but speaks another wire version."""

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported wire version {version} (this node speaks {WIRE_VERSION})")
        self.version = version


@dataclass(frozen=True, slots=True)
class Header:
    """The decoded header frame of one transport message.

    `sender` and `incarnation` name the session; `seq` orders messages within
    a (session, channel, lane); `dest` is opaque to the transport (a pid
    string, a registered name or a ``$service``); `flags` carries the codec's
    flags (low byte) and the links' own flags (high byte).
    """

    kind: Kind
    sender: str
    incarnation: int
    channel: str
    dest: str
    seq: int
    flags: int = 0


def encode_header(header: Header) -> bytes:
    """Pack `header` into its wire form; raise `ValueError` for a field out of range."""
    try:
        kind = _KINDS[header.kind]
    except (KeyError, TypeError):
        raise ValueError(f"header kind {header.kind!r} is not a Kind") from None
    sender = _utf8("sender", header.sender, MAX_NAME_BYTES)
    channel = _utf8("channel", header.channel, MAX_NAME_BYTES)
    dest = _utf8("dest", header.dest, MAX_DEST_BYTES)
    _check_int("incarnation", header.incarnation, _MAX_U64)
    _check_int("seq", header.seq, _MAX_U64)
    _check_int("flags", header.flags, _MAX_U16)
    fixed = _FIXED.pack(
        MAGIC,
        WIRE_VERSION,
        kind,
        header.flags,
        header.incarnation,
        header.seq,
        len(sender),
        len(channel),
        len(dest),
    )
    return b"".join((fixed, sender, channel, dest))


def decode_header(data: bytes | memoryview) -> Header:
    """Parse a header frame from a peer; raise `ProtocolError` for anything malformed.

    Checks, in order: the size of the fixed part, magic, version (a
    `WireVersionError`), kind, that the three strings exactly fill the rest of
    the frame, `dest` length, and UTF-8. Nothing else can escape.
    """
    try:
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not a flat bytes-like object: {exc}") from None
    size = view.nbytes
    if size < HEADER_FIXED_SIZE:
        raise ProtocolError(f"header too short: {size} bytes, need {HEADER_FIXED_SIZE}")
    magic, version, kind_value, flags, incarnation, seq, n_sender, n_channel, n_dest = (
        _FIXED.unpack_from(view)
    )
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}: not a partisan frame")
    if version != WIRE_VERSION:
        raise WireVersionError(version)
    kind = _KINDS.get(kind_value)
    if kind is None:
        raise ProtocolError(f"unknown message kind {kind_value}")
    if n_dest > MAX_DEST_BYTES:
        raise ProtocolError(f"dest is {n_dest} bytes, the limit is {MAX_DEST_BYTES}")
    expected = HEADER_FIXED_SIZE + n_sender + n_channel + n_dest
    if size != expected:
        raise ProtocolError(f"header is {size} bytes but its lengths say {expected}")
    start = HEADER_FIXED_SIZE
    try:
        sender = str(view[start : start + n_sender], "utf-8")
        start += n_sender
        channel = str(view[start : start + n_channel], "utf-8")
        start += n_channel
        dest = str(view[start : start + n_dest], "utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"header string is not UTF-8: {exc.reason}") from None
    return _new_header(kind, sender, incarnation, channel, dest, seq, flags)


def _make_fast_constructor() -> Callable[..., Header]:
    """Build Headers without the frozen dataclass ``__init__``.

    ``decode_header`` runs for every received message and the generated
    ``__init__`` of a frozen dataclass goes through ``object.__setattr__`` per
    field; writing the slots through their descriptors is ~30 % faster
    (~0.4 µs per message measured). Only for values decode_header validated.
    """
    new = object.__new__
    setters = [getattr(Header, f.name).__set__ for f in dataclasses.fields(Header)]
    set_kind, set_sender, set_incarnation, set_channel, set_dest, set_seq, set_flags = setters

    def build(
        kind: Kind, sender: str, incarnation: int, channel: str, dest: str, seq: int, flags: int
    ) -> Header:
        header = new(Header)
        set_kind(header, kind)
        set_sender(header, sender)
        set_incarnation(header, incarnation)
        set_channel(header, channel)
        set_dest(header, dest)
        set_seq(header, seq)
        set_flags(header, flags)
        return header

    return build


_new_header = _make_fast_constructor()


def _utf8(field_name: str, value: object, limit: int) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"header {field_name} must be a str, got {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError(f"header {field_name} {value!r} is not encodable as UTF-8") from exc
    if len(raw) > limit:
        raise ValueError(f"header {field_name} is {len(raw)} UTF-8 bytes, the limit is {limit}")
    return raw


def _check_int(field_name: str, value: object, limit: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise ValueError(f"header {field_name} must be an int in 0..{limit}, got {value!r}")

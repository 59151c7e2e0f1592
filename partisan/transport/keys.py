"""CURVE key directories: create per-node keypairs and look keys up fast.

Layout (CONTRACT.md, Keys), in pyzmq's certificate format so that
``zmq.auth.load_certificate`` and other ZeroMQ tools read the files::

    DIR/                        0700
      public_keys/              0700   <name>.key          0600  public key
      private_keys/             0700   <name>.key_secret   0600  public + secret key

The public_keys directory *is* the allowlist: a node admits a CURVE client iff
the client's key is listed there, and dials a peer with the server key found
there. `KeyStore` keeps that directory as two dicts (name -> key, key -> name)
and re-reads it when the directory's mtime (or inode) changes, so adding a
node is "copy its .key file in", with no restart. Keys are written to a
temporary file and hard-linked into place, so a reader never sees half a file
and an existing key is never overwritten.

Decisions: a key listed under two names is ambiguous and admitted under
neither (fail closed, logged loudly). Removing a key file stops new
handshakes with it after the next refresh; `generation` tells watchers that
the admitted keys changed (the links then close a revoked peer's live
sessions: `partisan.transport.revocation`).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from partisan.errors import ConfigError
from partisan.identity import _check_name  # the one rule for node names

__all__ = [
    "PRIVATE_DIR",
    "PUBLIC_DIR",
    "KeyPair",
    "KeyStore",
    "add_key",
    "create_keys",
    "load_keypair",
    "public_key_path",
    "secret_key_path",
]

log = logging.getLogger(__name__)

PUBLIC_DIR = "public_keys"
PRIVATE_DIR = "private_keys"
_PUBLIC_SUFFIX = ".key"
_SECRET_SUFFIX = ".key_secret"
#: A directory changed this recently may change again within the same mtime
#: tick (coarse kernel timestamps); until it settles, refresh() re-reads it.
_SETTLE_NS = 2_000_000_000

_PUBLIC_BANNER = """#   ****  Generated on {now} by partisan (pyzmq certificate format)  ****
#   ZeroMQ CURVE Public Certificate
#   Copy this file into another key directory's public_keys/ to admit this node.

"""
_SECRET_BANNER = """#   ****  Generated on {now} by partisan (pyzmq certificate format)  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A node's CURVE keypair, both halves Z85-encoded (40 ASCII characters)."""

    public: str
    secret: str


def public_key_path(directory: str | os.PathLike[str], name: str) -> Path:
    """Where `name`'s public key lives in `directory`."""
    return Path(directory) / PUBLIC_DIR / f"{name}{_PUBLIC_SUFFIX}"


def secret_key_path(directory: str | os.PathLike[str], name: str) -> Path:
    """Where `name`'s secret key lives in `directory`."""
    return Path(directory) / PRIVATE_DIR / f"{name}{_SECRET_SUFFIX}"


def create_keys(directory: str | os.PathLike[str], names: Iterable[str]) -> dict[str, KeyPair]:
    """Create `directory`'s layout (if needed) and a new keypair for each name.

    Checks every name first, so a bad or already-keyed name writes nothing.
    Raises `ConfigError` naming the problem (bad name, existing key, a path
    that cannot be created or written).
    """
    names = list(names)
    for name in names:
        _valid_name(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"node names given twice: {', '.join(names)}")
    root = Path(directory)
    _make_layout(root)
    for name in names:
        for path in (public_key_path(root, name), secret_key_path(root, name)):
            if path.exists():
                raise ConfigError(f"a key for node {name!r} already exists: {path}")
    return {name: _write_keypair(root, name) for name in names}


def add_key(directory: str | os.PathLike[str], name: str) -> KeyPair:
    """Add a keypair for `name` to an existing key directory; return it."""
    root = Path(directory)
    if not (root / PUBLIC_DIR).is_dir() or not (root / PRIVATE_DIR).is_dir():
        raise ConfigError(
            f"no key directory at {root} (expected {PUBLIC_DIR}/ and {PRIVATE_DIR}/); "
            f"create one with: partisan keys new {root}"
        )
    return create_keys(root, [name])[name]


def load_keypair(directory: str | os.PathLike[str], name: str) -> KeyPair:
    """Read `name`'s keypair from its secret certificate; `ConfigError` if unusable."""
    path = secret_key_path(directory, name)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        has_dir = (Path(directory) / PUBLIC_DIR).is_dir() and (
            Path(directory) / PRIVATE_DIR
        ).is_dir()
        fix = (
            f"partisan keys add {directory} {name}"
            if has_dir
            else f"partisan keys new {directory} --node {name}"
        )
        raise ConfigError(
            f"no secret key for node {name!r} at {path} ({exc.strerror}); create one with: {fix}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret key %s is readable by others (mode %o); chmod 600 it", path, mode)
    public, secret = _parse_certificate(path)
    if secret is None:
        raise ConfigError(f"secret key file {path} has no secret-key entry")
    return KeyPair(public, secret)


class KeyStore:
    """One node's keys: its own keypair and the admitted public keys by name.

    Lookups are dict reads. A miss (unknown name or key) first calls
    `refresh`, which costs one ``stat`` unless the directory changed, so a
    key added while the node runs is found on its first handshake.
    """

    def __init__(self, directory: str | os.PathLike[str], node_name: str) -> None:
        self.directory = Path(directory)
        self.node_name = node_name
        pair = load_keypair(self.directory, node_name)
        self.public_key: str = pair.public
        self.secret_key: bytes = pair.secret.encode("ascii")
        self._public_dir = self.directory / PUBLIC_DIR
        self._by_name: dict[str, str] = {}
        self._by_key: dict[str, str] = {}
        self._files: dict[str, tuple[int, int, int, str | None]] = {}
        self._signature: tuple[int, int] | None = None
        self._settled = False
        self.refreshes = 0
        #: Grows by one each time the admitted keys change (watchers compare it).
        self.generation = 0
        if not self._public_dir.is_dir():
            raise ConfigError(f"no public key directory at {self._public_dir}")
        self.refresh(force=True)
        if self._by_name.get(node_name) != self.public_key:
            log.warning(
                "node %s's own public key is not in %s: peers will not admit it",
                node_name,
                self._public_dir,
            )

    def key_for(self, name: str) -> bytes | None:
        """The Z85 public key to use as CURVE_SERVERKEY when dialing `name`."""
        key = self._by_name.get(name)
        if key is None and self.refresh():
            key = self._by_name.get(name)
        return key.encode("ascii") if key is not None else None

    def name_for(self, public_key: str | bytes) -> str | None:
        """The node that owns `public_key` (Z85), or None if it is not admitted."""
        if isinstance(public_key, bytes):
            public_key = public_key.decode("ascii", "replace")
        name = self._by_key.get(public_key)
        if name is None and self.refresh():
            name = self._by_key.get(public_key)
        return name

    def check_claim(self, public_key: str | bytes | None, claimed_name: str) -> str | None:
        """Why a peer authenticated with `public_key` may not call itself `claimed_name`.

        Returns None when the key belongs to that name, else a reason fit for
        a REFUSE (the links refuse the HELLO of a node borrowing a name).
        """
        if public_key is None:
            return "no authenticated key (is CURVE off on one side?)"
        owner = self.name_for(public_key)
        if owner is None:
            return "key is not in the key directory"
        if owner != claimed_name:
            return f"key belongs to node {owner!r}, not {claimed_name!r}"
        return None

    def names(self) -> list[str]:
        """Every admitted node name, sorted."""
        return sorted(self._by_name)

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read public_keys/ if it changed; return True if the admitted keys changed.

        Cheap when nothing changed: one ``stat`` of the directory. Files whose
        (inode, size, mtime) are unchanged are not parsed again.
        """
        try:
            st = os.stat(self._public_dir)
        except OSError as exc:
            log.warning(
                "cannot read %s: %s; keeping the keys already loaded", self._public_dir, exc
            )
            return False
        signature = (st.st_mtime_ns, st.st_ino)
        if not force and self._settled and signature == self._signature:
            return False
        self._signature = signature
        self._settled = time.time_ns() - st.st_mtime_ns > _SETTLE_NS
        self.refreshes += 1
        return self._rescan()

    def _rescan(self) -> bool:
        files: dict[str, tuple[int, int, int, str | None]] = {}
        try:
            entries = list(os.scandir(self._public_dir))
        except OSError as exc:
            log.warning("cannot list %s: %s", self._public_dir, exc)
            return False
        for entry in entries:
            name = entry.name[: -len(_PUBLIC_SUFFIX)]
            if not entry.name.endswith(_PUBLIC_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                _check_name(name)
                st = entry.stat()
            except (ValueError, OSError):
                continue
            ident = (st.st_ino, st.st_size, st.st_mtime_ns)
            old = self._files.get(name)
            if old is not None and old[:3] == ident:
                files[name] = old
                continue
            try:
                key: str | None = _parse_certificate(Path(entry.path))[0]
            except ConfigError as exc:
                log.warning("ignoring public key file: %s", exc)
                key = None
            files[name] = (*ident, key)
        self._files = files
        by_name = {name: info[3] for name, info in files.items() if info[3] is not None}
        owners: dict[str, list[str]] = {}
        for name, key in by_name.items():
            owners.setdefault(key, []).append(name)
        by_key = {}
        for key, names in owners.items():
            if len(names) == 1:
                by_key[key] = names[0]
            else:
                log.error(
                    "one public key is listed for nodes %s; admitting none of them "
                    "until the duplicate is removed",
                    ", ".join(sorted(names)),
                )
        changed = by_name != self._by_name or by_key != self._by_key
        self._by_name, self._by_key = by_name, by_key
        if changed:
            self.generation += 1
        return changed


def _valid_name(name: str) -> None:
    try:
        _check_name(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _make_layout(root: Path) -> None:
    try:
        for path in (root, root / PUBLIC_DIR, root / PRIVATE_DIR):
            if not path.is_dir():
                path.mkdir(mode=0o700, parents=path == root)
                os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    except OSError as exc:
        raise ConfigError(
            f"cannot create key directory {exc.filename or root}: {exc.strerror}"
        ) from None


def _write_keypair(root: Path, name: str) -> KeyPair:
    import zmq  # here, not at import time: `partisan sim` never pays for zmq

    public_raw, secret_raw = zmq.curve_keypair()
    pair = KeyPair(public_raw.decode("ascii"), secret_raw.decode("ascii"))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    secret_text = _certificate(_SECRET_BANNER.format(now=now), pair.public, pair.secret)
    public_text = _certificate(_PUBLIC_BANNER.format(now=now), pair.public, None)
    # Secret first: a public key that is visible always has its secret beside it.
    _write_new(secret_key_path(root, name), secret_text)
    _write_new(public_key_path(root, name), public_text)
    return pair


def _certificate(banner: str, public: str, secret: str | None) -> str:
    lines = [banner + "metadata", "curve", f'    public-key = "{public}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str) -> None:
    """Write `text` to a new 0600 file at `path`, atomically, never replacing one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails with EEXIST instead of overwriting
    except FileExistsError:
        raise ConfigError(f"{path} already exists") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename or path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _parse_certificate(path: Path) -> tuple[str, str | None]:
    """Read (public, secret or None) Z85 keys from a pyzmq certificate file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    keys: dict[str, str] = {}
    for line in text.splitlines():
        key_name, sep, value = line.strip().partition("=")
        key_name = key_name.strip()
        if sep and key_name in ("public-key", "secret-key"):
            keys[key_name] = value.strip().strip('"')
    public = keys.get("public-key")
    if public is None or not _is_z85_key(public):
        raise ConfigError(f"key file {path} has no valid public-key entry")
    secret = keys.get("secret-key")
    if secret is not None and not _is_z85_key(secret):
        raise ConfigError(f"key file {path} has a malformed secret-key entry")
    return public, secret


_Z85_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)


def _is_z85_key(text: str) -> bool:
    return len(text) == 40 and _Z85_CHARS.issuperset(text)

"""One frozen `Config` for a node: defaults < TOML < ``PARTISAN_*`` env < keywords.

Keyword arguments are what CLI flags become. Every value is coerced from the
text forms a TOML file or an environment variable gives, then validated; a bad
value raises `ConfigError` naming the field, the value and what is allowed.
Durations are float seconds. Nested sections (``hyparview``, ``plumtree``) are
TOML tables, ``PARTISAN_HYPARVIEW__ACTIVE_SIZE`` in the environment, and dicts
(or the section dataclass) as keywords.

This module holds the dataclasses and their validation. Channel specs and
their text form live in `partisan.config_channels` (re-exported here), and
reading, coercing and merging the sources in `partisan.config_loading`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from partisan.config_channels import ChannelSpec, parse_channels
from partisan.config_loading import (
    ENV_PREFIX,
    _as_dict,
    _bad,
    _build,
    _coerce_section,
    _from_env,
    _merge,
    _read_toml,
)
from partisan.errors import ConfigError
from partisan.identity import _check_name

__all__ = [
    "MANAGERS",
    "ChannelSpec",
    "Config",
    "HyParViewConfig",
    "PlumtreeConfig",
    "parse_channels",
]

MANAGERS = ("full-mesh", "hyparview", "client-server", "static")
ROLES = ("server", "client")


@dataclass(frozen=True, slots=True)
class HyParViewConfig:
    """HyParView parameters; defaults are the paper's (Leitão et al., DSN 2007).

    Partisan's active_max_size of 6 counts the node itself; our `active_size`
    does not, so 5 here is the same overlay.
    """

    #: Peers in the active view (links kept open), self not counted.
    active_size: int = 5
    #: Below this many active peers the node promotes passive ones.
    active_min_size: int = 3
    #: Peers remembered in the passive view (not linked).
    passive_size: int = 30
    #: Active random walk length: hops a join's ForwardJoin travels.
    arwl: int = 6
    #: Passive random walk length: the hop at which a ForwardJoin adds to passive views.
    prwl: int = 3
    #: Active peers sent in a shuffle.
    shuffle_ka: int = 3
    #: Passive peers sent in a shuffle.
    shuffle_kp: int = 4
    #: Hops a shuffle request travels.
    shuffle_ttl: int = 6
    #: Seconds between shuffles.
    shuffle_interval: float = 10.0
    #: Seconds between attempts to fill the active view from the passive view.
    random_promotion_interval: float = 5.0
    #: Roles that each keep one reserved active-view slot.
    reservations: tuple[str, ...] = ()

    _positive: ClassVar[tuple[str, ...]] = (
        "active_size",
        "passive_size",
        "arwl",
        "shuffle_interval",
        "random_promotion_interval",
    )

    def __post_init__(self) -> None:
        _check_positive(self, self._positive, prefix="hyparview.")
        for name in ("active_min_size", "prwl", "shuffle_ka", "shuffle_kp", "shuffle_ttl"):
            if getattr(self, name) < 0:
                _bad(f"hyparview.{name}", getattr(self, name), "an integer >= 0")
        if self.active_min_size > self.active_size:
            _bad(
                "hyparview.active_min_size",
                self.active_min_size,
                f"<= active_size ({self.active_size})",
            )
        if self.prwl > self.arwl:
            _bad("hyparview.prwl", self.prwl, f"<= arwl ({self.arwl})")


@dataclass(frozen=True, slots=True)
class PlumtreeConfig:
    """Plumtree broadcast timers (seconds)."""

    #: Seconds between batches of lazy `IHave` announcements.
    lazy_tick: float = 1.0
    #: Seconds to wait for a missing message before grafting.
    graft_timeout: float = 0.5
    #: Seconds before a graft is retried with the next announcer.
    graft_timeout_retry: float = 0.25
    #: Seconds a broadcast id is remembered (duplicates within it are dropped).
    message_ttl: float = 60.0

    def __post_init__(self) -> None:
        _check_positive(self, tuple(f.name for f in dataclasses.fields(self)), prefix="plumtree.")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a node needs to start. Build it with `Config.load(...)`."""

    #: The node's name: letters, digits, `_`, `-`, `.`; peers know it as `name@host:port`.
    name: str = "node"
    #: The address to bind. `0.0.0.0` listens on every interface.
    host: str = "127.0.0.1"
    #: The address peers dial, when it differs from `host` (NAT, containers, `0.0.0.0`).
    advertise_host: str | None = None
    #: The port to listen on; 0 picks a free one (the ready line and `node.spec` tell which).
    port: int = 0
    #: The membership manager: `full-mesh`, `hyparview`, `client-server` or `static`.
    manager: str = "full-mesh"
    #: `server` or `client` under the client-server manager (unset means server).
    role: str | None = None
    #: Reserved: the node does not read it; give contacts with `--join` or `Node.join`.
    peers: tuple[str, ...] = ()
    #: A hidden node: it calls, casts, monitors and spawns but never enters a view.
    hidden: bool = False
    #: Extra channels, `name:lanes[:flag]` (`default` and `membership` always exist).
    channels: tuple[ChannelSpec, ...] = ()
    #: Lanes of the `default` channel.
    parallelism: int = 1
    #: Send on the `default` channel while a named channel's lane is still connecting.
    channel_fallback: bool = True
    #: Seconds between full-mesh membership gossip rounds.
    gossip_interval: float = 1.0
    #: Seconds between a manager's checks that every link it wants is up.
    connection_interval: float = 1.0
    #: Seconds between heartbeats on an idle link.
    heartbeat_interval: float = 0.5
    #: A peer silent this long is down (`NodeDown` reason `heartbeat_timeout`).
    heartbeat_timeout: float = 2.0
    #: First delay before ZeroMQ redials a dropped connection.
    reconnect_interval: float = 0.1
    #: Longest delay between redials (the backoff's cap).
    reconnect_interval_max: float = 2.0
    #: Seconds a join or an on-demand dial waits for the HELLO exchange.
    handshake_timeout: float = 5.0
    #: The default `timeout=` of `call` and the other operations that wait.
    call_timeout: float = 5.0
    #: Seconds a graceful stop may take to stop the tree and flush queues.
    shutdown_timeout: float = 5.0
    #: Bytes one node may have uncredited towards one peer on one channel (and, on an
    #: acked channel, unacknowledged).
    send_buffer_bytes: int = 64 * 1024 * 1024
    #: Bytes of peers' messages a node holds before its actors read them (all peers).
    inbound_buffer_bytes: int = 256 * 1024 * 1024
    #: Actor operations to a known node without a link dial one on demand (connect-on-use).
    connect_on_use: bool = True
    #: A link no membership view needs closes after this long without traffic.
    idle_link_timeout: float = 10.0
    #: Seconds before an acked message not yet acknowledged is first sent again.
    ack_interval: float = 0.2
    #: The longest wait between retransmissions (the interval doubles up to this).
    ack_interval_max: float = 2.0
    #: Seconds without any acknowledgement progress before an acked stream gives up.
    ack_timeout: float = 30.0
    #: Unacknowledged messages one node keeps per acked stream (peer, channel, lane); over it,
    #: `Overloaded` (the byte bound is `send_buffer_bytes`).
    ack_window: int = 16384
    #: Overlay hops a `transitive=True` message may take before it is dropped.
    relay_ttl: int = 6
    #: The largest frame accepted from a peer; a bigger one is dropped and counted.
    max_frame_bytes: int = 256 * 1024 * 1024
    #: The CURVE key directory (`public_keys/`, `private_keys/`).
    key_dir: str | None = None
    #: Seconds between re-reads of the key directory: a removed public key refuses new
    #: handshakes and closes that peer's live links (`NodeDown` reason `revoked`) within it.
    key_refresh_interval: float = 1.0
    #: Disable CURVE (loud warning); loopback binds only unless the next field is set.
    insecure: bool = False
    #: Allow an insecure node to bind a non-loopback address.
    allow_remote_insecure: bool = False
    #: Write this node's log to this file (the CLI's nodes do).
    log_file: str | None = None
    #: Append JSON-lines records of starts, peers and view changes here (partisan/eventlog.py).
    event_log: str | None = None
    #: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    log_level: str = "INFO"
    #: HyParView parameters (a TOML table `[hyparview]`).
    hyparview: HyParViewConfig = field(default_factory=HyParViewConfig)
    #: Plumtree broadcast timers (a TOML table `[plumtree]`).
    plumtree: PlumtreeConfig = field(default_factory=PlumtreeConfig)

    _positive: ClassVar[tuple[str, ...]] = (
        "parallelism",
        "gossip_interval",
        "connection_interval",
        "heartbeat_interval",
        "heartbeat_timeout",
        "reconnect_interval",
        "reconnect_interval_max",
        "handshake_timeout",
        "key_refresh_interval",
        "call_timeout",
        "shutdown_timeout",
        "send_buffer_bytes",
        "inbound_buffer_bytes",
        "idle_link_timeout",
        "ack_interval",
        "ack_interval_max",
        "ack_timeout",
        "ack_window",
        "relay_ttl",
        "max_frame_bytes",
    )

    def __post_init__(self) -> None:
        try:
            _check_name(self.name)
        except ValueError as exc:
            raise ConfigError(f"name: {exc}") from None
        if not 0 <= self.port <= 65535:
            _bad("port", self.port, "an integer in 0..65535 (0 picks a free port)")
        if self.manager not in MANAGERS:
            _bad("manager", self.manager, "one of " + ", ".join(MANAGERS))
        if self.role is not None and self.role not in ROLES:
            _bad("role", self.role, "one of server, client (or unset)")
        _check_positive(self, self._positive)
        if self.heartbeat_timeout <= self.heartbeat_interval:
            _bad(
                "heartbeat_timeout",
                self.heartbeat_timeout,
                f"greater than heartbeat_interval ({self.heartbeat_interval})",
            )
        if self.reconnect_interval_max < self.reconnect_interval:
            _bad(
                "reconnect_interval_max",
                self.reconnect_interval_max,
                f">= reconnect_interval ({self.reconnect_interval})",
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            _bad("log_level", self.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
        seen: set[str] = set()
        for spec in self.channels:
            if spec.parallelism < 1:
                _bad("channels", str(spec), "parallelism >= 1 for every channel")
            if spec.name in seen:
                _bad("channels", spec.name, "each channel name at most once")
            seen.add(spec.name)
        if self.insecure and not self.allow_remote_insecure and not _is_loopback(self.host):
            raise ConfigError(
                f"host: {self.host!r} is not a loopback address; an insecure node (--insecure) "
                "binds loopback only unless allow_remote_insecure is set (--allow-remote-insecure)"
            )

    # ------------------------------------------------------------------ views

    @property
    def advertised_host(self) -> str:
        """The host peers dial: `advertise_host`, else the bind host."""
        return self.advertise_host or self.host

    def all_channels(self) -> tuple[ChannelSpec, ...]:
        """Every channel the node may use: `default`, `membership` and `broadcast` always exist.

        Lanes open when first used (only `default` and `membership` at connect),
        so the `broadcast` channel costs no socket until something is broadcast.
        """
        by_name = {c.name: c for c in self.channels}
        default = by_name.pop("default", ChannelSpec("default", self.parallelism))
        membership = by_name.pop("membership", ChannelSpec("membership", 1))
        broadcast = by_name.pop("broadcast", ChannelSpec("broadcast", 1))
        return (default, membership, broadcast, *by_name.values())

    def channel(self, name: str) -> ChannelSpec | None:
        """The spec of channel `name`, or None if it is not configured."""
        for spec in self.all_channels():
            if spec.name == name:
                return spec
        return None

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied (coerced and validated like keywords)."""
        merged = _as_dict(self)
        _merge(merged, _coerce_section(Config, changes, "keyword", "", _SECTIONS))
        return _build(Config, merged, _SECTIONS)

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Config:
        """Merge defaults, the TOML file, the environment and `kwargs`, in that order.

        `config_file` defaults to ``$PARTISAN_CONFIG``. `env` defaults to
        ``os.environ``; pass ``{}`` to ignore the environment.
        """
        environ = os.environ if env is None else env
        sections = _SECTIONS if cls is Config else None  # nested tables are Config's
        merged: dict[str, Any] = {}
        path = config_file if config_file is not None else environ.get(ENV_PREFIX + "CONFIG")
        if path:
            raw = _read_toml(Path(path))
            _merge(merged, _coerce_section(cls, raw, f"config file {path}", "", sections))
        _merge(merged, _coerce_section(cls, _from_env(environ), "environment", "", sections))
        keywords = {k: v for k, v in kwargs.items() if v is not None}
        _merge(merged, _coerce_section(cls, keywords, "keyword", "", sections))
        return _build(cls, merged, _SECTIONS)


# ----------------------------------------------------------------- internals

_SECTIONS: dict[str, type] = {"hyparview": HyParViewConfig, "plumtree": PlumtreeConfig}


def _check_positive(obj: object, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            _bad(prefix + name, value, "a number > 0")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")

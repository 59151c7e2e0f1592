"""Channels: `ChannelSpec` (a name, its lanes and delivery flags) and its text form.

``"data:4,gossip:1:monotonic"`` is how channels are written in a TOML file,
``PARTISAN_CHANNELS`` or ``--channels``; `parse_channels` turns it into specs
and `str(spec)` gives it back. The transport (`Links`, `Endpoint`) and the
delivery layer read the specs; the config's loading coerces the text with
`parse_channels`. Kept apart from `partisan.config`, which re-exports both
names (import them from there), so that the loading code can use them
without importing the `Config` it builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from partisan.errors import ConfigError

__all__ = ["ChannelSpec", "parse_channels"]

_CHANNEL_FLAGS = ("monotonic", "acked", "causal")
_CHANNEL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A named channel with `parallelism` lanes and delivery flags.

    `monotonic` keeps only the newest message; `acked` retransmits until the
    receiving node acknowledges and delivers exactly once, in order per
    partition key; `causal` delivers a message only after every message that
    causally precedes it on the channel, and implies `acked`
    (docs/delivery.md).
    """

    name: str
    parallelism: int = 1
    monotonic: bool = False
    acked: bool = False
    causal: bool = False

    def __post_init__(self) -> None:
        if self.causal and not self.acked:
            object.__setattr__(self, "acked", True)  # causal implies acked
        if self.acked and self.monotonic:
            raise ConfigError(
                f"channels: {self.name!r} cannot be both monotonic and acked "
                "(monotonic drops older messages; acked delivers every one)"
            )

    @property
    def reliable(self) -> bool:
        """True when the delivery layer (acked or causal) carries this channel."""
        return self.acked

    def __str__(self) -> str:
        flags = [f for f in ("monotonic", "acked", "causal") if getattr(self, f)]
        if self.causal:
            flags.remove("acked")
        return ":".join([self.name, str(self.parallelism), *flags])


def parse_channels(text: str, *, field_name: str = "channels") -> tuple[ChannelSpec, ...]:
    """Parse ``"data:4,gossip:1:monotonic"`` into channel specs."""
    specs: list[ChannelSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        bits = item.split(":")
        name = bits[0]
        allowed = (
            "name[:parallelism][:flag...] with flags monotonic, acked, causal,"
            " e.g. 'data:4,gossip:1:monotonic,log:1:acked:causal'"
        )
        if not name or not set(name) <= _CHANNEL_NAME_CHARS:
            raise ConfigError(f"{field_name}: invalid channel {item!r}; expected {allowed}")
        parallelism = 1
        if len(bits) >= 2:
            try:
                parallelism = int(bits[1])
            except ValueError:
                raise ConfigError(
                    f"{field_name}: invalid parallelism {bits[1]!r} in {item!r}; expected {allowed}"
                ) from None
        flags = set()
        for flag in bits[2:]:
            if flag not in _CHANNEL_FLAGS or flag in flags:
                raise ConfigError(f"{field_name}: invalid flag {flag!r} in {item!r}; {allowed}")
            flags.add(flag)
        try:
            spec = ChannelSpec(
                name, parallelism, "monotonic" in flags, "acked" in flags, "causal" in flags
            )
        except ConfigError as exc:
            raise ConfigError(f"{field_name}: {item!r}: {exc}") from None
        specs.append(spec)
    return tuple(specs)

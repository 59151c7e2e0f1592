"""Client-server (star) membership: servers mesh with servers, clients talk to servers.

Theory of operation (after Partisan's client-server peer service manager)
--------------------------------------------------------------------------
A node's role is its spec's ``role``: ``"server"`` or ``"client"``; a node
without a role counts as a server (so a cluster started without roles is
simply a mesh of servers). Joins are explicit and symmetric, exactly as in
the static manager (`partisan.membership.static.DirectPeers`), with one rule
on top, Partisan's ``accept_join_with_tag``: a join between two clients is
refused, with the reason `CLIENT_CLIENT` (``"client-client join"``).

How a refusal is expressed:

* the joiner refuses locally when it already knows both roles:
  ``Join(contact)`` returns exactly ``[Disconnect(contact, REFUSED)]``;
* the contact refuses a `JoinRequest` (or `Refresh`) from a client when it is
  a client itself: ``[Send(joiner, JoinRefusal(reason)), Disconnect(joiner,
  REFUSED)]``; the joiner, on the `JoinRefusal`, drops the contact from its
  members and disconnects it with reason REFUSED.

The node layer turns either into ``JoinRefused(reason)`` at the caller;
`join_refusal` gives it the reason from two roles without a manager, so it can
also refuse at HELLO time.

A server answers an accepted join, and every (re)connection to a member, with
`ServerList`: every server it knows, itself included. When its set of servers
grows it sends the new list to all its members. A receiver joins each listed
server it did not know (unless it removed it). So a client that joins any one
server ends up connected to every server, and every server it reaches adds it:
a server's members are all nodes, a client's the servers plus itself
(Partisan test 29). Nothing else is gossiped (Partisan #33): clients never
hear of each other, and removals are not propagated (each node's leave
notices reach its own members).

Deviations from Partisan: its undefined-role nodes refuse nodes with a role;
here no role means server. `ServerList` is ours (Partisan relies on the
harness making every client join every server).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.static import DirectPeers, JoinRequest
from partisan.membership.types import Action, Connect, Event, Random, Send

__all__ = ["CLIENT_CLIENT", "ClientServer", "ServerList", "join_refusal", "role_of"]

logger = logging.getLogger(__name__)

#: The refusal reason for a client joining a client (and the JoinRefused text).
CLIENT_CLIENT = "client-client join"


def role_of(spec: NodeSpec) -> str:
    """The spec's role; a node without a role is a server."""
    return spec.role or "server"


def join_refusal(a_role: str | None, b_role: str | None) -> str | None:
    """Why nodes with these roles may not join each other, or None if they may."""
    roles = (a_role or "server", b_role or "server")
    for role in roles:
        if role not in ("server", "client"):
            return f"unknown role {role!r} (expected server or client)"
    if roles == ("client", "client"):
        return CLIENT_CLIENT
    return None


@dataclass(frozen=True, slots=True)
class ServerList:
    """A server's answer to an accepted join: the servers it knows, itself included."""

    servers: tuple[NodeSpec, ...]


class ClientServer(DirectPeers):
    """Client-server manager: static joins plus role rules and a server list."""

    name = "client-server"

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        super().__init__(self_spec, config, rng)
        self.role = role_of(self_spec)

    def refusal(self, peer: NodeSpec) -> str | None:
        """Refuse client-client joins (and unknown roles)."""
        return join_refusal(self.self_spec.role, peer.role)

    def servers(self) -> tuple[NodeSpec, ...]:
        """The servers this node knows, self included if it is one, sorted by name."""
        return tuple(s for s in self.members() if role_of(s) == "server")

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event; a server whose server set grew announces the new list."""
        before = self.servers()
        actions = super().handle(event, now)
        after = self.servers()
        if self.role != "server" or set(after) <= set(before):
            return actions
        told = {a.peer.name for a in actions if isinstance(a, Send) and a.msg == ServerList(after)}
        update = ServerList(after)
        return actions + [Send(p, update) for p in self.active() if p.name not in told]

    def _accepted(self, peer: NodeSpec) -> list[Action]:
        if self.role != "server":
            return []
        return [Send(peer, ServerList(self.servers()))]

    def _connected(self, peer: NodeSpec) -> list[Action]:
        # Covers a lost JoinRequest or ServerList: every (re)connection re-sends it.
        return self._accepted(peer)

    def _on_other_message(self, sender: NodeSpec, msg: object) -> list[Action]:
        if not isinstance(msg, ServerList):
            return super()._on_other_message(sender, msg)
        servers = getattr(msg, "servers", None)
        if not isinstance(servers, tuple) or not all(isinstance(s, NodeSpec) for s in servers):
            return self._reject(sender, "malformed ServerList")
        if self._left or sender.name not in self._members:
            return []  # an answer to a join we no longer stand by
        before = self.members()
        actions: list[Action] = []
        for spec in sorted(servers, key=lambda s: s.name):
            known = self._members.get(spec.name)
            if (
                spec.name == self.self_spec.name
                or (known is not None and known.incarnation >= spec.incarnation)
                or role_of(spec) != "server"
                or self._tombstoned(spec)
            ):
                continue
            # A new server, or a newer incarnation of one (it restarted).
            self._put(spec)
            actions += [Connect(spec), Send(spec, JoinRequest())]
        return actions + self._changed(before)

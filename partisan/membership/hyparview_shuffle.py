"""HyParView's shuffle: the periodic random walks that refresh passive views.

The third layer of `partisan.membership.hyparview` (views, then repair, then
this; the theory of operation is in hyparview.py). Every ``shuffle_interval``
a node sends itself plus ``shuffle_ka`` active and ``shuffle_kp`` passive
peers on a walk of ``shuffle_ttl`` hops over active links; the last node
answers the origin straight with as many of its passive ids, and both merge
what they got, evicting first the ids they sent. The same tick probes one
passive entry (`Repair._probe_passive`).

Speed: the shuffle walk is most of HyParView's traffic (one timer, up to six
hops and a reply per node per round: ~5M of the simulator's ~7M events at
n = 10,000), so its messages and `Send`s are built with `fast_send` /
`_walk` below, which skip the frozen dataclasses' per-field
``object.__setattr__`` (the same objects, about twice as fast to make).
"""

from __future__ import annotations

from typing import Any

from partisan.config import Config
from partisan.identity import NodeSpec
from partisan.membership.hyparview_messages import DisconnectNotice, Shuffle, ShuffleReply
from partisan.membership.hyparview_repair import Repair
from partisan.membership.types import Action, Random, Send

__all__ = ["Shuffling", "fast_send"]

_new = object.__new__
_send_peer = Send.__dict__["peer"].__set__
_send_msg = Send.__dict__["msg"].__set__
_send_channel = Send.__dict__["channel"].__set__
_shuffle_origin = Shuffle.__dict__["origin"].__set__
_shuffle_nodes = Shuffle.__dict__["nodes"].__set__
_shuffle_ttl = Shuffle.__dict__["ttl"].__set__


def fast_send(peer: NodeSpec, msg: Any) -> Send:
    """``Send(peer, msg)`` on the membership channel, built through its slots."""
    send = _new(Send)
    _send_peer(send, peer)
    _send_msg(send, msg)
    _send_channel(send, "membership")
    return send


def _walk(peer: NodeSpec, origin: NodeSpec, nodes: tuple[NodeSpec, ...], ttl: int) -> Send:
    """``Send(peer, Shuffle(origin, nodes, ttl))``, both built through their slots."""
    msg = _new(Shuffle)
    _shuffle_origin(msg, origin)
    _shuffle_nodes(msg, nodes)
    _shuffle_ttl(msg, ttl)
    send = _new(Send)
    _send_peer(send, peer)
    _send_msg(send, msg)
    _send_channel(send, "membership")
    return send


class Shuffling(Repair):
    """Views and repair plus the shuffle walks."""

    __slots__ = (
        "_ka",
        "_kp",
        "_sent_in_shuffle",
        "_shuffle_interval",
        "_shuffle_ttl",
    )

    def __init__(self, self_spec: NodeSpec, config: Config, rng: Random) -> None:
        super().__init__(self_spec, config, rng)
        hv = config.hyparview
        self._ka = hv.shuffle_ka
        self._kp = hv.shuffle_kp
        self._shuffle_ttl = hv.shuffle_ttl
        self._shuffle_interval = hv.shuffle_interval
        self._sent_in_shuffle: tuple[str, ...] = ()

    def _start_shuffle(self, out: list[Action]) -> None:
        if not self._active:
            return
        self._shuffles += 1
        active = list(self._active.values())
        target = active[int(self._rng.random() * len(active))]
        chosen = self._sample(active, self._ka) + self._sample(
            list(self._passive.values()), self._kp
        )
        self._sent_in_shuffle = tuple([p.name for p in chosen])
        me = self.self_spec
        out.append(_walk(target, me, (me, *chosen), self._shuffle_ttl))

    def _on_shuffle(self, sender: NodeSpec, msg: Shuffle, out: list[Action]) -> bool:
        """Pass the walk on, or end it; True when it was merely passed on."""
        active = self._active
        if sender.name not in active:
            self._probe_link(sender, out)
        origin = msg.origin
        if origin.name == self._me:
            return False
        ttl = msg.ttl
        if ttl > 0 and len(active) > 1:
            # `_hop`'s first draw inlined (the common case: it avoids both names)
            peers = self._active_cache
            if peers is None:
                peers = self.active()
            nodes = msg.nodes
            hop = peers[int(self._rng.random() * len(peers))]
            if hop.name != sender.name and hop.name != origin.name:
                out.append(_walk(hop, origin, nodes, ttl - 1))
                return True
            other = self._hop(sender.name, origin.name, tries=2)
            if other is not None:
                out.append(_walk(other, origin, nodes, ttl - 1))
                return True
        reply = self._sample(list(self._passive.values()), len(msg.nodes))
        out.append(fast_send(origin, ShuffleReply(tuple(reply))))
        self._merge(msg.nodes, [p.name for p in reply])
        return False

    def _on_shuffle_reply(self, sender: NodeSpec, msg: ShuffleReply, out: list[Action]) -> None:
        self._merge(msg.nodes, list(self._sent_in_shuffle))

    def _probe_link(self, sender: NodeSpec, out: list[Action]) -> None:
        """Answer a walk from a non-neighbor: its link to us is one-sided."""
        if sender.name not in self._active:
            self._probes += 1
            out.append(Send(sender, DisconnectNotice(sender.incarnation)))

"""A replicated counter: a grow-only counter CRDT on every node, gossiped to its peers.

Every node runs a `GCounter` GenServer (registered as ``counter``) that holds
one slot per writer: ``{"n2:<incarnation>": 5, "n3:<incarnation>": 7, ...}``.
An increment only ever touches the local node's own slot, the value is the
sum of the slots, and merging two states takes the larger count per slot.
Merge is commutative, associative and idempotent, so replicas that have
seen the same increments agree, whatever order and however often the states
travelled. Every ``GOSSIP_INTERVAL`` seconds each node pushes its state to
the peers it is connected to (under HyParView, its active view; they pass
it on), so no node needs a link to every other one.

Why a slot per *incarnation*, not per node name: a node killed with
``kill -9`` comes back empty. If it reused its old slot ``n2``, its first
increment would make ``n2: 1`` locally, and merging with a peer's ``n2: 5``
(max) would swallow that increment. With a fresh slot the restarted node
learns ``n2:<old>: 5`` from its peers and counts new increments on its own.
An increment is safe once it has been gossiped (one interval): one made on
a node that dies before its next gossip is lost with it.

Run it from this directory (nodes import this file from their working
directory, which is where ``up`` runs)::

    partisan cluster up -n 4 --dir /tmp/counter --run replicated_counter:main --detach
    python replicated_counter.py --dir /tmp/counter incr n2 5
    python replicated_counter.py --dir /tmp/counter incr n3 7
    python replicated_counter.py --dir /tmp/counter show
    partisan cluster kill n2 --dir /tmp/counter       # the daemon restarts it
    partisan cluster wait --dir /tmp/counter
    python replicated_counter.py --dir /tmp/counter show
    python replicated_counter.py --dir /tmp/counter incr n2 1
    python replicated_counter.py --dir /tmp/counter show --watch   # Ctrl-C to stop
    partisan cluster down --dir /tmp/counter

``show`` prints each node's value and its slots, e.g. ``n1:  12   n2#5125=5,
n3#0391=7`` (a slot is a node name and the last digits of its incarnation):
12 on every node after the two increments; right after the restart n2 shows
12 again (learned from its peers, under its old slot) and, after ``incr n2
1``, every node reaches 13 within a gossip interval or two, with a second n2
slot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import partisan
from partisan import From, GenServer, PartisanError

NAME = "counter"
#: Seconds between two pushes of a node's state to its peers.
GOSSIP_INTERVAL = 0.2


class GCounter(GenServer):
    """``call(("counter", node), request)``: ``("incr", n)`` -> new value; ``"value"``; ``"state"``.

    ``cast(("counter", node), ("merge", counts))`` merges a peer's state.
    """

    def init(self) -> None:
        me = partisan.self()
        self.slot = f"{me.node}:{me.incarnation}"
        self.counts: dict[str, int] = {}
        partisan.send_after(GOSSIP_INTERVAL, me, "gossip")

    def value(self) -> int:
        return sum(self.counts.values())

    def handle_call(self, request: Any, caller: From) -> Any:
        match request:
            case ("incr", int(amount)) if amount >= 0:  # grow-only: no decrements
                self.counts[self.slot] = self.counts.get(self.slot, 0) + amount
                return self.value()
            case "value":
                return self.value()
            case "state":
                return dict(self.counts)
        raise ValueError(f"unknown request {request!r}")

    def handle_cast(self, request: Any) -> None:
        match request:
            case ("merge", dict(counts)):
                for slot, count in counts.items():
                    if count > self.counts.get(slot, 0):
                        self.counts[slot] = count

    def handle_info(self, msg: Any) -> None:
        if msg == "gossip":
            state = ("merge", dict(self.counts))
            for peer in partisan.nodes():  # connected, non-hidden peers
                # A link going down or full: the next round sends the state again.
                with contextlib.suppress(PartisanError):
                    partisan.cast((NAME, peer), state)
            partisan.send_after(GOSSIP_INTERVAL, self.pid, "gossip")


async def main() -> None:
    """The ``--run`` entry point: start this node's replica."""
    await GCounter.start(name=NAME)


# --------------------------------------- the command line (python replicated_counter.py)


async def command(args: argparse.Namespace) -> None:
    from partisan.testing.cluster import connect

    async with connect(args.dir) as client:
        if args.command == "incr":
            value = await client.call((NAME, args.node), ("incr", args.amount))
            print(f"{args.node}: {value}")
            return
        while True:
            for node, entry in sorted(client.entries().items()):
                if entry.get("state") != "up":
                    print(f"{node}: {entry.get('state')}")
                    continue
                try:
                    value = await client.call((NAME, node), "value")
                    state = await client.call((NAME, node), "state")
                except PartisanError as exc:
                    print(f"{node}: unreachable ({type(exc).__name__})")
                    continue
                # A slot is NODE:INCARNATION; the incarnation's last digits tell lives apart.
                slots = ", ".join(
                    f"{slot.split(':')[0]}#{slot[-4:]}={n}" for slot, n in sorted(state.items())
                )
                print(f"{node}: {value:>6}   {slots}")
            if not args.watch:
                return
            print(flush=True)
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="increment and show the replicated counter")
    parser.add_argument("--dir", default=".partisan", help="the cluster's directory")
    sub = parser.add_subparsers(dest="command", required=True)
    incr = sub.add_parser("incr", help="add AMOUNT on NODE")
    incr.add_argument("node")
    incr.add_argument("amount", type=int, nargs="?", default=1)
    show = sub.add_parser("show", help="every node's value and slots")
    show.add_argument("--watch", action="store_true", help="print again every 0.5 s")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(command(arguments))

"""Traffic for ``make demo``: every node answers echo calls and keeps calling its peers.

Run on every node of a cluster with::

    partisan cluster up -n 8 --import examples.cluster_traffic --run examples.cluster_traffic:main

Each node registers an ``echo`` GenServer, then calls ``echo`` on a random
connected peer about 20 times a second. The live view's "msgs in/out" columns
show the traffic; a call to a node that just died fails at once with
``noconnection`` and the loop carries on with the peers that are left.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import partisan
from partisan import GenServer

#: Seconds between calls, per node.
PERIOD = 0.05


class Echo(GenServer):
    """Answers every call with its request."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        return request


async def main() -> None:
    """The node's entry point (``--run``): serve echo and call peers forever."""
    await Echo.start(name="echo")
    sent = 0
    while True:
        peers = partisan.nodes()
        if peers:
            peer = random.choice(peers)
            # A peer that died or does not serve echo yet: try another next time.
            with contextlib.suppress(partisan.PartisanError):
                await partisan.call(("echo", peer), sent, timeout=1.0)
            sent += 1
        await asyncio.sleep(PERIOD)

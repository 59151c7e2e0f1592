"""`make demo`: two node processes on loopback exchange messages on every channel.

Each node is a real OS process with its own CURVE keypair (created in a
temporary key directory); they join, then for ``DEMO_SECONDS`` (default 5)
both send a burst on every channel — ``default``, ``membership``, ``data``
(4 lanes) and ``gossip`` (monotonic: only the newest queued message per
destination is kept) — and the demo prints, once a second, what each node has
received and what its links report. Plain text, so it runs without a TTY.

Run it directly: ``DEMO_SECONDS=3 python examples/demo.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from partisan.testing import NodeProcess, wait_until
from partisan.transport.keys import create_keys

CHANNELS = "data:4,gossip:1:monotonic"
SENDS = {"default": 200, "membership": 20, "data": 400, "gossip": 50}


def _line(node: NodeProcess, peer: NodeProcess) -> str:
    counts = node.request("received")["counts"]
    got = ", ".join(f"{channel}={counts.get(f'{peer.name}/{channel}', 0)}" for channel in SENDS)
    stats = node.request("stats")["stats"]
    record = next((p for p in stats["peers"] if p["name"] == peer.name), None)
    link = (
        f"link up, {record['outstanding_bytes']} B in flight"
        if record and record["connected"]
        else "link down"
    )
    return f"  {node.name} received from {peer.name}: {got}  ({link})"


def main() -> int:
    seconds = float(os.environ.get("DEMO_SECONDS", "5"))
    with tempfile.TemporaryDirectory(prefix="partisan-demo-") as keys:
        create_keys(keys, ["alice", "bob"])
        print(f"keys for alice and bob in {keys} (CURVE on)")
        with (
            NodeProcess.start_scripted("alice", "--channels", CHANNELS, keys=keys) as alice,
            NodeProcess.start_scripted("bob", "--channels", CHANNELS, keys=keys) as bob,
        ):
            print(f"started {alice} and {bob}")
            peer = alice.request("connect", target=str(bob.spec))["peer"]
            print(f"alice joined {peer}")
            deadline = time.monotonic() + seconds
            second = 0
            while True:
                second += 1
                for sender, receiver in ((alice, bob), (bob, alice)):
                    for channel, count in SENDS.items():
                        sender.request(
                            "send", peer=receiver.name, channel=channel, count=count, tag=second
                        )
                print(f"t={second}s")
                print(_line(alice, bob))
                print(_line(bob, alice))
                sys.stdout.flush()
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            # Everything sent is delivered before we stop (nothing is dropped
            # silently); a monotonic channel may have replaced queued messages
            # by newer ones, so it only promises the newest.
            for node, other in ((alice, bob), (bob, alice)):
                expected = {
                    f"{other.name}/{ch}": n * second for ch, n in SENDS.items() if ch != "gossip"
                }
                wait_until(
                    lambda node=node, expected=expected: all(  # type: ignore[misc]
                        node.request("received")["counts"].get(k, 0) == v
                        for k, v in expected.items()
                    ),
                    10,
                    message=f"{node.name} to receive everything",
                )
            print("final:")
            print(_line(alice, bob))
            print(_line(bob, alice))
    print("both nodes stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fault injection costs nothing while unused: with no rule, the message path is the transport's own."""

from __future__ import annotations

import asyncio

import pytest

import partisan


@pytest.mark.timeout(20)
def test_unused_fault_injection_leaves_the_message_path_untouched() -> None:
    async def main() -> None:
        async with partisan.Node("a", insecure=True) as node:
            links, faults = node.links, node.faults
            send, send_wait, handler = links.send, links.send_wait, links.handler
            assert not faults.active
            rule = faults.drop("b", channel="log", probability=0.5)
            assert faults.active
            assert links.send is not send and links.handler is not handler  # wrapped
            faults.clear(rule)
            assert not faults.active
            assert links.send is send and links.send_wait == send_wait
            assert links.handler is handler
            faults.partition(["a"], ["b"])  # a partition is not on the path either
            assert not faults.active and links.send is send
            faults.heal()
            assert faults.statistics().refused == 0

    asyncio.run(main())

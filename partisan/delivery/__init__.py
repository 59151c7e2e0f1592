"""Delivery options above the transport: fault injection, acked and causal channels.

Layering (docs/design.md): `faults` wraps the transport's send and receive
paths while a fault is set; `acked` and `causal` sit above it, inside the
`Distribution`, so their retransmissions recover from injected drops.
"""

"""Functions the benchmarks run *on* a node (by `partisan.rpc`), in a module that imports nothing.

`rpc` pickles a function by reference, so the node imports the function's
module. A probe defined in `benchmarks/formation.py` made every node import
psutil and the cluster observer (about 1.3 MB of RSS each) before the
benchmark measured the nodes' memory.
"""

from __future__ import annotations


def auth_admitted() -> int:
    """CURVE handshakes this node's ZAP handler admitted."""
    from partisan.actors.process import current
    from partisan.node import node_of

    node = node_of(current().runtime)
    auth = getattr(node.links, "_auth", None) if node is not None else None
    return 0 if auth is None else int(auth.statistics().admitted)

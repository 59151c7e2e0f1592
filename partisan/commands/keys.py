"""``partisan keys new DIR [--node NAME ...]`` and ``partisan keys add DIR NAME``.

``new`` creates a key directory (public_keys/, private_keys/, mode 0700) and a
keypair per ``--node``; ``add`` adds one keypair to an existing directory.
Both print one line per created key, ``NAME<TAB>PUBLIC_KEY``, and refuse to
overwrite a key: a name that already has one, a bad name or a directory that
cannot be written is exit 1 with one line on stderr, and nothing is written.
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: `partisan --help` and `partisan sim` never
# import the key store (zmq). None closes an import cycle (tests/unit/test_imports.py).
import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``keys`` command and its ``new`` / ``add`` subcommands."""
    parser = subparsers.add_parser(
        "keys",
        help="create CURVE keys for nodes",
        description="Create per-node CURVE keypairs in pyzmq's certificate format.",
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    sub.required = True

    new = sub.add_parser(
        "new",
        help="create a key directory (and keys for --node names)",
        description="Create DIR/public_keys and DIR/private_keys (0700), and a keypair "
        "for each --node.",
    )
    new.add_argument("dir", metavar="DIR", help="key directory to create or extend")
    new.add_argument(
        "--node",
        dest="nodes",
        action="append",
        default=[],
        metavar="NAME",
        help="create a keypair for this node (repeatable)",
    )
    new.set_defaults(func=_new)

    add = sub.add_parser(
        "add",
        help="add a keypair for one node to an existing key directory",
        description="Add NAME's keypair to DIR; running nodes admit it without a restart.",
    )
    add.add_argument("dir", metavar="DIR", help="an existing key directory")
    add.add_argument("name", metavar="NAME", help="node name")
    add.set_defaults(func=_add)


def _new(args: argparse.Namespace) -> int:
    from partisan.transport.keys import create_keys

    pairs = create_keys(args.dir, args.nodes)
    for name, pair in pairs.items():
        print(f"{name}\t{pair.public}")
    return 0


def _add(args: argparse.Namespace) -> int:
    from partisan.transport.keys import add_key

    pair = add_key(args.dir, args.name)
    print(f"{args.name}\t{pair.public}")
    return 0

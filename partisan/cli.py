"""The ``partisan`` command: argparse front end; subcommands live in `partisan.commands`.

Each module listed in `COMMANDS` defines ``register(subparsers)``, which adds
its parser and sets ``func`` (taking the parsed args, returning an exit code).
Command modules import only argparse at top level; heavy imports (zmq, rich)
happen inside ``func`` so ``partisan sim --help`` stays fast.

Exit codes: 0 ok, 1 an operational error (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from partisan.errors import PartisanError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules, in help order. Later issues append to this list.
COMMANDS: list[str] = [
    "partisan.commands.cluster",
    "partisan.commands.node",
    "partisan.commands.keys",
    "partisan.commands.sim",
]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that says where to look, not a usage block then the error.

    Subcommand parsers inherit this class (argparse creates them with the
    parent's type), so every command answers a bad flag the same way.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser with every registered subcommand."""
    parser = _Parser(
        prog="partisan",
        description="Partisan for Python: clusters of actor nodes over ZeroMQ.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except PartisanError as exc:
        print(f"partisan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

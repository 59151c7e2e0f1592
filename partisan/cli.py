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

#: Subcommand modules, in help order. Later issues append to this list. A
#: module's last name is its command's name (``partisan.commands.node`` adds
#: ``partisan node``): `build_parser` relies on it to register only the
#: command being run.
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser: with every subcommand, or only with `command`'s if it names one.

    Registering one subcommand spares a ``partisan node start`` the other
    commands' imports and parsers (~5 ms of every node's start, paid 128
    times over when a large cluster starts on two cores). Anything else
    (``--help``, a misspelt command) gets the full parser, so help and
    "invalid choice" errors list every command.
    """
    modules = [m for m in COMMANDS if m.rpartition(".")[2] == command] or COMMANDS
    parser = _Parser(
        prog="partisan",
        description="Partisan for Python: clusters of actor nodes over ZeroMQ.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in modules:
        importlib.import_module(module_name).register(sub)
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    """The command `argv` runs: its first word that is not an option.

    None when top-level help is asked for first (``partisan --help node``
    lists every command). Top-level options take no value, so the first
    other word is the command.
    """
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_word(words))
    args = parser.parse_args(words)
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

"""``partisan node start NAME ...``: run one node process in the foreground.

The process binds (``--port 0`` picks a free port), prints exactly one JSON
*ready line* on stdout — ``{"name", "address", "incarnation", "public_key",
"pid"}`` — and serves until SIGTERM/SIGINT or until its stdin closes, so a
parent that dies (even by SIGKILL) never leaves it orphaned. Stdin is watched
only when it is a pipe or a socket: a node started from a terminal or with
``< /dev/null`` runs until it is signalled.

`serve` is the one function that runs a node; it takes a `Config` and the
peers to join. It runs a full `partisan.Node` (links + actor runtime): peers
can spawn actors in it, call its registered names and monitor them; it exits
0 on a graceful stop (actors stopped, queues flushed, sockets closed).
"""

from __future__ import annotations

# Imports inside functions here are lazy on purpose: `partisan --help` and `partisan sim` never
# import the node, zmq or the key store. None closes an import cycle (tests/unit/test_imports.py).
import argparse
import asyncio
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "add_node_arguments",
    "config_from_args",
    "join_with_retry",
    "ready_line",
    "register",
    "serve",
    "stop_signals",
    "usage_error",
]

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add ``node start`` to the CLI."""
    node = subparsers.add_parser("node", help="run a node process")
    sub = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    start = sub.add_parser(
        "start",
        help="start a node in the foreground; prints one JSON ready line",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_node_arguments(start)
    start.add_argument(
        "--join-timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="retry --join for up to S seconds (default 0: one try)",
    )
    start.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module of yours before serving (repeatable)",
    )
    start.add_argument(
        "--run",
        metavar="MODULE:FUNCTION",
        help="call this entry point once the node is ready (a coroutine runs as a task)",
    )
    start.set_defaults(func=_start)
    node.set_defaults(func=lambda args: node.print_help(sys.stderr) or 2)


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """The node options shared by ``node start`` and the test node."""
    parser.add_argument("name", help="node name (letters, digits, '_', '-', '.')")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--advertise-host", help="address peers dial (default: --host)")
    parser.add_argument("--port", type=int, help="listen port (default 0: any free port)")
    parser.add_argument(
        "--join", action="append", default=[], metavar="SPEC", help="name@host:port to join"
    )
    parser.add_argument("--manager", help="full-mesh, hyparview, client-server or static")
    parser.add_argument("--role", help="server or client (client-server manager)")
    parser.add_argument("--keys", dest="key_dir", help="CURVE key directory")
    parser.add_argument("--channels", help="e.g. data:4,gossip:1:monotonic")
    parser.add_argument("--parallelism", type=int, help="lanes of the default channel")
    parser.add_argument("--config", dest="config_file", help="TOML config file")
    parser.add_argument("--log-file", help="write this node's log here")
    parser.add_argument(
        "--event-log", metavar="FILE", help="append JSON-lines records of peer and view events"
    )
    parser.add_argument("--hidden", action="store_true", default=None, help="a hidden node")
    parser.add_argument("--insecure", action="store_true", default=None, help="no CURVE (loud)")
    parser.add_argument(
        "--allow-remote-insecure",
        action="store_true",
        default=None,
        help="allow --insecure on a non-loopback address",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other Config field, e.g. --set heartbeat_timeout=0.5 "
        "(a section's: --set hyparview.shuffle_interval=3)",
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """Build the node's `Config` from parsed arguments (flags beat TOML and environment)."""
    from partisan.config import Config
    from partisan.errors import ConfigError

    kwargs: dict[str, Any] = {
        "name": args.name,
        "host": args.host,
        "advertise_host": args.advertise_host,
        "port": args.port,
        "manager": args.manager,
        "role": args.role,
        "key_dir": args.key_dir,
        "channels": args.channels,
        "parallelism": args.parallelism,
        "log_file": args.log_file,
        "event_log": getattr(args, "event_log", None),
        "hidden": args.hidden,
        "insecure": args.insecure,
        "allow_remote_insecure": args.allow_remote_insecure,
    }
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        name = field.strip().replace("-", "_")
        section, dot, sub = name.partition(".")
        if dot:  # a section's field: --set hyparview.shuffle_interval=3
            kwargs.setdefault(section, {})[sub] = value
        else:
            kwargs[name] = value
    return Config.load(config_file=args.config_file, **kwargs)


def ready_line(spec: Any) -> str:
    """The one JSON line a node prints when it serves."""
    return json.dumps(
        {
            "name": spec.name,
            "address": spec.address,
            "incarnation": spec.incarnation,
            "public_key": spec.public_key,
            "pid": os.getpid(),
        }
    )


def configure_logging(config: Any) -> None:
    """Log to the node's own file when one is given (CONTRACT: a file per node).

    The handlers already installed (the CLI's stderr) keep the threshold the
    root logger had, so ``--log-file`` does not also pour INFO onto stderr.
    """
    if not config.log_file:
        return
    handler = logging.FileHandler(config.log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in root.handlers:
        if existing.level == logging.NOTSET:
            existing.setLevel(root.level)
    root.addHandler(handler)
    root.setLevel(config.log_level.upper())


def check_keys(config: Any) -> None:
    """Fail early, in CLI words, when the node's CURVE keys are missing.

    The library's own messages name Python keywords; a user of ``partisan
    node start`` needs the flag and a command that works as written.
    """
    from partisan.errors import ConfigError
    from partisan.transport.keys import PRIVATE_DIR, PUBLIC_DIR, secret_key_path

    if config.insecure:
        return
    name = config.name
    if config.key_dir is None:
        raise ConfigError(
            "no key directory: CURVE is on by default; create keys with "
            f"'partisan keys new DIR --node {name}' and pass --keys DIR, "
            "or pass --insecure (no encryption, loopback only)"
        )
    root = config.key_dir
    if not (
        os.path.isdir(os.path.join(root, PUBLIC_DIR))
        and os.path.isdir(os.path.join(root, PRIVATE_DIR))
    ):
        raise ConfigError(
            f"no key directory at {root}; create one with "
            f"'partisan keys new {root} --node {name}', or pass --insecure"
        )
    if not secret_key_path(root, name).exists():
        raise ConfigError(
            f"no secret key for node {name!r} in {root}; create one with "
            f"'partisan keys add {root} {name}'"
        )


def stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Callable[[], None]:
    """Set `stop` on SIGTERM, SIGINT or EOF of a piped stdin; return an undo function."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watched: list[int] = []
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        fd, mode = -1, 0
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):

        def on_stdin() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                stop.set()

        os.set_blocking(fd, False)
        loop.add_reader(fd, on_stdin)
        watched.append(fd)

    def undo() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for fd in watched:
            loop.remove_reader(fd)

    return undo


async def serve(
    config: Any,
    join: Sequence[str] = (),
    *,
    on_ready: Callable[[str], None] = lambda line: print(line, flush=True),
    join_timeout: float = 0.0,
    entry_point: tuple[str, Callable[[], Any]] | None = None,
) -> int:
    """Run a node until SIGTERM/SIGINT or stdin EOF; return the exit code.

    Prints the ready line through `on_ready` once the node listens and joined
    every `join` contact, then calls `entry_point` (``(label, fn)``, see
    `userapp.start_entry_point`). A contact that cannot be joined within
    `join_timeout` seconds (0: one try) stops the node and raises
    `PartisanError` ("could not join ..."): a node that was asked to join a
    cluster and serves alone would be a silent split.
    """
    from partisan.node import Node

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    undo = stop_signals(loop, stop)
    node = Node(config=config)
    task = None
    try:
        await node.start()
        for contact in join:
            await join_with_retry(node, contact, join_timeout)
        on_ready(ready_line(node.spec))
        if entry_point is not None:
            from partisan.commands.userapp import start_entry_point

            task = start_entry_point(entry_point[1], entry_point[0])
        await stop.wait()
    finally:
        undo()
        if task is not None and not task.done():
            task.cancel()
        await node.stop()
    return 0


async def join_with_retry(node: Any, contact: str, timeout: float) -> None:
    """Join `contact`, retrying (0.2 s backoff doubling to 1 s) until `timeout` s passed.

    Every attempt waits at most the remaining time. Raises `PartisanError`
    naming the contact and the last reason once the time is up (after one
    attempt when `timeout` is 0).
    """
    from partisan.errors import PartisanError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.2
    while True:
        remaining = deadline - loop.time()
        attempt = node.config.handshake_timeout
        if timeout > 0:
            attempt = max(0.1, min(attempt, remaining))
        try:
            await node.join(contact, timeout=attempt)
            return
        except PartisanError as exc:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PartisanError(f"could not join {contact}: {exc}") from None
            log.info("join of %s failed (%s); retrying for %.1f s more", contact, exc, remaining)
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 1.0)


def usage_error(message: str) -> int:
    """Print one argparse-style usage error line and return exit code 2."""
    print(f"partisan node start: error: {message}", file=sys.stderr)
    return 2


def _start(args: argparse.Namespace) -> int:
    from partisan.commands.userapp import import_modules, load_entry_point, parse_entry_point
    from partisan.identity import NodeSpec

    for contact in args.join:
        try:
            NodeSpec.parse(contact)
        except ValueError as exc:
            return usage_error(f"argument --join: {exc}")
    if args.join_timeout < 0:
        return usage_error(f"argument --join-timeout: {args.join_timeout} is negative")
    entry: tuple[str, str] | None = None
    if args.run is not None:
        try:
            entry = parse_entry_point(args.run)
        except ValueError as exc:
            return usage_error(f"argument --run: {exc}")
    config = config_from_args(args)
    check_keys(config)
    configure_logging(config)
    import_modules(args.imports)
    entry_point = None
    if entry is not None:
        entry_point = (args.run, load_entry_point(*entry))
    return asyncio.run(
        serve(config, args.join, join_timeout=args.join_timeout, entry_point=entry_point)
    )

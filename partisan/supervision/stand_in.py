"""A minimal node-process stand-in that honours the supervised-process protocol.

``python -m partisan.supervision.stand_in NAME [--port P] [--import zmq,dill]``
binds a TCP listener on 127.0.0.1 (port 0 picks a free one), prints ONE JSON
ready line on stdout (``name``, ``address``, ``incarnation``, ``os_pid``) and
then runs until its stdin closes or it gets SIGTERM — exactly the protocol of
``partisan node start`` (see docs/supervision.md). It exists so the process
supervisor can be tested and benchmarked without the networking stack, and so
users can rehearse a supervision setup. Options make it misbehave on purpose:
``--ignore-term`` ignores SIGTERM (it still exits when stdin closes, so it can
never be orphaned), ``--exit-after S --exit-code N`` exits by itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in; returns its exit code."""
    parser = argparse.ArgumentParser(prog="python -m partisan.supervision.stand_in")
    parser.add_argument("name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--import", dest="imports", default="", help="modules to import first")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=1)
    args = parser.parse_args(argv)

    for module in filter(None, (m.strip() for m in args.imports.split(","))):
        importlib.import_module(module)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        print(f"stand_in: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    listener.listen()
    port = listener.getsockname()[1]
    ready = {
        "name": args.name,
        "address": f"{args.host}:{port}",
        "incarnation": time.time_ns(),
        "os_pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()

    if args.exit_after is not None:
        code = args.exit_code
        timer = threading.Timer(args.exit_after, lambda: os._exit(code))
        timer.daemon = True
        timer.start()
    # Block until the supervisor's end of the pipe closes (EOF), whoever closed it.
    while os.read(0, 65536):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

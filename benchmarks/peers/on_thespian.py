"""The workloads on Thespian: the ``multiprocTCPBase`` system base, the actor in its own process.

Runs in Thespian's own virtualenv (``python -m benchmarks.peers.on_thespian
ADMIN_PORT``). The ActorSystem's admin listens on `ADMIN_PORT` (the
orchestrator picks a free one); ``ActorSystem().shutdown()`` ends the admin,
its logger and the actor, also on failure.

* call: ``asys.ask(actor, i)``, sequential;
* pipelined: 100 ``tell``s, then for each reply got by ``listen`` one new
  ``tell`` (replies come back to this external sender);
* casts: ``asys.tell(actor, payload)``, then an ``ask`` for the count at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from benchmarks.peers._common import PAYLOAD, WINDOW, Sizes, call_rows, emit, timed_calls

SIZES = Sizes(calls=2000, pipelined=10_000, casts=10_000)
TIMEOUT = 30.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("admin_port", type=int)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = SIZES.scaled(args.quick)

    from importlib.metadata import version

    from thespian.actors import ActorSystem

    asys = ActorSystem(
        "multiprocTCPBase",
        capabilities={"Admin Port": args.admin_port},
        logDefs={"version": 1, "root": {"level": logging.WARNING}},
    )
    try:
        actor = asys.createActor("benchmarks.peers._thespian_echo.Echo")
        actor_pid = asys.ask(actor, "pid", TIMEOUT)
        assert isinstance(actor_pid, int) and actor_pid != os.getpid(), actor_pid

        def call(i: int) -> int:
            return asys.ask(actor, i, TIMEOUT)

        timed_calls(call, 200)  # warm up
        results = call_rows(timed_calls(call, sizes.calls))

        started = time.perf_counter()
        for i in range(WINDOW):
            asys.tell(actor, i)
        for i in range(WINDOW, sizes.pipelined + WINDOW):
            reply = asys.listen(TIMEOUT)
            if not isinstance(reply, int):
                raise AssertionError(f"pipelined: no reply within {TIMEOUT} s ({reply!r})")
            if i < sizes.pipelined:
                asys.tell(actor, i)
        results["pipelined_calls_per_s"] = sizes.pipelined / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(sizes.casts):
            asys.tell(actor, PAYLOAD)
        received = asys.ask(actor, "count", 120)
        results["casts_per_s"] = sizes.casts / (time.perf_counter() - started)
        assert received == sizes.casts, received
        results["note"] = f"actor in pid {actor_pid}, external sender pid {os.getpid()}"
        emit("thespian", version("thespian"), sizes, results)
    finally:
        asys.shutdown()


if __name__ == "__main__":
    main()

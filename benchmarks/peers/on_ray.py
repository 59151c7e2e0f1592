"""The workloads on Ray: a local Ray cluster, the actor in a worker process.

Runs in Ray's own virtualenv (``python -m benchmarks.peers.on_ray TEMP_DIR``);
`TEMP_DIR` is Ray's session directory, so that the orchestrator can find and
end any Ray process left behind. `ray.init()` starts the cluster (GCS,
raylet, workers) owned by this driver; `ray.shutdown()` ends it.

* call: ``ray.get(actor.echo.remote(i))``, sequential;
* pipelined: a window of 100 ``echo`` refs, the oldest awaited with
  ``ray.get`` and a new one submitted per reply (a sync actor runs one
  caller's calls in order, so the oldest is always the next to finish);
* casts: ``actor.cast.remote(payload)`` without waiting for results, then
  ``ray.get(actor.count.remote())`` as the final ack.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

from benchmarks.peers._common import PAYLOAD, WINDOW, Sizes, call_rows, emit, timed_calls

SIZES = Sizes(calls=2000, pipelined=10_000, casts=20_000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("temp_dir")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = SIZES.scaled(args.quick)

    import ray

    @ray.remote
    class Echo:
        def __init__(self) -> None:
            self.casts = 0

        def pid(self) -> int:
            return os.getpid()

        def echo(self, x: int) -> int:
            return x

        def cast(self, payload: bytes) -> None:
            self.casts += 1

        def count(self) -> int:
            return self.casts

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=args.temp_dir,
    )
    try:
        actor = Echo.remote()
        actor_pid = ray.get(actor.pid.remote(), timeout=60)
        assert actor_pid != os.getpid()

        def call(i: int) -> int:
            return ray.get(actor.echo.remote(i), timeout=30)

        timed_calls(call, 200)  # warm up
        results = call_rows(timed_calls(call, sizes.calls))

        window: collections.deque = collections.deque(actor.echo.remote(i) for i in range(WINDOW))
        started = time.perf_counter()
        for i in range(WINDOW, sizes.pipelined + WINDOW):
            ray.get(window.popleft(), timeout=30)
            if i < sizes.pipelined:
                window.append(actor.echo.remote(i))
        results["pipelined_calls_per_s"] = sizes.pipelined / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(sizes.casts):
            actor.cast.remote(PAYLOAD)
        received = ray.get(actor.count.remote(), timeout=120)
        results["casts_per_s"] = sizes.casts / (time.perf_counter() - started)
        assert received == sizes.casts, received
        results["note"] = f"actor in worker pid {actor_pid}, driver pid {os.getpid()}"
        emit("ray", ray.__version__, sizes, results)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()

"""Local clusters of node processes: the state directory, the supervisor daemon, the observer.

The ``partisan cluster`` verbs (`partisan.commands.cluster`) and
`partisan.testing.Cluster` are built from these modules:

* `snapshot` — the immutable records every view renders (`NodeStatus`,
  `ClusterSnapshot`, `Health`) and their JSON (``status --json``);
* `health` — convergence and health, a pure function of node statuses;
* `graph`, `render` — DOT / JSON / text pictures and the rich live view, pure
  functions of a snapshot;
* `events` — reading and merging the per-node JSON-lines event logs;
* `probe` — the function each node runs (over `rpc`) to describe itself;
* `layout`, `daemon`, `control`, `observer` — files under DIR, the cluster
  supervisor process, its control socket, and the hidden node that polls.

Nothing here is imported by `import partisan`; the CLI imports it on demand.
"""

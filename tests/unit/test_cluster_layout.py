"""`ClusterDir` (paths, cluster.json, daemon liveness, cleanup) and `CliIdentity`.

A "daemon" here is a sleeping Python child whose command line carries the
daemon module name and the cluster directory, which is all `is_daemon`
looks at; a "stray node" likewise carries its name and the keys directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from partisan.cluster.layout import DAEMON_MODULE, DEFAULT_DIR, CliIdentity, ClusterDir
from partisan.errors import ClusterError
from partisan.transport.keys import add_key, create_keys, public_key_path, secret_key_path

pytestmark = pytest.mark.timeout(60)

#: Far above Linux's pid_max (4194304): no process can have it.
DEAD_PID = 999_999_999

#: A child process that only has to exist for a while.
STAND_IN = "import time; time.sleep(30)"  # ok-sleep: the stand-in process itself


@pytest.fixture
def cluster(tmp_path: Path) -> ClusterDir:
    cd = ClusterDir(tmp_path / "c")
    cd.make()
    return cd


def sleeper(*argv: str) -> subprocess.Popen[bytes]:
    """A child that sleeps with `argv` on its command line."""
    return subprocess.Popen([sys.executable, "-S", "-c", STAND_IN, *argv])


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def state(nodes: list[dict[str, object]] | None = None, **kw: object) -> dict[str, object]:
    return {"version": 1, "manager": "hyparview", "nodes": nodes or [], **kw}


# ------------------------------------------------------------------------ paths


def test_paths(tmp_path: Path) -> None:
    cd = ClusterDir(tmp_path)
    assert cd.root == tmp_path.resolve()
    assert cd.keys == cd.root / "keys"
    assert cd.logs == cd.root / "logs"
    assert cd.events == cd.root / "events"
    assert cd.state_file == cd.root / "cluster.json"
    assert cd.socket == cd.root / "supervisor.sock"
    assert cd.supervisor_log == cd.root / "logs" / "supervisor.log"
    assert cd.node_log("n3") == cd.root / "logs" / "n3.log"
    assert cd.event_log("n3") == cd.root / "events" / "n3.jsonl"


def test_root_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ClusterDir().root == tmp_path.resolve() / DEFAULT_DIR
    assert ClusterDir("x/../y").root == tmp_path.resolve() / "y"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ClusterDir("~/c").root == (tmp_path / "home" / "c").resolve()


def test_make_creates_the_directories_and_is_idempotent(tmp_path: Path) -> None:
    cd = ClusterDir(tmp_path / "a" / "b")
    cd.make()
    cd.make()
    assert cd.root.is_dir() and cd.logs.is_dir() and cd.events.is_dir()


# ------------------------------------------------------------------------ state


def test_read_state_without_a_file_is_none(cluster: ClusterDir) -> None:
    assert cluster.read_state() is None


def test_write_then_read_round_trips(cluster: ClusterDir) -> None:
    doc = state([{"name": "n1", "os_pid": 12, "state": "running"}], state="running")
    cluster.write_state(doc)
    assert cluster.read_state() == doc
    assert cluster.state_file.read_text().endswith("\n")
    doc2 = state(state="stopped")
    cluster.write_state(doc2)
    assert cluster.read_state() == doc2


def test_write_state_leaves_no_temporary_files(cluster: ClusterDir) -> None:
    for i in range(5):
        cluster.write_state(state(i=i))
    assert sorted(p.name for p in cluster.root.iterdir()) == ["cluster.json", "events", "logs"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(cluster: ClusterDir) -> None:
    cluster.write_state(state(state="running"))
    before = cluster.state_file.read_bytes()
    # json.dump streams: part of the document reaches the temporary file first.
    with pytest.raises(TypeError):
        cluster.write_state(state(state="running", bad=object()))
    assert cluster.state_file.read_bytes() == before
    assert sorted(p.name for p in cluster.root.iterdir()) == ["cluster.json", "events", "logs"]


def test_write_state_replaces_via_rename(
    cluster: ClusterDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is never written in place: a reader sees the old or the new document."""
    cluster.write_state(state(gen=1))
    seen: list[object] = []
    real_replace = os.replace

    def spy(src: str, dst: os.PathLike[str]) -> None:
        seen.append(cluster.read_state())  # the old document, intact, until the rename
        assert Path(src).parent == cluster.root
        assert json.loads(Path(src).read_text()) == state(gen=2)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    cluster.write_state(state(gen=2))
    assert seen == [state(gen=1)]
    assert cluster.read_state() == state(gen=2)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b'{"nodes": [1, 2]', "is not valid JSON"),
        (b"\xff\xfe\x00garbage\x81", "is not valid JSON"),
        (b'"a string"', "is not a cluster file"),
        (b"[1, 2]", "is not a cluster file"),
        (b'{"version": 1}', "is not a cluster file"),
        (b'{"nodes": {}}', "is not a cluster file"),
    ],
)
def test_unreadable_state_is_a_one_line_cluster_error(
    cluster: ClusterDir, content: bytes, says: str
) -> None:
    cluster.state_file.write_bytes(content)
    with pytest.raises(ClusterError) as info:
        cluster.read_state()
    message = str(info.value)
    assert "\n" not in message
    assert str(cluster.state_file) in message
    assert says in message
    assert info.value.__cause__ is None


def test_state_file_that_is_a_directory_is_a_cluster_error(cluster: ClusterDir) -> None:
    cluster.state_file.mkdir()
    with pytest.raises(ClusterError, match=r"cannot read .*cluster\.json"):
        cluster.read_state()


def test_require_state_on_an_empty_dir_says_how_to_start(tmp_path: Path) -> None:
    cd = ClusterDir(tmp_path)
    with pytest.raises(ClusterError) as info:
        cd.require_state()
    assert "partisan cluster up" in str(info.value)
    assert str(cd.root) in str(info.value)


def test_require_state_on_a_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="partisan cluster up"):
        ClusterDir(tmp_path / "nope").require_state()


def test_require_state_returns_the_document(cluster: ClusterDir) -> None:
    cluster.write_state(state(state="stopped"))
    assert cluster.require_state() == state(state="stopped")


# ----------------------------------------------------------------------- daemon


def test_daemon_alive_false_without_state(cluster: ClusterDir) -> None:
    assert not cluster.daemon_alive()


def test_daemon_alive_false_for_a_dead_pid(cluster: ClusterDir) -> None:
    cluster.write_state(state(state="running", supervisor_pid=DEAD_PID))
    assert not cluster.daemon_alive()
    with pytest.raises(ClusterError, match="not running"):
        cluster.require_running()


def test_daemon_alive_false_for_a_live_pid_that_is_not_a_daemon(cluster: ClusterDir) -> None:
    doc = state(state="running", supervisor_pid=os.getpid())
    assert not cluster.daemon_alive(doc)
    cluster.write_state(doc)
    assert not cluster.daemon_alive()
    with pytest.raises(ClusterError, match="partisan cluster up"):
        cluster.require_running()


@pytest.mark.parametrize("pid", [None, "123", 1.5, [1]])
def test_daemon_alive_false_for_a_bad_pid(cluster: ClusterDir, pid: object) -> None:
    assert not cluster.daemon_alive(state(state="running", supervisor_pid=pid))


def test_daemon_alive_for_a_daemon_of_this_dir_only(
    cluster: ClusterDir, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    ours = sleeper(DAEMON_MODULE, "--dir", str(cluster.root))
    other = sleeper(DAEMON_MODULE, "--dir", str(tmp_path / "other"))
    not_daemon = sleeper("--dir", str(cluster.root))
    spawn += [ours, other, not_daemon]
    running = state(state="running", supervisor_pid=ours.pid)
    assert cluster.daemon_alive(running)
    cluster.write_state(running)
    assert cluster.daemon_alive()
    assert cluster.require_running() == running
    # "stopped" wins even if the pid is still a daemon.
    assert not cluster.daemon_alive(dict(running, state="stopped"))
    assert not cluster.daemon_alive(dict(running, supervisor_pid=other.pid))
    assert not cluster.daemon_alive(dict(running, supervisor_pid=not_daemon.pid))
    ours.kill()
    ours.wait(timeout=10)
    assert not cluster.daemon_alive()


def test_a_zombie_daemon_is_not_alive(
    cluster: ClusterDir, spawn: list[subprocess.Popen[bytes]]
) -> None:
    proc = sleeper(DAEMON_MODULE, "--dir", str(cluster.root))
    spawn.append(proc)
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
    assert not cluster.daemon_alive(state(state="running", supervisor_pid=proc.pid))


def test_clean_dead_daemon_removes_the_socket_and_marks_stopped(cluster: ClusterDir) -> None:
    cluster.socket.write_text("")
    doc = state(
        [{"name": "n1", "os_pid": DEAD_PID}, {"name": "n2", "os_pid": None}],
        state="running",
        supervisor_pid=DEAD_PID,
    )
    cluster.write_state(doc)
    done = cluster.clean_dead_daemon(doc)
    assert not cluster.socket.exists()
    assert any("socket" in line for line in done)
    assert not any("killed" in line for line in done)
    after = cluster.read_state()
    assert after == dict(doc, state="stopped")
    assert doc["state"] == "running"  # the caller's dict is not modified
    # Idempotent: nothing left to do the second time.
    assert cluster.clean_dead_daemon(after) == []
    assert cluster.read_state() == after
    assert sorted(p.name for p in cluster.root.iterdir()) == ["cluster.json", "events", "logs"]


def test_clean_dead_daemon_kills_only_this_clusters_stray_nodes(
    cluster: ClusterDir, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]
) -> None:
    stray = sleeper("node", "start", "n1", "--keys", str(cluster.keys))
    foreign = sleeper("node", "start", "n2", "--keys", str(tmp_path / "other" / "keys"))
    wrong_name = sleeper("node", "start", "n9", "--keys", str(cluster.keys))
    spawn += [stray, foreign, wrong_name]
    doc = state(
        [
            {"name": "n1", "os_pid": stray.pid},
            {"name": "n2", "os_pid": foreign.pid},
            {"name": "n3", "os_pid": wrong_name.pid},
            {"name": "n4", "os_pid": os.getpid()},  # a reused pid: this test process
        ],
        state="running",
    )
    done = cluster.clean_dead_daemon(doc)
    assert done == [f"killed stray node n1 (os pid {stray.pid})"]
    assert stray.wait(timeout=10) == -9
    assert foreign.poll() is None
    assert wrong_name.poll() is None
    assert cluster.require_state()["state"] == "stopped"


# ------------------------------------------------------------------ CLI identity


def key_names(keys: Path) -> set[str]:
    return {p.name.split(".", 1)[0] for p in (keys / "public_keys").iterdir()}


def secret_names(keys: Path) -> set[str]:
    return {p.name.split(".", 1)[0] for p in (keys / "private_keys").iterdir()}


def test_cli_identity_creates_and_removes_its_key(cluster: ClusterDir) -> None:
    create_keys(cluster.keys, ["n1", "n2"])
    me = f"cli-{os.getpid()}"
    with CliIdentity(cluster) as ident:
        assert ident.name == me
        assert public_key_path(cluster.keys, me).is_file()
        assert secret_key_path(cluster.keys, me).is_file()
        assert key_names(cluster.keys) == {"n1", "n2", me}
    assert key_names(cluster.keys) == {"n1", "n2"}
    assert secret_names(cluster.keys) == {"n1", "n2"}
    # No temporary files left behind by the key writes.
    for sub in ("public_keys", "private_keys"):
        assert not [p for p in (cluster.keys / sub).iterdir() if p.name.startswith(".")]


def test_cli_identity_removes_its_key_on_error(cluster: ClusterDir) -> None:
    create_keys(cluster.keys, ["n1"])
    with pytest.raises(RuntimeError), CliIdentity(cluster):
        raise RuntimeError("boom")
    assert key_names(cluster.keys) == {"n1"}


def test_cli_identity_replaces_a_key_left_under_its_own_pid(cluster: ClusterDir) -> None:
    create_keys(cluster.keys, ["n1"])
    me = f"cli-{os.getpid()}"
    old = add_key(cluster.keys, me)
    with CliIdentity(cluster):
        text = public_key_path(cluster.keys, me).read_text()
        assert old.public not in text
    assert key_names(cluster.keys) == {"n1"}


def test_cli_identity_removes_stale_cli_keys_only(
    cluster: ClusterDir, spawn: list[subprocess.Popen[bytes]]
) -> None:
    live = sleeper()
    spawn.append(live)
    create_keys(cluster.keys, ["n1", "n2", "client"])
    add_key(cluster.keys, f"cli-{DEAD_PID}")
    add_key(cluster.keys, f"cli-{live.pid}")
    add_key(cluster.keys, "cli-notapid")
    with CliIdentity(cluster) as ident:
        expected = {"n1", "n2", "client", f"cli-{live.pid}", "cli-notapid", ident.name}
        assert key_names(cluster.keys) == expected
        assert secret_names(cluster.keys) == expected
    assert f"cli-{DEAD_PID}" not in secret_names(cluster.keys)
    assert key_names(cluster.keys) == {"n1", "n2", "client", f"cli-{live.pid}", "cli-notapid"}


def test_two_identities_in_sequence(cluster: ClusterDir) -> None:
    create_keys(cluster.keys, ["n1"])
    for _ in range(2):
        with CliIdentity(cluster):
            pass
    assert key_names(cluster.keys) == {"n1"}

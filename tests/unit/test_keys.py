"""Key directories: layout, permissions, pyzmq compatibility, KeyStore lookups, the CLI."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
import zmq.auth

from partisan.cli import main
from partisan.errors import ConfigError
from partisan.transport import keys as keys_module
from partisan.transport.keys import (
    KeyStore,
    add_key,
    create_keys,
    load_keypair,
    public_key_path,
    secret_key_path,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_permissions(tmp_path: Path) -> None:
    root = tmp_path / "keys"
    old_umask = os.umask(0o022)  # a permissive umask must not loosen anything
    try:
        pairs = create_keys(root, ["a", "b"])
    finally:
        os.umask(old_umask)
    assert set(pairs) == {"a", "b"}
    for directory in (root, root / "public_keys", root / "private_keys"):
        assert mode(directory) == 0o700, directory
    assert sorted(p.name for p in (root / "public_keys").iterdir()) == ["a.key", "b.key"]
    assert sorted(p.name for p in (root / "private_keys").iterdir()) == [
        "a.key_secret",
        "b.key_secret",
    ]
    for name in ("a", "b"):
        assert mode(public_key_path(root, name)) == 0o600
        assert mode(secret_key_path(root, name)) == 0o600
    assert pairs["a"].public != pairs["b"].public


def test_pyzmq_loads_our_certificates(tmp_path: Path) -> None:
    pair = create_keys(tmp_path, ["n1"])["n1"]
    public, secret = zmq.auth.load_certificate(secret_key_path(tmp_path, "n1"))
    assert (public, secret) == (pair.public.encode(), pair.secret.encode())
    public_only, none = zmq.auth.load_certificate(public_key_path(tmp_path, "n1"))
    assert (public_only, none) == (pair.public.encode(), None)
    # The pair is a real CURVE keypair: the public key derives from the secret.
    assert zmq.curve_public(secret) == public
    assert "secret-key" not in public_key_path(tmp_path, "n1").read_text()


def test_keys_we_did_not_write_are_read_too(tmp_path: Path) -> None:
    # pyzmq's own generator, with files copied into our layout.
    create_keys(tmp_path, [])
    made_public, made_secret = zmq.auth.create_certificates(tmp_path, "x")
    os.rename(made_public, public_key_path(tmp_path, "x"))
    os.rename(made_secret, secret_key_path(tmp_path, "x"))
    store = KeyStore(tmp_path, "x")
    assert store.name_for(store.public_key) == "x"
    assert store.key_for("x") == store.public_key.encode()


def test_existing_key_is_never_overwritten_and_nothing_is_half_written(tmp_path: Path) -> None:
    first = create_keys(tmp_path, ["a"])["a"]
    with pytest.raises(ConfigError, match="a key for node 'a' already exists"):
        create_keys(tmp_path, ["c", "a"])
    assert load_keypair(tmp_path, "a") == first
    assert not public_key_path(tmp_path, "c").exists(), "a failed batch writes nothing"
    with pytest.raises(ConfigError, match="already exists"):
        add_key(tmp_path, "a")


@pytest.mark.parametrize("name", ["", "a/b", "../x", "a b", "x" * 129, "é"])
def test_bad_names_are_config_errors(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid node name"):
        create_keys(tmp_path, ["ok", name])
    assert not (tmp_path / "public_keys").exists()


def test_duplicate_names_in_one_call(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="given twice"):
        create_keys(tmp_path, ["a", "a"])


def test_unwritable_location_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot create key directory"):
        create_keys(blocker / "keys", ["a"])


def test_add_needs_an_existing_key_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="partisan keys new"):
        add_key(tmp_path / "missing", "a")
    create_keys(tmp_path, [])
    pair = add_key(tmp_path, "late")
    assert load_keypair(tmp_path, "late") == pair


def test_keystore_lookups(tmp_path: Path) -> None:
    pairs = create_keys(tmp_path, ["a", "b"])
    store = KeyStore(tmp_path, "a")
    assert store.public_key == pairs["a"].public
    assert store.secret_key == pairs["a"].secret.encode()
    assert store.key_for("b") == pairs["b"].public.encode()
    assert store.key_for("nobody") is None
    assert store.name_for(pairs["b"].public) == "b"
    assert store.name_for(pairs["b"].public.encode()) == "b"
    assert store.name_for("x" * 40) is None
    assert store.names() == ["a", "b"]


def test_check_claim(tmp_path: Path) -> None:
    pairs = create_keys(tmp_path, ["a", "b"])
    store = KeyStore(tmp_path, "a")
    assert store.check_claim(pairs["b"].public, "b") is None
    assert store.check_claim(pairs["b"].public, "a") == "key belongs to node 'b', not 'a'"
    assert store.check_claim("y" * 40, "b") == "key is not in the key directory"
    assert "no authenticated key" in str(store.check_claim(None, "b"))


def test_missing_own_key_is_a_clear_config_error(tmp_path: Path) -> None:
    create_keys(tmp_path, ["a"])
    with pytest.raises(ConfigError, match=r"no secret key for node 'b'.*partisan keys add"):
        KeyStore(tmp_path, "b")
    with pytest.raises(ConfigError, match="no secret key"):
        KeyStore(tmp_path / "elsewhere", "a")


def test_malformed_own_key_is_a_config_error(tmp_path: Path) -> None:
    create_keys(tmp_path, ["a"])
    path = secret_key_path(tmp_path, "a")
    path.write_text(path.read_text().replace("secret-key", "secret-kex"))
    with pytest.raises(ConfigError, match="no secret-key entry"):
        KeyStore(tmp_path, "a")
    path.write_text("garbage")
    with pytest.raises(ConfigError, match="no valid public-key"):
        KeyStore(tmp_path, "a")


def test_refresh_picks_up_added_and_removed_keys(tmp_path: Path) -> None:
    create_keys(tmp_path, ["a"])
    store = KeyStore(tmp_path, "a")
    assert store.refresh() is False  # rescanned or not, nothing changed
    late = add_key(tmp_path, "late")
    # Found on first use: a miss refreshes the store.
    assert store.name_for(late.public) == "late"
    assert store.key_for("late") == late.public.encode()
    public_key_path(tmp_path, "late").unlink()
    assert store.refresh() is True
    assert store.name_for(late.public) is None


def test_refresh_is_a_single_stat_once_the_directory_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_keys(tmp_path, ["a", "b"])
    old = 1_000_000_000  # an mtime long ago: the directory has settled
    os.utime(tmp_path / "public_keys", ns=(old, old))
    store = KeyStore(tmp_path, "a")
    scans = store.refreshes
    assert store.refresh() is False
    assert store.name_for("z" * 40) is None  # a miss checks, but does not rescan
    assert store.refreshes == scans
    # Any change to the directory (here: its mtime) triggers a rescan.
    os.utime(tmp_path / "public_keys", ns=(old + 1, old + 1))
    assert store.refresh() is False  # rescanned, same keys
    assert store.refreshes == scans + 1


def test_unparsable_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    pairs = create_keys(tmp_path, ["a"])
    public_dir = tmp_path / "public_keys"
    (public_dir / "broken.key").write_text("not a certificate")
    (public_dir / "README").write_text("hello")
    (public_dir / ".hidden.key").write_text(public_key_path(tmp_path, "a").read_text())
    store = KeyStore(tmp_path, "a")
    assert store.names() == ["a"]
    assert store.name_for(pairs["a"].public) == "a"


def test_a_key_listed_under_two_names_is_admitted_under_neither(tmp_path: Path) -> None:
    pairs = create_keys(tmp_path, ["a", "b"])
    copy = public_key_path(tmp_path, "b").read_text()
    (tmp_path / "public_keys" / "impostor.key").write_text(copy)
    store = KeyStore(tmp_path, "a")
    assert store.name_for(pairs["b"].public) is None
    assert store.name_for(pairs["a"].public) == "a"


def test_secret_key_readable_by_others_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    create_keys(tmp_path, ["a"])
    os.chmod(secret_key_path(tmp_path, "a"), 0o644)
    KeyStore(tmp_path, "a")
    assert "readable by others" in caplog.text


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    create_keys(tmp_path, ["a", "b", "c"])
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert keys_module.PUBLIC_DIR == "public_keys"


# --- CLI -------------------------------------------------------------------------------------


def test_cli_new_and_add(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "k"
    assert main(["keys", "new", str(root), "--node", "n1", "--node", "n2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["n1", "n2"]
    assert lines[0].split("\t")[1] == load_keypair(root, "n1").public
    assert main(["keys", "add", str(root), "n3"]) == 0
    assert capsys.readouterr().out.startswith("n3\t")
    assert KeyStore(root, "n1").names() == ["n1", "n2", "n3"]
    assert main(["keys", "new", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "public_keys").is_dir()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "add", "{root}", "n1"], "a key for node 'n1' already exists"),
        (["keys", "new", "{root}", "--node", "n1"], "a key for node 'n1' already exists"),
        (["keys", "add", "{root}", "bad/name"], "invalid node name 'bad/name'"),
        (["keys", "add", "{root}/missing", "n9"], "no key directory at"),
        (["keys", "new", "{root}/public_keys/n1.key/x", "--node", "a"], "cannot create key"),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    root = tmp_path / "k"
    create_keys(root, ["n1"])
    capsys.readouterr()
    assert main([a.format(root=root) for a in argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("partisan: error: ")
    assert message in captured.err


def test_cli_usage_error_is_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "add", str(tmp_path)])
    assert info.value.code == 2


@pytest.mark.timeout(60)
def test_console_script_exit_codes(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "partisan", "keys", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    ok = run("new", str(tmp_path / "k"), "--node", "a")
    assert ok.returncode == 0, ok.stderr
    again = run("add", str(tmp_path / "k"), "a")
    assert again.returncode == 1
    assert again.stderr.strip().startswith("partisan: error: a key for node 'a' already exists")

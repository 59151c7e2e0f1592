from __future__ import annotations

import pickle

import pytest

from partisan.identity import NodeSpec, Pid, parse_address


def test_nodespec_string_form_and_parse_round_trip() -> None:
    spec = NodeSpec("n1", "127.0.0.1", 9100, incarnation=7)
    assert str(spec) == "n1@127.0.0.1:9100"
    assert NodeSpec.parse("n1@127.0.0.1:9100", incarnation=7) == spec
    assert spec.endpoint == "tcp://127.0.0.1:9100"


def test_nodespec_equality_ignores_key_and_role_but_not_incarnation() -> None:
    a = NodeSpec("a", "h", 1, public_key="k1", role="server", incarnation=1)
    assert a == NodeSpec("a", "h", 1, public_key="k2", role=None, incarnation=1)
    later = NodeSpec("a", "h", 1, incarnation=2)
    assert a != later
    assert later.newer_than(a) and not a.newer_than(later)


@pytest.mark.parametrize("bad", ["", "a b", "x" * 200, "a/b"])
def test_nodespec_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid node name"):
        NodeSpec(bad, "h", 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [("n1@host", "expected name@host:port"), ("n1@h:x", "not an integer"), ("h:70000", "outside")],
)
def test_parse_address_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_address(text)


def test_parse_address_ipv6_and_bare() -> None:
    assert parse_address("[::1]:5") == (None, "::1", 5)
    assert NodeSpec("a", "::1", 5).address == "[::1]:5"


def test_pid_round_trip_hash_and_pickle() -> None:
    pid = Pid("node-1.a", 1700000000000000000, 42)
    assert str(pid) == "partisan:pid:node-1.a:1700000000000000000:42"
    assert Pid.parse(str(pid)) == pid
    assert pickle.loads(pickle.dumps(pid)) == pid
    assert {pid: 1}[Pid("node-1.a", 1700000000000000000, 42)] == 1


@pytest.mark.parametrize("bad", ["pid:a:1:2", "partisan:pid:a:1", "partisan:pid:a:x:2"])
def test_pid_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid pid"):
        Pid.parse(bad)

"""The OTP restart rules, with the time handed in (no clock, no processes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partisan.supervision.policy import (
    BRUTAL_KILL,
    INFINITY,
    PERMANENT,
    TEMPORARY,
    TRANSIENT,
    RestartIntensity,
    check_shutdown,
    is_normal_exit,
    should_restart,
)
from partisan.supervision.process_spec import exit_reason, parse_ready_line, ready_port


def test_default_intensity_is_one_restart_in_five_seconds() -> None:
    rule = RestartIntensity()
    assert (rule.intensity, rule.period) == (1, 5.0)
    assert rule.add(100.0) is True  # first crash: restarted
    assert rule.add(104.9) is False  # second within 5 s: give up


def test_restarts_older_than_the_period_are_forgotten() -> None:
    rule = RestartIntensity(2, 10.0)
    assert rule.add(0.0) and rule.add(5.0)
    assert rule.add(10.0) is False  # 0, 5, 10: three within 10 s (OTP counts now - t <= period)
    rule = RestartIntensity(2, 10.0)
    assert rule.add(0.0) and rule.add(5.0)
    assert rule.add(10.5) is True  # the crash at 0 left the window
    assert rule.recent(10.5) == 2


def test_intensity_zero_never_restarts() -> None:
    assert RestartIntensity(0, 1.0).add(0.0) is False


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_intensity_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="intensity"):
        RestartIntensity(bad, 5.0)  # type: ignore[arg-type]


def test_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="period"):
        RestartIntensity(1, 0)


@pytest.mark.parametrize(
    ("restart", "reason", "expected"),
    [
        (PERMANENT, "normal", True),
        (PERMANENT, "boom", True),
        (TRANSIENT, "normal", False),
        (TRANSIENT, "shutdown", False),
        (TRANSIENT, ("shutdown", "bye"), False),
        (TRANSIENT, "noconnection", True),
        (TRANSIENT, "killed", True),
        (TEMPORARY, "boom", False),
        (TEMPORARY, "normal", False),
    ],
)
def test_restart_types(restart: object, reason: object, expected: bool) -> None:
    assert should_restart(restart, reason) is expected  # type: ignore[arg-type]


def test_normal_exits() -> None:
    assert is_normal_exit("normal") and is_normal_exit(("shutdown", 1))
    assert not is_normal_exit("kill") and not is_normal_exit(("other", 1))


def test_shutdown_values() -> None:
    assert check_shutdown(2) == 2.0
    assert check_shutdown(BRUTAL_KILL) is BRUTAL_KILL
    assert check_shutdown(INFINITY) is INFINITY
    for bad in (-0.1, "5", None, True):
        with pytest.raises(ValueError, match="shutdown"):
            check_shutdown(bad)


def test_ready_lines() -> None:
    line = b'{"name": "n1", "address": "127.0.0.1:9101", "incarnation": 5}\n'
    ready = parse_ready_line(line)
    assert ready is not None and ready_port(ready) == 9101
    assert ready_port({"address": "[::1]:7000"}) == 7000
    assert ready_port({"port": 42, "address": "x:1"}) == 42
    assert parse_ready_line("starting up...") is None
    assert parse_ready_line("{not json") is None
    assert parse_ready_line('{"name": "n1"}') is None  # no address: not a ready line
    assert parse_ready_line("[1, 2]") is None


def test_exit_reasons() -> None:
    assert exit_reason(0) == "normal"
    assert exit_reason(3) == "exit code 3"
    assert exit_reason(-9) == "killed by SIGKILL"


@settings(max_examples=200, deadline=None)
@given(
    intensity=st.integers(0, 4),
    period=st.floats(0.5, 20.0),
    gaps=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=30),
)
def test_intensity_matches_the_otp_definition(
    intensity: int, period: float, gaps: list[float]
) -> None:
    """add(now) is False exactly when more than `intensity` restarts fall in [now - period, now]."""
    rule = RestartIntensity(intensity, period)
    now, seen = 0.0, []
    for gap in gaps:
        now += gap
        seen.append(now)
        in_window = sum(1 for t in seen if now - t <= period)
        assert rule.add(now) is (in_window <= intensity)

"""Errors a user can act on: the right `PartisanError` subclass, one line, the thing named.

Each case is what a user hits first with the module API; the message must
say what failed and name the object, target, address or fix, in one line,
without a chained traceback for an expected failure.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from _actor_support import async_test, nodes

import partisan
from partisan import GenServer, NoReply
from partisan.transport.keys import create_keys, load_keypair


class Echo(GenServer):
    def handle_call(self, request: Any, caller: partisan.From) -> Any:
        return NoReply if request == "never" else request


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    return text


@pytest.mark.timeout(10)
@async_test
async def test_an_unpicklable_message_names_the_part_and_where_it_sits() -> None:
    async with nodes("a", "b"):
        echo = await Echo.start(node="b")
        with pytest.raises(partisan.EncodeError) as info:
            partisan.send(echo, {"job": (1, (x for x in []))})
        text = one_line(info.value)
        assert "['job'][1] is a generator" in text and "cannot send a dict" in text
        assert isinstance(info.value, TypeError)  # misuse, too


@pytest.mark.timeout(10)
@async_test
async def test_a_taken_name_answers_already_started_with_the_holder() -> None:
    async with nodes("a", "b"):
        local = await Echo.start(name="echo")
        with pytest.raises(partisan.AlreadyStarted) as info:
            await Echo.start(name="echo")
        assert info.value.pid == local and "'echo'" in one_line(info.value)
        remote = await Echo.start(name="echo", node="b")
        with pytest.raises(partisan.AlreadyStarted) as info:
            await Echo.start(name="echo", node="b")
        assert info.value.pid == remote and info.value.name == "echo"


@pytest.mark.timeout(10)
@async_test
async def test_noproc_names_the_target() -> None:
    async with nodes("a", "b"):
        with pytest.raises(partisan.CallExit) as info:
            await partisan.call(("nothere", "b"), 1)
        assert one_line(info.value) == "call to 'nothere' on node 'b' exited: 'noproc'"
        with pytest.raises(partisan.CallExit) as info:
            await partisan.call("nothere", 1)
        assert one_line(info.value) == "call to 'nothere' exited: 'noproc'"


@pytest.mark.timeout(10)
@async_test
async def test_a_bad_timeout_is_a_type_error_at_the_call_site() -> None:
    async with nodes("a"):
        echo = await Echo.start()
        cases = {
            "call": lambda: partisan.call(echo, 1, timeout="soon"),
            "receive": lambda: partisan.receive(timeout="soon"),
            "spawn": lambda: partisan.spawn(Echo, timeout="soon"),
            "rpc": lambda: partisan.rpc("a", len, "x", timeout="soon"),
            "ping": lambda: partisan.ping(echo, timeout="soon"),
            "send": lambda: partisan.send(echo, 1, wait=True, timeout="soon"),
        }
        for what, make in cases.items():
            with pytest.raises(TypeError) as info:
                await make()
            assert one_line(info.value) == (
                f"{what}: timeout must be a number of seconds or None, got 'soon'"
            )
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await partisan.call(echo, 1, timeout=-1)


@pytest.mark.timeout(10)
@async_test
async def test_rpc_with_one_args_tuple_says_how_to_pass_arguments() -> None:
    async with nodes("a", "b"):
        with pytest.raises(TypeError) as info:
            await partisan.rpc("b", pow, (2, 3))
        assert "rpc('b', pow, *(2, 3))" in one_line(info.value)
        assert await partisan.rpc("b", pow, 2, 3) == 8
        assert await partisan.rpc("b", len, (2, 3)) == 2  # one tuple argument is fine


@pytest.mark.timeout(10)
@async_test
async def test_a_dead_node_is_not_connected_at_start_and_noconnection_while_pending() -> None:
    async with nodes("a", "b") as (_a, b):
        echo = await Echo.start(node="b")
        pending = asyncio.ensure_future(partisan.call(echo, "never"))
        await asyncio.sleep(0.01)  # ok-sleep: let the call reach b (memory network, no I/O)
        b.links.crash()
        with pytest.raises(partisan.CallExit) as info:
            await pending
        assert info.value.reason == "noconnection" and "call to" in one_line(info.value)
        with pytest.raises(partisan.NotConnected) as not_connected:
            await partisan.call(echo, 1)
        assert one_line(not_connected.value) == "node 'b' is down"
        with pytest.raises(partisan.NotConnected):
            partisan.send(echo, 1)
        with pytest.raises(partisan.NotConnected):
            await partisan.rpc("b", len, "x")


@pytest.mark.timeout(10)
@async_test
async def test_a_busy_port_is_a_bind_error_naming_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(partisan.BindError) as info:
            async with partisan.Node("a", port=port, insecure=True):
                pass
        assert f"127.0.0.1:{port}" in one_line(info.value)


def test_a_missing_key_names_the_command_that_creates_it(tmp_path: Path) -> None:
    with pytest.raises(partisan.ConfigError) as info:
        load_keypair(tmp_path / "nokeys", "c")
    assert f"partisan keys new {tmp_path / 'nokeys'} --node c" in one_line(info.value)
    create_keys(tmp_path / "keys", ["a"])
    with pytest.raises(partisan.ConfigError) as info:
        load_keypair(tmp_path / "keys", "c")
    assert f"partisan keys add {tmp_path / 'keys'} c" in one_line(info.value)


def test_spawn_error_is_one_line_with_the_remote_traceback_as_a_note() -> None:
    error = partisan.SpawnError("spawn failed: boom", "Traceback ...\nValueError: boom")
    assert one_line(error) == "spawn failed: boom"
    assert error.remote_traceback is not None and "ValueError: boom" in error.__notes__[0]

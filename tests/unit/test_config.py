from __future__ import annotations

import pathlib

import pytest

from partisan.config import ChannelSpec, Config, parse_channels
from partisan.errors import ConfigError


def test_defaults_are_valid_and_always_have_default_and_membership_channels() -> None:
    config = Config.load(env={})
    assert config.manager == "full-mesh"
    assert config.host == "127.0.0.1"
    assert [c.name for c in config.all_channels()] == ["default", "membership", "broadcast"]
    assert config.hyparview.active_size == 5 and config.hyparview.passive_size == 30


def test_precedence_defaults_toml_env_keywords(tmp_path: pathlib.Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text(
        'name = "from-toml"\nport = 9000\ngossip_interval = 3.0\n'
        "[hyparview]\nactive_size = 7\npassive_size = 40\n"
    )
    env = {"PARTISAN_PORT": "9001", "PARTISAN_HYPARVIEW__ACTIVE_SIZE": "8"}
    config = Config.load(toml, env=env, name="from-kw")
    assert config.name == "from-kw"  # keyword beats TOML
    assert config.port == 9001  # env beats TOML
    assert config.gossip_interval == 3.0  # TOML beats default
    assert config.hyparview.active_size == 8  # nested env beats nested TOML
    assert config.hyparview.passive_size == 40  # untouched nested TOML value kept
    assert Config.load(toml, env=env, hyparview={"active_size": 9}).hyparview.active_size == 9


def test_config_file_from_environment(tmp_path: pathlib.Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('manager = "hyparview"\n')
    assert Config.load(env={"PARTISAN_CONFIG": str(toml)}).manager == "hyparview"


def test_channels_parse() -> None:
    assert parse_channels("data:4,gossip:1:monotonic, x") == (
        ChannelSpec("data", 4),
        ChannelSpec("gossip", 1, monotonic=True),
        ChannelSpec("x", 1),
    )
    config = Config.load(env={"PARTISAN_CHANNELS": "data:4"}, parallelism=2)
    assert [str(c) for c in config.all_channels()] == [
        "default:2",
        "membership:1",
        "broadcast:1",
        "data:4",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": "eighty"}, r"port: invalid value 'eighty'; expected an integer"),
        ({"port": 70000}, r"port: invalid value 70000; expected an integer in 0..65535"),
        ({"manager": "ring"}, r"manager: invalid value 'ring'; expected one of full-mesh"),
        ({"role": "boss"}, r"role: invalid value 'boss'; expected one of server, client"),
        ({"name": "a b"}, r"name: invalid node name 'a b'"),
        ({"hidden": "maybe"}, r"hidden: invalid value 'maybe'; expected a boolean"),
        ({"gossip_interval": "-1"}, r"gossip_interval: invalid value -1.0; expected a number > 0"),
        ({"heartbeat_interval": 2, "heartbeat_timeout": 1}, r"heartbeat_timeout: .*greater than"),
        ({"channels": "data:four"}, r"channels: invalid parallelism 'four'"),
        ({"channels": "data:0"}, r"channels: invalid value 'data:0'; expected parallelism >= 1"),
        ({"channels": "data:1:fast"}, r"channels: invalid flag 'fast'"),
        (
            {"channels": "a,a"},
            r"channels: invalid value 'a'; expected each channel name at most once",
        ),
        ({"peers": 5}, r"peers: invalid value 5; expected a list of strings"),
        ({"log_level": "LOUD"}, r"log_level: invalid value 'LOUD'"),
        ({"send_buffer_bytes": 0}, r"send_buffer_bytes: invalid value 0; expected a number > 0"),
        ({"bogus": 1}, r"unknown option 'bogus'"),
        ({"hyparview": {"active_size": 0}}, r"hyparview.active_size: invalid value 0"),
        ({"hyparview": {"prwl": 9}}, r"hyparview.prwl: invalid value 9; expected <= arwl"),
        ({"hyparview": {"nope": 1}}, r"unknown option 'hyparview.nope'"),
        ({"hyparview": 3}, r"hyparview: invalid value 3; expected a table"),
        ({"plumtree": {"lazy_tick": 0}}, r"plumtree.lazy_tick: invalid value 0"),
        ({"reconnect_interval": 1, "reconnect_interval_max": 0.5}, r"reconnect_interval_max"),
    ],
)
def test_bad_values_name_field_value_and_allowed(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.load(env={}, **kwargs)


def test_bad_environment_value_is_reported_with_field() -> None:
    with pytest.raises(ConfigError, match=r"heartbeat_interval: invalid value 'soon'"):
        Config.load(env={"PARTISAN_HEARTBEAT_INTERVAL": "soon"})


def test_bad_toml_file(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Config.load(bad, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "missing.toml", env={})


def test_insecure_refuses_non_loopback_unless_forced() -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        Config.load(env={}, insecure=True, host="0.0.0.0")
    assert Config.load(env={}, insecure=True, host="0.0.0.0", allow_remote_insecure=True).insecure


def test_replace_validates() -> None:
    config = Config.load(env={})
    assert config.replace(port=5).port == 5
    with pytest.raises(ConfigError, match="port"):
        config.replace(port=-1)


def test_partisan_faults_is_a_switch_not_a_config_field() -> None:
    # Read by partisan/delivery/faults.py at import; nodes started with it must not refuse it.
    assert Config.load(name="x", env={"PARTISAN_FAULTS": "off"}).name == "x"

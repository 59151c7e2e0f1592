"""The ``partisan`` front end registers only the command being run, and every command for help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from partisan import cli

COMMAND_NAMES = [module.rpartition(".")[2] for module in cli.COMMANDS]


def _choices(parser) -> list[str]:
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_every_command_module_is_named_after_its_command():
    # build_parser picks a module by its last name: a module registering another name breaks it.
    parser = cli.build_parser()
    assert _choices(parser) == COMMAND_NAMES


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_a_command_word_registers_that_command_alone(name):
    assert _choices(cli.build_parser(name)) == [name]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["node", "start", "a"], "node"),
        (["-v", "-v", "cluster", "status"], "cluster"),
        (["--help", "node"], None),
        (["-h"], None),
        ([], None),
        (["nod"], "nod"),
    ],
)
def test_the_command_word_is_the_first_non_option(argv, expected):
    assert cli._command_word(argv) == expected


def test_an_unknown_command_still_lists_every_command(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["nod"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for name in COMMAND_NAMES:
        assert repr(name) in err


@pytest.mark.timeout(60)
def test_node_help_does_not_import_the_other_commands():
    code = (
        "import sys\n"
        "from partisan import cli\n"
        "try:\n"
        "    cli.main(['node', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('partisan.commands.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    loaded = out.strip().splitlines()[-1]
    assert "partisan.commands.node" in loaded
    for other in ("cluster", "keys", "sim"):
        assert f"partisan.commands.{other}'" not in loaded

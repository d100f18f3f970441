"""hodeictl's one table of commands and options (hodeictl.commands), read two ways: by the fast parser
every call goes through (hodeictl.parse) and by the typer app built from it, which prints --help.
Pure logic, in-process: the actions are replaced by a recorder, so nothing is sent anywhere."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from typer.testing import CliRunner

from hodeictl import actions
from hodeictl.cli import build
from hodeictl.commands import HELP_NAMES, HODEICTL, Command, Group
from hodeictl.parse import ArgumentError, parse


def commands(group: Group = HODEICTL, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    """Every command of the table with the words that name it, aliases included."""
    out = []
    for c in group.commands:
        if isinstance(c, Group):
            out += commands(c, (*path, c.name))
        else:
            out += [((*path, name), c) for name in (c.name, *(a for a, _ in c.aliases))]
    return out


def ids(x: object) -> str:
    return " ".join(x) if isinstance(x, tuple) else ""


# Command lines that must be read alike: every command, every kind of option, the click rules
# (grouped short flags, attached values, `=`, `--`, options after arguments, a value that looks
# like an option, the last of a repeated option, submit's options stopping at its command).
GOOD = [
    ["submit", "true"],
    ["--socket", "/x.sock", "submit", "--name", "all", "-e", "A=1", "--env=B=two words", "--cwd", "/tmp",
     "--timeout", "30", "--grace=2.5", "--priority", "-3", "--label", "k=v", "-l", "x=y", "--retries", "1",
     "--retry-on-failure", "--", "sh", "-c", "echo", "ignored"],
    ["--socket=/x.sock", "submit", "-n", "shell", "--env", "C=3", 'echo "$C" | tr 3 4'],
    ["submit", "--json", "--", "-x"],
    ["submit", "-fnname", "true", "--json", "--help"],
    ["submit", "--from", "-", "--image", "img", "--follow"],
    ["submit", "--name", "--json", "true"],
    ["submit", "-"],
    ["submit"],
    ["logs", "7"],
    ["logs", "-ft", "7", "--tail", "3"],
    ["logs", "7", "--attempt=2", "-t", "--tail=0"],
    ["logs", "--", "-5"],
    ["logs", ""],
    ["cancel", "1", "2", "--grace", "0.5", "--no-wait", "--json"],
    ["cancel", "--grace=1e1", "9"],
    ["wait", "3", "--json"],
    ["wait", "1", "2", "3"],
    ["list"],
    ["ls", "-s", "running", "--state=queued", "-squeued", "--limit", "0", "--json"],
    ["list", "--limit", "5", "--limit", "6"],
    ["list", "-sj"],
    ["show", "4", "--json"],
    ["workers"],
    ["workers", "--json"],
    ["agents", "add", "--pool", "gpu", "--json"],
    ["agents", "add"],
    ["agents", "rm", "w1"],
    ["logs"],  # the caller's latest job
    ["logs", "--json", "3"],
    ["cancel"],  # refused by the action, in one sentence: needs ids, --all or --state
    ["cancel", "--all"],
    ["cancel", "-s", "queued", "--state", "running", "--no-wait"],
    ["submit", "--tty", "-f", "true"],
    ["submit", "-tf", "true"],
    ["list", "--name", "b*", "-l", "a=b", "--label", "c=d"],
]

BAD = [
    ["bogus"],
    ["-x", "list"],
    ["--socket"],
    ["--socket", "/x.sock"],
    ["list", "--bogus"],
    ["list", "--lim", "3"],
    ["list", "--limit", "many"],
    ["list", "--limit", "1.5"],
    ["list", "--json=yes"],
    ["list", "-js"],
    ["submit", "--timeout", "soon", "true"],
    ["submit", "--grace=", "true"],
    ["submit", "--name"],
    ["submit", "--socket", "/x.sock", "true"],
    ["logs", "1", "2"],
    ["logs", "-5"],
    ["logs", "1", "--tail"],
    ["cancel", "--grace", "x", "1"],
    ["wait"],
    ["workers", "x"],
    ["show", "1", "--grace", "1"],
    ["agents", "rm"],
    ["agents", "bogus"],
    ["agents", "add", "extra"],
]

HELP = [[], ["--help"], ["-h"], ["list", "--help"], ["ls", "-h"], ["agents"], ["agents", "-h"],
        ["agents", "rm", "-h"],
        ["submit", "-fh"], ["list", "--limit", "x", "--help"], ["--socket", "/x", "-h"]]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """The actions, replaced: each call is recorded as (action name, keywords) and exits 0."""
    monkeypatch.delenv("HODEI_SOCKET", raising=False)
    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(run: str) -> Any:
        def action(**kw: Any) -> int:
            calls.append((run, kw))
            return 0
        return action

    for _, command in commands():
        monkeypatch.setattr(actions, command.run, recorder(command.run))
    return calls


def through_typer(argv: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(build(), argv, env={"COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("argv", GOOD)
def test_both_readings_agree(recorded: list[tuple[str, dict[str, Any]]], argv: list[str]) -> None:
    """The fast parser and the typer app call the same action with the same values."""
    call = parse(argv)
    assert call is not None
    result = through_typer(argv)
    assert result.exit_code == 0, result.output
    assert recorded == [(call.command.run, call.values)]


def test_socket_from_the_environment(recorded: list[tuple[str, dict[str, Any]]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """HODEI_SOCKET stands in for --socket in both readings; --socket wins over it."""
    env = {"HODEI_SOCKET": "/env.sock"}
    for argv, socket in ((["list"], "/env.sock"), (["--socket", "/opt.sock", "list"], "/opt.sock")):
        recorded.clear()
        through_typer(argv, env)
        monkeypatch.setenv("HODEI_SOCKET", "/env.sock")
        call = parse(argv)
        monkeypatch.delenv("HODEI_SOCKET")
        assert call is not None and call.values["socket"] == socket
        assert recorded == [("list_", call.values)]


@pytest.mark.parametrize("argv", BAD)
def test_both_readings_refuse(recorded: list[tuple[str, dict[str, Any]]], argv: list[str]) -> None:
    """A line typer refuses (exit status 2), the fast parser refuses too, in one sentence."""
    with pytest.raises(ArgumentError) as refused:
        parse(argv)
    message = str(refused.value)
    assert "\n" not in message and message.strip() == message and len(message) < 200
    assert refused.value.exit_code == 2
    result = through_typer(argv)
    assert result.exit_code == 2 and not recorded, result.output


@pytest.mark.parametrize("argv", HELP)
def test_help_is_left_to_typer(recorded: list[tuple[str, dict[str, Any]]], argv: list[str]) -> None:
    """Asked for help (or given a group alone), the fast parser hands over, and typer prints it."""
    assert parse(argv) is None
    result = through_typer(argv)
    assert "Usage:" in result.output and not recorded


@pytest.mark.parametrize(("path", "command"), commands(), ids=ids)
def test_help_lists_every_option_of_the_table(path: tuple[str, ...], command: Command) -> None:
    """`hodeictl COMMAND --help` shows each option and argument the table gives the command."""
    result = through_typer([*path, "--help"])
    assert result.exit_code == 0
    for opt in command.options:
        for name in opt.names:
            assert name in result.output, (path, name)
    for arg in command.args:
        assert arg.dest in result.output and arg.help in result.output, (path, arg.dest)
    for name in HELP_NAMES:
        assert name in result.output


@pytest.mark.parametrize(("path", "command"), commands(), ids=ids)
def test_each_action_takes_what_its_entry_describes(path: tuple[str, ...], command: Command) -> None:
    """Each command's function in hodeictl.actions takes exactly the socket and its entry's options
    and arguments: adding an option to the table without its use (or the reverse) fails here."""
    params = set(inspect.signature(getattr(actions, command.run)).parameters)
    expected = {"socket"} | {o.dest for o in command.options} | {a.dest for a in command.args}
    assert params == expected
    names = [n for o in command.options for n in o.names] + list(HELP_NAMES)
    assert len(names) == len(set(names)), "an option name is used twice"
    assert all(a.many for a in command.args[-1:]) or not any(a.many for a in command.args), \
        "only the last argument may take many values"

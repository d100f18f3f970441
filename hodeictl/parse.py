"""hodeictl's command line, read from the table in ``hodeictl.commands`` without loading typer.

Every call goes through here: typer and click take longer to import than most commands take to run.
The rules are click's, so that the typer app built from the same table (which prints --help) reads
the same line the same way: `--opt VALUE`, `--opt=VALUE`, `-o VALUE`, `-oVALUE`, short flags grouped
(`-ft`), a repeated option's last value wins (or all of them for a repeatable one), `--` ends the
options, options may follow arguments except where a command says not (submit). A mistake is one
sentence (ArgumentError, exit status 2); -h/--help, and a bare group (`hodeictl`, `hodeictl agents`),
return None: typer prints the help.
"""

from __future__ import annotations

import os
from typing import NoReturn

from hodei.errors import HodeiError
from hodeictl.commands import FLAG, FLOAT, HELP_NAMES, HODEICTL, INT, VERSION, Command, Group, Opt


class ArgumentError(HodeiError):
    """The command line is not one hodeictl understands; see --help."""

    exit_code = 2


class Call:
    """A command to run, and its keyword arguments: every option and argument of the command and of
    the groups above it (such as --socket), given or defaulted."""

    __slots__ = ("command", "values")

    def __init__(self, command: Command, values: dict[str, object]) -> None:
        self.command = command
        self.values = values


_HELP = Opt(*HELP_NAMES, kind=FLAG, dest="help", help="Show this message and exit.")
_CONVERT = {INT: (int, "a whole number"), FLOAT: (float, "a number")}


def parse(argv: list[str], root: Group = HODEICTL) -> Call | None:
    """The call argv asks for; None when typer must print help; ArgumentError for a mistake."""
    node: Command | Group = root
    where = root.name
    values: dict[str, object] = {}
    i = 0
    while isinstance(node, Group):
        raw: dict[str, list[str]] = {}
        start = i
        i = _options(node.options, argv, i, raw, where, interspersed=False, positional=None)
        if "help" in raw or i == start == len(argv):  # -h, or the group's name alone: typer shows its help
            return None
        if VERSION.run in raw:
            return Call(VERSION, {})
        if i == len(argv):
            raise ArgumentError(f"`{where}` needs a command: use one of {', '.join(_names(node))}")
        values.update(_values(node.options, raw))
        values.pop(VERSION.run, None)  # not an option the commands take
        name = argv[i]
        found = next((c for c in node.commands if name == c.name or name in _aliases(c)), None)
        if found is None:
            raise ArgumentError(f"`{where}` has no command {name!r}: use one of {', '.join(_names(node))}")
        node, where, i = found, f"{where} {name}", i + 1
    raw = {}
    args: list[str] = []
    _options(node.options, argv, i, raw, where, interspersed=node.interspersed, positional=args)
    if "help" in raw:
        return None
    values.update(_values(node.options, raw))
    values.update(_arguments(node, args, where))
    return Call(node, values)


def _names(group: Group) -> list[str]:
    return [n for c in group.commands for n in (c.name, *_aliases(c))]


def _aliases(c: Command | Group) -> list[str]:
    return [name for name, _ in c.aliases] if isinstance(c, Command) else []


def _options(options: tuple[Opt, ...], argv: list[str], i: int, raw: dict[str, list[str]], where: str,
             interspersed: bool, positional: list[str] | None) -> int:
    """Read options from argv[i:] into raw (dest -> the values given, as text) until the first argument
    of a group, or to the end for a command (its arguments go to positional). Returns where it stopped."""
    by_name = {name: opt for opt in (*options, _HELP) for name in opt.names}
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if positional is None:
                return i + 1
            positional.extend(argv[i + 1:])
            return len(argv)
        if not arg.startswith("-") or arg == "-":
            if positional is None:
                return i
            if not interspersed:
                positional.extend(argv[i:])
                return len(argv)
            positional.append(arg)
            i += 1
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            opt = by_name.get(name) or _unknown(name, by_name, where)
            if not opt.takes_value():
                if eq:
                    raise ArgumentError(f"{name} takes no value, so {arg} is not understood")
                value = ""
            elif not eq:
                i = _next(argv, i, name)
                value = argv[i]
            raw.setdefault(opt.dest, []).append(value)
        else:  # -x, grouped short flags (-ft), or a short option with its value attached (-nNAME)
            for j in range(1, len(arg)):
                name = "-" + arg[j]
                opt = by_name.get(name) or _unknown(name, by_name, where)
                if not opt.takes_value():
                    raw.setdefault(opt.dest, []).append("")
                    continue
                if j + 1 < len(arg):
                    value = arg[j + 1:]
                else:
                    i = _next(argv, i, name)
                    value = argv[i]
                raw.setdefault(opt.dest, []).append(value)
                break
        i += 1
    return i


def _next(argv: list[str], i: int, name: str) -> int:
    if i + 1 == len(argv):
        raise ArgumentError(f"{name} needs a value after it")
    return i + 1


def _unknown(name: str, by_name: dict[str, Opt], where: str) -> NoReturn:
    import difflib

    near = difflib.get_close_matches(name, [n for n in by_name if n.startswith("--")], 1)
    hint = f" (did you mean {near[0]}?)" if near else f": `{where} --help` lists them"
    raise ArgumentError(f"`{where}` has no option {name}{hint}")


def _values(options: tuple[Opt, ...], raw: dict[str, list[str]]) -> dict[str, object]:
    """Each option's value: converted from what was given (the last one, or all of a repeatable
    option), else from its environment variable, else its default."""
    out: dict[str, object] = {}
    for opt in options:
        given = raw.get(opt.dest)
        if given is None and opt.env and os.environ.get(opt.env):
            given = [os.environ[opt.env]]
        if given is None:
            out[opt.dest] = list(opt.default) if isinstance(opt.default, list) else opt.default
        elif opt.kind == FLAG:
            out[opt.dest] = True
        elif opt.many:
            out[opt.dest] = [_convert(opt, text) for text in given]
        else:
            out[opt.dest] = _convert(opt, given[-1])
    return out


def _convert(opt: Opt, text: str) -> object:
    if opt.kind not in _CONVERT:
        return text
    kind, what = _CONVERT[opt.kind]
    try:
        return kind(text)
    except ValueError:
        raise ArgumentError(f"{opt.names[0]} takes {what}, not {text!r}") from None


def _arguments(command: Command, given: list[str], where: str) -> dict[str, object]:
    out: dict[str, object] = {}
    left = list(given)
    for arg in command.args:
        if arg.many:
            out[arg.dest], left = left, []
        elif left:
            out[arg.dest] = left.pop(0)
        elif not arg.required:
            out[arg.dest] = None
        if arg.required and (arg.dest not in out or out[arg.dest] == []):
            noun = arg.help.removesuffix("s") if arg.many else arg.help
            raise ArgumentError(f"`{where}` needs {_one(noun)}")
    if left:
        takes = " and ".join(a.help if a.many else _one(a.help) for a in command.args) or "no arguments"
        raise ArgumentError(f"unexpected argument {left[0]!r}: `{where}` takes {takes}")
    return out


def _one(noun: str) -> str:
    return noun if noun.startswith("the ") else "a " + noun

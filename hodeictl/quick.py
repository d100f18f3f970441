"""`hodeictl submit` on a quick path: the commonest call, answered without loading typer.

A plain submit is what scripts run in loops, so its start-up time is most of what a user waits for;
typer and its click take longer to import than the rest of the call takes to run. This module reads
the forms of `submit` it fully understands (the options below, before the command; `--` or not) and
builds the job with the same code as the typer command (``hodeictl.args``). Anything else, such as
--help, -f, an unknown option or a value that does not parse, is left to the typer CLI, which does
all the explaining. The test suite checks that both paths queue the same job.
"""

from __future__ import annotations

from typing import Any

from hodeictl.args import submit_spec, with_client
from hodeictl.render import to_json

# option -> (parameter of submit_spec, how to read its value); repeatable ones collect a list
_VALUES: dict[str, tuple[str, Any]] = {
    "--name": ("name", str), "-n": ("name", str),
    "--env": ("env", list), "-e": ("env", list),
    "--cwd": ("cwd", str),
    "--timeout": ("timeout", float),
    "--grace": ("grace", float),
    "--priority": ("priority", int),
    "--label": ("label", list), "-l": ("label", list),
    "--image": ("image", str),
    "--retries": ("retries", int),
    "--constraint": ("constraint", list),
}
_FLAGS = {"--retry-on-failure": "retry_on_failure", "--json": "json"}


def parse(argv: list[str]) -> tuple[str | None, dict[str, Any], list[str]] | None:
    """(socket, submit options, command) for a submit this path handles; None for anything else."""
    socket = None
    i = 0
    while i < len(argv) and argv[i] != "submit":  # global options before the command
        arg = argv[i]
        if arg.startswith("--socket="):
            socket = arg.split("=", 1)[1]
        elif arg == "--socket" and i + 1 < len(argv):
            socket = argv[i + 1]
            i += 1
        else:
            return None
        i += 1
    if i == len(argv):
        return None
    opts: dict[str, Any] = {}
    i += 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAGS and not eq:
            opts[_FLAGS[name]] = True
        elif name in _VALUES:
            if not eq:
                if i + 1 == len(argv):
                    return None
                i += 1
                value = argv[i]
            key, kind = _VALUES[name]
            try:
                if kind is list:
                    opts.setdefault(key, []).append(value)
                else:
                    opts[key] = kind(value)
            except ValueError:
                return None
        else:
            return None  # -f, --help, an option this path does not know, a typo: typer explains
        i += 1
    command = argv[i:]
    if not command:
        return None
    return socket, opts, command


def main(argv: list[str]) -> bool:
    """Run a plain submit and exit; False (having done nothing) when the typer CLI must handle it."""
    parsed = parse(argv)
    if parsed is None:
        return False
    socket, opts, command = parsed
    as_json = opts.pop("json", False)
    spec = submit_spec(command, **opts)
    job = with_client(socket, lambda client: client.submit(spec))
    print(to_json(job) if as_json else job.id)
    raise SystemExit(0)

"""hodeictl as a typer app, built from the table in ``hodeictl.commands``: what prints --help.

``hodeictl`` reads its command line with ``hodeictl.parse`` and comes here only for help (-h, --help,
or a group named alone). Built from the same table and running the same ``hodeictl.actions``, this
app is also a complete CLI of its own (``python -m hodeictl.cli ...``), which the tests use to check
that both readings of a command line agree.
"""

from __future__ import annotations

import inspect
import os
from typing import Annotated, Any

import typer

from hodeictl.commands import FLAG, FLOAT, HELP_NAMES, HODEICTL, INT, VERSION, Arg, Command, Group, Opt

_TYPES: dict[str, type] = {INT: int, FLOAT: float, FLAG: bool}


def _version(given: bool) -> None:
    """--version: run at once, while the line is read (with no command after it, as in the fast parser)."""
    if given:
        from hodeictl import actions

        raise typer.Exit(getattr(actions, VERSION.run)())


def _option(opt: Opt) -> inspect.Parameter:
    kind: Any = _TYPES.get(opt.kind, str)
    if opt.many:
        kind = list[kind]
    elif opt.default is None:
        kind = kind | None
    eager: dict[str, Any] = {"is_eager": True, "callback": _version} if opt.dest == VERSION.run else {}
    info = typer.Option(*opt.names, help=opt.help, metavar=opt.metavar or None, envvar=opt.env or None, **eager)
    return inspect.Parameter(opt.dest, inspect.Parameter.KEYWORD_ONLY, default=opt.default,
                             annotation=Annotated[kind, info])


def _argument(arg: Arg) -> inspect.Parameter:
    info = typer.Argument(help=arg.help, show_default=False)
    default: object = inspect.Parameter.empty if arg.required else [] if arg.many else None
    return inspect.Parameter(arg.dest, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[list[str] if arg.many else str, info])


def _signed(body: Any, params: list[inspect.Parameter]) -> Any:
    """body, with the signature typer reads its parameters from."""
    body.__signature__ = inspect.Signature(params)
    body.__annotations__ = {p.name: p.annotation for p in params}
    return body


def _command(app: typer.Typer, command: Command, context: dict[str, Any]) -> None:
    def body(**values: Any) -> None:
        from hodeictl import actions

        raise typer.Exit(getattr(actions, command.run)(**context, **values))

    params = [*map(_argument, command.args), *map(_option, command.options)]
    settings = {} if command.interspersed else {"allow_interspersed_args": False}
    callback = _signed(body, params)
    app.command(command.name, help=command.help, context_settings=settings)(callback)
    for alias, help in command.aliases:
        app.command(alias, help=help, context_settings=settings)(callback)


def build(group: Group = HODEICTL, context: dict[str, Any] | None = None) -> typer.Typer:
    """The typer app of a group of the table: its options go into context, which every command gets."""
    context = {} if context is None else context
    if group is HODEICTL:
        app = typer.Typer(name=group.name, help=group.help, no_args_is_help=True, add_completion=False,
                          pretty_exceptions_enable=False,
                          context_settings={"help_option_names": list(HELP_NAMES)})
    else:
        app = typer.Typer(help=group.help, no_args_is_help=True)
    if group.options:
        def keep(**values: Any) -> None:
            values.pop(VERSION.run, None)  # handled while reading the line (_version)
            context.update(values)

        app.callback()(_signed(keep, [_option(opt) for opt in group.options]))
    for command in group.commands:
        if isinstance(command, Group):
            app.add_typer(build(command, context), name=command.name)
        else:
            _command(app, command, context)
    return app


def main() -> None:
    try:
        build()()
    except BrokenPipeError:
        os._exit(0)


if __name__ == "__main__":  # the typer CLI alone, without the fast parser: python -m hodeictl.cli
    main()

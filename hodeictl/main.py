"""The `hodeictl` command: the line is read by hodeictl.parse; typer is loaded only to print help."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from hodeictl.parse import ArgumentError, parse

    try:
        call = parse(sys.argv[1:])
    except ArgumentError as e:
        print(f"hodeictl: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    if call is None:
        from hodeictl.cli import main as typer_main

        typer_main()
        return
    from hodeictl import actions

    try:
        status = actions.run(call)
    except BrokenPipeError:
        os._exit(0)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(status)

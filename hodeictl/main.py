"""The `hodeictl` command: a plain submit takes the quick path; everything else goes to typer."""

from __future__ import annotations

import sys


def main() -> None:
    from hodeictl import quick

    quick.main(sys.argv[1:])  # exits when it handled the call
    from hodeictl.cli import main as typer_main

    typer_main()

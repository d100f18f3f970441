"""hodeictl's consistent output: --version, logs --json, list filters, cancel --all/--state, logs with no id,
state colours on a terminal, and hodeid's described flags."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from conftest import BIN, Daemon


def test_version(daemon: Daemon) -> None:
    want = f"hodeictl {importlib.metadata.version('hodei')}\n".encode()
    assert daemon.ctl("--version").stdout == want
    typer_cli = subprocess.run([sys.executable, "-m", "hodeictl.cli", "--version"], capture_output=True, check=True)
    assert typer_cli.stdout == want
    assert b"--version" in subprocess.run([str(BIN / "hodeictl"), "--help"], capture_output=True).stdout

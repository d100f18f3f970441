"""hodeictl's consistent output: --version, logs --json, list filters, cancel --all/--state, logs with no id,
state colours on a terminal, and hodeid's described flags."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import subprocess
import sys
import time

from conftest import BIN, Daemon


def test_version(daemon: Daemon) -> None:
    want = f"hodeictl {importlib.metadata.version('hodei')}\n".encode()
    assert daemon.ctl("--version").stdout == want
    typer_cli = subprocess.run([sys.executable, "-m", "hodeictl.cli", "--version"], capture_output=True, check=True)
    assert typer_cli.stdout == want
    assert b"--version" in subprocess.run([str(BIN / "hodeictl"), "--help"], capture_output=True).stdout


def test_logs_json_one_object_per_chunk(daemon: Daemon) -> None:
    jid = daemon.ctl("submit", "printf 'out\\n'; sleep 0.2; printf 'err\\n' >&2; sleep 0.2; printf '\\377\\376'").stdout
    jid = jid.decode().strip()
    lines = daemon.ctl("logs", "-f", "--json", jid).stdout.decode().splitlines()
    chunks = [json.loads(line) for line in lines]
    assert [(c["stream"], c.get("text"), c.get("base64")) for c in chunks] == [
        ("stdout", "out\n", None), ("stderr", "err\n", None), ("stdout", None, base64.b64encode(b"\xff\xfe").decode())]
    assert all(abs(c["time"] - time.time()) < 600 for c in chunks)
    assert daemon.ctl("logs", "--json", jid).stdout.decode().splitlines() == lines  # stored, the same


def test_list_filters_by_name_glob_and_labels(daemon: Daemon) -> None:
    def submit(name: str, *labels: str) -> int:
        args = [a for kv in labels for a in ("--label", kv)]
        return int(daemon.ctl("submit", "--name", name, *args, "true").stdout)

    b1 = submit("build-1", "team=a", "kind=ci")
    b2 = submit("build-2", "team=b", "kind=ci")
    t1 = submit("test-1", "team=a")
    b3 = submit("build-3", "team=a", "kind=ci")

    def ids(*args: str) -> list[int]:
        return [j["id"] for j in json.loads(daemon.ctl("list", "--json", *args).stdout)]

    assert ids("--name", "build-*") == [b1, b2, b3]
    assert ids("--name", "*-[12]") == [b1, b2, t1]
    assert ids("--label", "team=a") == [b1, t1, b3]
    assert ids("--label", "team=a", "--label", "kind=ci") == [b1, b3]
    assert ids("--label", "team=a", "--limit", "2") == [t1, b3]  # the newest two, oldest first
    assert ids("--name", "build-*", "--label", "team=b") == [b2]
    assert ids("--label", "team=c") == []
    table = daemon.ctl("list", "--name", "test-*").stdout.decode()
    assert "test-1" in table and "build" not in table
    bad = daemon.ctl("list", "--label", "team", check=False)
    assert bad.returncode == 2 and b"--label takes KEY=VALUE" in bad.stderr

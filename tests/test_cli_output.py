"""hodeictl's consistent output: --version, logs --json, list filters, cancel --all/--state, logs with no id,
state colours on a terminal, and hodeid's described flags."""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from conftest import BIN, Daemon, need_root, wait_for


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


def _as_nobody(d: Daemon, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN / "hodeictl"),
                           *args], capture_output=True, timeout=60, env=d.env, cwd="/")


def test_cancel_all_and_by_state_of_ones_own_jobs(make_daemon: Callable[..., Daemon]) -> None:
    need_root("needs root to act as two users")
    d = make_daemon("--socket-group", "nogroup", "--max-workers", "1", start=False)
    d.root.chmod(0o755)
    d.start()

    def state(jid: int) -> str:
        return str(json.loads(d.ctl("show", "--json", str(jid)).stdout)["state"])

    r1 = int(d.ctl("submit", "sleep 300").stdout)
    wait_for(lambda: state(r1) == "running", timeout=30)
    n1, n2 = (int(_as_nobody(d, "submit", "sleep 300").stdout) for _ in range(2))
    r2 = int(d.ctl("submit", "sleep 300").stdout)
    assert [state(j) for j in (n1, n2, r2)] == ["queued"] * 3

    res = _as_nobody(d, "cancel", "--state", "queued", "--json")
    assert res.returncode == 0, res.stderr
    assert [(j["id"], j["state"]) for j in json.loads(res.stdout)] == [(n1, "cancelled"), (n2, "cancelled")]
    assert (state(r1), state(r2)) == ("running", "queued")  # root's jobs are not nobody's to cancel
    res = _as_nobody(d, "cancel", "--all")
    assert res.returncode == 0 and res.stdout == b"" and b"no queued or assigned or running job" in res.stderr

    assert d.ctl("cancel", "--state", "queued").stdout.decode().split("\t")[:2] == [str(r2), "cancelled"]
    assert state(r1) == "running"
    d.ctl("cancel", "--all")
    assert state(r1) == "cancelled"

    for args, needle in ((["--state", "succeeded"], b"already ended"), (["1", "--all"], b"not both"),
                         ([], b"needs a job id, --all or --state")):
        bad = d.ctl("cancel", *args, check=False)
        assert bad.returncode == 2 and needle in bad.stderr, bad.stderr


def test_logs_without_id_shows_the_callers_latest_job(shared: Daemon) -> None:
    none = shared.ctl("logs", check=False)
    assert none.returncode == 1 and b"you have no jobs yet" in none.stderr
    shared.ctl("submit", "-f", "echo first")
    mine = int(shared.ctl("submit", "echo root-latest").stdout)
    theirs = _as_nobody(shared, "submit", "echo nobody-latest")
    assert theirs.returncode == 0, theirs.stderr
    assert shared.ctl("logs", "-f").stdout == b"root-latest\n"  # root's own, though nobody's is newer
    wait_for(lambda: _as_nobody(shared, "logs").stdout == b"nobody-latest\n", timeout=30)
    assert shared.ctl("logs", str(mine)).stdout == b"root-latest\n"


def _on_terminal(d: Daemon, *args: str) -> tuple[int, bytes]:
    """hodeictl with its stdout on a pseudo-terminal, as a user at a terminal runs it."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([str(BIN / "hodeictl"), *args], stdout=slave, stderr=subprocess.STDOUT,
                                env={**d.env, "TERM": "xterm-256color", "COLUMNS": "200"})
        os.close(slave)
        out = bytearray()
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: hodeictl closed the terminal
                break
            if not data:
                break
            out += data
        return proc.wait(timeout=60), bytes(out)
    finally:
        os.close(master)


def test_tables_colour_states_on_a_terminal_and_stay_plain_in_a_pipe(daemon: Daemon) -> None:
    ok = daemon.ctl("submit", "--name", "[/]odd [bold]name", "true").stdout.decode().strip()
    bad = daemon.ctl("submit", "false").stdout.decode().strip()
    daemon.ctl("wait", ok, bad, check=False)
    status, out = _on_terminal(daemon, "list")
    assert status == 0, out
    assert b"\x1b[32msucceeded" in out and b"\x1b[1;31mfailed" in out  # green, bold red
    assert b"[/]odd [bold]name" in out  # a name is shown as written, never read as markup
    piped = daemon.ctl("list").stdout.decode().splitlines()
    assert piped[0].split("\t")[:2] == ["id", "state"] and b"\x1b" not in daemon.ctl("list").stdout
    assert [line.split("\t")[1] for line in piped[1:]] == ["succeeded", "failed"]
    status, out = _on_terminal(daemon, "workers")
    assert status == 0 and b"\x1b[32midle" in out
    status, out = _on_terminal(daemon, "wait", ok, bad)  # wait (and cancel) too: a table, coloured
    assert status == 1 and b"REASON" in out and b"\x1b[1;31mfailed" in out, out
    piped = daemon.ctl("wait", ok, bad, check=False).stdout  # and one job a line in a pipe, as before
    assert piped == f"{ok}\tsucceeded\n{bad}\tfailed\texited with code 1\n".encode()


def test_every_hodeid_flag_is_described_in_its_help() -> None:
    """Each flag of `hodeid --help` (and of `hodeid build-image --help`) has a sentence saying what it does."""
    import argparse

    from hodeid import cli

    for args in ([], ["build-image"]):
        out = subprocess.run([str(BIN / "hodeid"), *args, "--help"], capture_output=True, check=True).stdout.decode()
        lines = out[out.index("options:"):].splitlines()[1:]
        flags = [line.split()[0].rstrip(",") for line in lines if line.startswith("  -")]
        assert len(flags) >= (20 if not args else 7)
        for n, line in enumerate(lines):
            if not line.startswith("  -"):
                continue
            words = line.split()
            # the help is on the flag's line after its metavar, or on the next, indented line
            takes = words[1:2] and (words[1].isupper() or words[1].startswith("{") or ":" in words[1])
            described = len(words) > 1 + (1 if takes else 0) + (1 if words[0].endswith(",") else 0) or (
                n + 1 < len(lines) and lines[n + 1].startswith(" " * 10))
            assert described, f"hodeid {' '.join(args)} --help: {line.strip()} has no description"
    assert all(a.help for a in cli.parser()._actions if a.help != argparse.SUPPRESS)

"""`submit --tty`: the job runs under a pseudo-terminal, its controlling terminal, with one output stream."""

from __future__ import annotations

import json
import subprocess

from conftest import BIN, Daemon, need_root, wait_for


def test_tty_job_sees_a_terminal_and_pipe_job_does_not(daemon: Daemon) -> None:
    res = daemon.ctl("submit", "--tty", "-f", "test -t 1 && echo tty")
    assert res.stdout == b"tty\n"  # the bytes the job wrote: no \r added by the terminal
    res = daemon.ctl("submit", "-f", "test -t 1 && echo tty", check=False)
    assert res.returncode == 1 and res.stdout == b""


def test_tty_is_the_controlling_terminal_and_output_is_one_stored_stream(daemon: Daemon) -> None:
    line = "exec 3</dev/tty && echo ctty; echo err >&2; test -t 2 && echo stderr-tty"
    jid = daemon.ctl("submit", "--tty", line).stdout.decode().strip()
    followed = daemon.ctl("logs", "-f", jid)
    assert followed.stdout == b"ctty\nerr\nstderr-tty\n" and followed.stderr == b""
    stored = daemon.ctl("logs", jid)
    assert stored.stdout == b"ctty\nerr\nstderr-tty\n" and stored.stderr == b""


def test_cancel_reaches_a_tty_job(daemon: Daemon) -> None:
    jid = daemon.ctl("submit", "--tty", "echo started; sleep 300").stdout.decode().strip()
    wait_for(lambda: b"started" in daemon.ctl("logs", jid).stdout, timeout=30)
    daemon.ctl("cancel", jid)
    assert json.loads(daemon.ctl("show", "--json", jid).stdout)["state"] == "cancelled"


def test_tty_job_as_another_user(shared: Daemon) -> None:
    need_root("runs a job as nobody")
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN / "hodeictl"),
         "submit", "--tty", "-f", "exec 3</dev/tty; test -t 1 && id -u"],
        capture_output=True, env=shared.env, cwd="/", timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"65534\n"

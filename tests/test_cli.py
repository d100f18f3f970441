"""Bad input gets one clear line and a non-zero status; never a traceback."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BIN, Daemon


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["submit", ""], b"empty"),
        (["submit", "--env", "NOEQUALS", "true"], b"KEY=VALUE"),
        (["submit", "--timeout", "-1", "true"], b"--timeout"),
        (["submit", "--grace", "-1", "true"], b"--grace"),
        (["logs", "abc"], b"not a job id"),
        (["list", "--state", "bogus"], b"unknown state"),
        (["show", str(2**64)], b"not a job id"),
        (["submit", "--priority", str(2**64), "true"], b"--priority"),
    ],
)
def test_bad_arguments_get_one_clear_line(daemon: Daemon, args: list[str], needle: bytes) -> None:
    """Each bad argument is refused with a sentence naming the problem and exit status 2."""
    res = daemon.ctl(*args, check=False)
    assert res.returncode == 2
    assert needle in res.stderr and b"Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unknown_job_id(daemon: Daemon) -> None:
    """An unknown job id says so, with its own exit status, for every command that takes one."""
    for cmd in (["show", "999"], ["logs", "999"], ["logs", "-f", "999"], ["cancel", "999"], ["wait", "999"]):
        res = daemon.ctl(*cmd, check=False)
        assert res.returncode == 4, cmd
        assert res.stderr.strip() == b"hodeictl: no job 999: `hodeictl list` shows the jobs there are"


def test_daemon_not_running(tmp_path) -> None:
    """With no daemon, hodeictl says how to start one, with exit status 3 and no traceback."""
    res = subprocess.run([str(BIN / "hodeictl"), "--socket", str(tmp_path / "none.sock"), "list"],
                         capture_output=True, timeout=30)
    assert res.returncode == 3
    assert b"hodeid is not running" in res.stderr and b"start it with `hodeid`" in res.stderr
    assert b"Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_human_tables_and_json(daemon: Daemon) -> None:
    """list, show and workers print readable text without --json, and JSON with it."""
    jid = daemon.submit("--name", "hello", "echo hi")
    daemon.wait_final(jid)
    listing = daemon.ctl("ls").stdout.decode()
    assert "hello" in listing and "succeeded" in listing and "echo hi" in listing
    shown = daemon.ctl("show", str(jid)).stdout.decode()
    assert "state" in shown and "succeeded" in shown
    assert "local" in daemon.ctl("workers").stdout.decode()
    assert daemon.ctl("wait", str(jid), "--json").stdout.startswith(b"[{")

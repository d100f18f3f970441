"""Bad input gets one clear line and a non-zero status; never a traceback."""

from __future__ import annotations

import json
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
    for cmd in (["list"], ["submit", "true"]):  # the typer CLI, and the quick path for plain submits
        res = subprocess.run([str(BIN / "hodeictl"), "--socket", str(tmp_path / "none.sock"), *cmd],
                             capture_output=True, timeout=30)
        assert res.returncode == 3, cmd
        assert b"hodeid is not running" in res.stderr and b"start it with `hodeid`" in res.stderr
        assert b"Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


# Submits the quick path handles (hodeictl.quick), each with every kind of option it reads.
QUICK_SUBMITS = [
    ["true"],
    ["--name", "all", "-e", "A=1", "--env=B=two words", "--cwd", "/tmp", "--timeout", "30", "--grace=2.5",
     "--priority", "-3", "--label", "k=v", "-l", "x=y", "--retries", "1", "--retry-on-failure", "--",
     "sh", "-c", 'echo "$A/$B/$(pwd)"', "ignored"],
    ["-n", "shell", "--env", "C=3", 'echo "$C" | tr 3 4'],
    ["--json", "--", "-x"],
]


@pytest.mark.parametrize("args", QUICK_SUBMITS)
def test_quick_path_reads_these_submits(args: list[str]) -> None:
    from hodeictl import quick

    assert quick.parse(["submit", *args]) is not None
    assert quick.parse(["--socket", "/x.sock", "submit", *args]) is not None


@pytest.mark.parametrize("args", [["-f", "true"], ["--help"], ["--bogus", "true"], ["--timeout", "soon", "true"],
                                  ["-nshort", "true"], ["--name"], [], ["--json=yes", "true"]])
def test_quick_path_leaves_the_rest_to_typer(args: list[str]) -> None:
    from hodeictl import quick

    assert quick.parse(["submit", *args]) is None


@pytest.mark.parametrize("args", QUICK_SUBMITS)
def test_quick_and_typer_paths_queue_the_same_job(daemon: Daemon, args: list[str]) -> None:
    """`hodeictl submit` answered by the quick path queues exactly the job the typer CLI would."""
    quick = daemon.ctl("submit", *args).stdout
    typer = subprocess.run([str(BIN / "python"), "-m", "hodeictl.cli", "submit", *args], capture_output=True,
                           env=daemon.env, timeout=60, check=True).stdout
    if "--json" in args:
        a, b = json.loads(quick), json.loads(typer)
        ids = (a["id"], b["id"])
    else:
        ids = (int(quick), int(typer))
    jobs = [daemon.wait_final(i) for i in ids]
    for job in jobs:
        for key in ("id", "created_at", "started_at", "finished_at", "worker_id", "history"):
            job.pop(key)
    assert jobs[0] == jobs[1]
    assert daemon.output(ids[0]) == daemon.output(ids[1])
    if args[1:2] == ["all"]:
        assert daemon.output(ids[0]) == b"1/two words//tmp\n"


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

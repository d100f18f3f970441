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
        # mistakes in the command line itself, found before hodeid is asked anything
        (["list", "--bogus"], b"no option --bogus"),
        (["list", "--limt", "3"], b"did you mean --limit?"),
        (["list", "--limit", "many"], b"--limit takes a whole number, not 'many'"),
        (["submit", "--timeout", "soon", "true"], b"--timeout takes a number, not 'soon'"),
        (["submit", "--name"], b"--name needs a value"),
        (["wait", "--json=yes", "1"], b"--json takes no value"),
        (["logs", "1", "2"], b"unexpected argument '2'"),
        (["cancel"], b"needs a job id"),
        (["workers", "all"], b"unexpected argument 'all'"),
        (["bogus"], b"no command 'bogus'"),
        (["agents", "rm"], b"needs the agent's worker id"),
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
    for cmd in (["list"], ["submit", "true"], ["logs", "-f", "1"]):
        res = subprocess.run([str(BIN / "hodeictl"), "--socket", str(tmp_path / "none.sock"), *cmd],
                             capture_output=True, timeout=30)
        assert res.returncode == 3, cmd
        assert b"hodeid is not running" in res.stderr and b"start it with `hodeid`" in res.stderr
        assert b"Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


# Submits with every kind of option submit reads.
SUBMITS = [
    ["true"],
    ["--name", "all", "-e", "A=1", "--env=B=two words", "--cwd", "/tmp", "--timeout", "30", "--grace=2.5",
     "--priority", "-3", "--label", "k=v", "-l", "x=y", "--retries", "1", "--retry-on-failure", "--",
     "sh", "-c", 'echo "$A/$B/$(pwd)"', "ignored"],
    ["-n", "shell", "--env", "C=3", 'echo "$C" | tr 3 4'],
    ["--json", "--", "-x"],
]


@pytest.mark.parametrize("args", SUBMITS)
def test_fast_parser_and_typer_queue_the_same_job(daemon: Daemon, args: list[str]) -> None:
    """`hodeictl submit`, read by the fast parser, queues exactly the job the typer app would."""
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


def test_commands_load_neither_typer_nor_rich(daemon: Daemon, tmp_path) -> None:
    """Every command, its output in a pipe, runs without importing typer, click or rich: they take
    longer to load than the command takes to run. (--help may load them.)"""
    jid = daemon.submit("echo hi")
    daemon.wait_final(jid)
    probe = "\n".join([
        "import sys",
        "from hodeictl.main import main",
        "sys.argv[0] = 'hodeictl'",
        "try:",
        "    main()",
        "finally:",
        "    loaded = {m.split('.')[0] for m in sys.modules}",
        "    print(sorted(loaded & {'typer', 'click', 'rich'}), file=sys.stderr)",
    ])
    lines = tmp_path / "lines"
    lines.write_text("true\n")
    for cmd in (["submit", "true"], ["submit", "--from", str(lines)], ["submit", "-f", "true"], ["list"],
                ["ls", "--json"], ["show", str(jid)], ["workers"], ["wait", str(jid)], ["cancel", str(jid)],
                ["logs", str(jid)], ["logs", "-f", str(jid)], ["list", "--bogus"]):
        res = subprocess.run([str(BIN / "python"), "-c", probe, *cmd], capture_output=True, env=daemon.env,
                             timeout=60, check=False)
        assert res.returncode == (2 if "--bogus" in cmd else 0), (cmd, res.stderr)
        assert res.stderr.splitlines()[-1] == b"[]", (cmd, res.stderr)

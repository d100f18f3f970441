"""No file or secret leaks between users: working directories, environments, state files, worker tokens."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN, Daemon, need_root, processes_with_env, wait_for
from test_access import NOBODY, as_nobody
from test_remote_agents import free_port, start_agent

from hodei.frames import body_size, encode_frame
from hodei.protocol import PROTOCOL_VERSION, ErrorCode, Hello, Role
from hodeid.access import NOBODYS, Caller, sees_all


@pytest.fixture
def private_dir():
    """A directory only root may enter, holding a secret; and a way in for nobody through a symlink."""
    root = Path(tempfile.mkdtemp(prefix="hodei-priv"))
    root.chmod(0o755)
    private = root / "private"
    private.mkdir(mode=0o700)
    (private / "s.txt").write_text("secret\n")
    (private / "sub").mkdir()
    link = root / "link"
    link.symlink_to(private)
    yield private, link
    shutil.rmtree(root)


def test_cwd_is_entered_as_the_submitting_user(shared: Daemon, private_dir) -> None:
    """A user cannot read another's files by running a job in their private directory, directly or
    through a symlink; the refusal says the same whether the path exists or not."""
    private, link = private_dir
    for cwd in (private, link, private / "sub"):
        res = as_nobody(shared, "submit", "-f", "--cwd", str(cwd), "cat s.txt ../s.txt; pwd")
        assert b"secret" not in res.stdout and res.returncode == 127, res
        (job,) = json.loads(as_nobody(shared, "list", "--json", "--limit", "1").stdout)
        assert job["state"] == "failed" and job["reason"] == f"the job's user may not enter the working directory {cwd}"
    missing = private / "nope"
    as_nobody(shared, "submit", "-f", "--cwd", str(missing), "true")
    (job,) = json.loads(as_nobody(shared, "list", "--json", "--limit", "1").stdout)
    assert job["reason"] == f"the job's user may not enter the working directory {missing}"  # no hint it is missing
    # root's own jobs still run there, and the user's own directories still work
    assert shared.ctl("submit", "-f", "--cwd", str(private), "cat s.txt").stdout == b"secret\n"
    res = as_nobody(shared, "submit", "-f", "--cwd", "/tmp", "pwd")
    assert res.returncode == 0 and res.stdout == b"/tmp\n", res


def test_a_missing_directory_is_named_as_missing_to_its_own_user(daemon: Daemon, tmp_path) -> None:
    """Where the user may look, a missing working directory is reported as missing."""
    jid = daemon.submit("--cwd", str(tmp_path / "gone"), "true")
    job = daemon.wait_final(jid)
    assert job["state"] == "failed" and job["reason"] == f"the working directory {tmp_path / 'gone'} does not exist"


PROBE = "import os, sys; from hodeictl.client import Client; from hodei.protocol import JobSpec\n" \
        "with Client() as c: print(c.submit(JobSpec(command=['env'], shell=True)).id)"


def test_a_job_never_inherits_hodeids_environment(make_daemon) -> None:
    """A spec with no environment of its own (the Python client's default) gets its user's basics, not
    the daemon's environment and whatever secrets it was started with."""
    d: Daemon = make_daemon(start=False)
    os.environ["HODEI_TEST_DAEMON_SECRET"] = "s3cr3t"
    try:
        d.start()
    finally:
        del os.environ["HODEI_TEST_DAEMON_SECRET"]
    jid = int(subprocess.run([sys.executable, "-c", PROBE], env=d.env, capture_output=True, check=True).stdout)
    assert d.wait_final(jid)["state"] == "succeeded"
    env = dict(line.split("=", 1) for line in d.output(jid).decode().splitlines() if "=" in line)
    assert "HODEI_TEST_DAEMON_SECRET" not in env and not any("TOKEN" in k for k in env)
    import pwd
    me = pwd.getpwuid(os.geteuid())
    assert env["HOME"] == me.pw_dir and env["USER"] == env["LOGNAME"] == me.pw_name
    assert env["SHELL"] == me.pw_shell and "/usr/bin" in env["PATH"].split(":")
    # The CLI still brings the submitting shell's environment, which is what a user expects
    out = d.ctl("submit", "-f", "echo $HODEI_TEST_CLIENT_VAR", env={"HODEI_TEST_CLIENT_VAR": "mine"}).stdout
    assert out == b"mine\n"


def test_jobs_get_the_submitters_umask(daemon: Daemon) -> None:
    """Files a job creates get the permissions they would in the shell that submitted it."""
    res = subprocess.run(["sh", "-c", f"umask 027; exec {BIN / 'hodeictl'} submit -f umask"], env=daemon.env,
                         capture_output=True, check=True)
    assert res.stdout == b"0027\n"


def test_jobs_get_the_submitters_open_file_limit(make_daemon) -> None:
    """A job's `ulimit -n` is the submitting shell's, lower or higher than hodeid's own soft limit."""
    d: Daemon = make_daemon(start=False)
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert old[1] == resource.RLIM_INFINITY or old[1] >= 2048, "this test needs a hard limit of 2048 at least"
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, old[1]))  # hodeid and its agents get 1024
    try:
        d.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    for soft in (777, 2048):
        res = subprocess.run(["sh", "-c", f"ulimit -Sn {soft}; exec {BIN / 'hodeictl'} submit -f 'ulimit -n'"],
                             env=d.env, capture_output=True, check=True)
        assert res.stdout == f"{soft}\n".encode(), soft


def test_state_files_are_private_whatever_the_umask(make_daemon) -> None:
    """The database (every job's environment) and logs are readable by hodeid alone, even when its
    state directory already existed open to everyone and it was started with umask 022."""
    d: Daemon = make_daemon(start=False)
    d.state_dir.mkdir(mode=0o755)
    d.state_dir.chmod(0o755)
    old = os.umask(0o022)
    try:
        d.start()
    finally:
        os.umask(old)
    jid = d.submit("--env", "API_KEY=hunter2", "echo out; echo err >&2")
    d.wait_final(jid)
    assert "made it 0700" in d.log()
    seen = []
    for dirpath, _dirnames, filenames in os.walk(d.state_dir):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for name in filenames:
            path = os.path.join(dirpath, name)
            seen.append(name)
            assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, (path, oct(os.stat(path).st_mode))
    assert {"hodei.db", "hodei.db-wal", f"{jid}.1.log"} <= set(seen)


def test_workers_hide_other_users_job_ids(shared: Daemon) -> None:
    """`hodeictl workers` shows a user the workers, but only their own jobs on them."""
    mine = shared.submit("sleep 300")
    shared.wait_state(mine, "running")
    listed = json.loads(as_nobody(shared, "workers", "--json").stdout)
    assert listed and all(w["job_id"] is None for w in listed)
    assert mine in [w["job_id"] for w in shared.workers()]
    shared.ctl("cancel", "--grace", "0", str(mine))


def test_an_unknown_caller_sees_nothing() -> None:
    """When a caller's uid cannot be read from the socket, it is no admin (fail closed)."""
    assert sees_all(None, None) is False
    assert sees_all(None, 0) is True
    unknown = Caller.of(None, None)
    assert unknown.owner == unknown.own == NOBODYS  # its listings hold no job, its own or another's
    assert Caller.of(None, 0).owner is None and Caller.of(None, 1000).owner == 1000


def hello(address: tuple[str, int], worker_id: str, token: str) -> bytes:
    """One raw agent handshake; the reply frame's body."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.AGENT, worker_id=worker_id, token=token)))
        f = s.makefile("rb")
        return f.read(body_size(f.read(4)))


def test_a_second_connection_with_a_live_workers_token_is_refused(make_daemon) -> None:
    """Whoever holds a worker's token cannot connect as that worker while its agent is connected,
    and hodeid logs the attempt."""
    port = free_port()
    d: Daemon = make_daemon("--agent-listen", f"127.0.0.1:{port}")
    added = json.loads(d.ctl("agents", "add", "--json").stdout)
    agent = start_agent(d, f"tcp://127.0.0.1:{port}", added["worker_id"], added["token"])
    try:
        wait_for(lambda: d.workers() and d.workers()[0]["state"] == "idle", timeout=30, what="the remote agent")
        reply = hello(("127.0.0.1", port), added["worker_id"], added["token"])
        assert ErrorCode.AUTH.value.encode() in reply and b"second connection" in reply
        assert "refused a second connection" in d.log()
        jid = d.submit("echo still mine")  # the real agent is untouched
        assert d.wait_final(jid)["worker_id"] == added["worker_id"] and d.output(jid) == b"still mine\n"
    finally:
        agent.kill()
        agent.wait()


@contextlib.contextmanager
def hodeid_as_nobody() -> Iterator[tuple[dict[str, str], list[str]]]:
    """A hodeid run by an ordinary user (nobody); yields its clients' environment and the setpriv prefix."""
    need_root("needs root to run hodeid as another user")
    root = Path(tempfile.mkdtemp(prefix="hodei-u"))
    try:
        os.chown(root, NOBODY, NOBODY)
        sock = root / "s.sock"
        env = {**os.environ, "HODEI_SOCKET": str(sock), "HOME": str(root)}
        as_user = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        with open(root / "hodeid.log", "wb") as log:
            proc = subprocess.Popen([*as_user, str(BIN / "hodeid"), "--state-dir", str(root / "state"), "--socket",
                                     str(sock)], env=env, stdout=log, stderr=log, cwd="/")
            try:
                wait_for(sock.exists, timeout=15, what="hodeid as nobody")
                yield env, as_user
            finally:
                proc.terminate()
                proc.wait(15)
    finally:
        for pid in processes_with_env("HODEI_AGENT_SOCKET", str(root / "agent" / "agent.sock")):
            os.kill(pid, 9)
        shutil.rmtree(root, ignore_errors=True)


def test_a_job_cannot_read_its_agents_token() -> None:
    """On a hodeid run by an ordinary user, jobs run as that same user: they still cannot read the
    worker's token from the agent's environment or memory."""
    with hodeid_as_nobody() as (env, as_user):
        probe = "tr '\\0' '\\n' < /proc/$PPID/environ; grep -a -o 'HODEI_WORKER_TOKEN=[^ ]*' /proc/$PPID/mem; true"
        res = subprocess.run([*as_user, str(BIN / "hodeictl"), "submit", "-f", probe], env=env,
                             capture_output=True, timeout=60, cwd="/")
        assert res.returncode == 0, res
        assert b"TOKEN" not in res.stdout and b"Permission denied" in res.stderr, res


def test_a_hodeid_that_cannot_run_jobs_as_the_caller_refuses_with_the_permission_status() -> None:
    """root asking a hodeid run by nobody to run a job is refused (exit 77, the permission status), and told
    what to do; nothing is queued."""
    with hodeid_as_nobody() as (env, as_user):
        res = subprocess.run([str(BIN / "hodeictl"), "submit", "true"], env=env, capture_output=True, timeout=60)
        assert res.returncode == 77, res
        assert b"cannot run jobs as uid 0; start your own hodeid" in res.stderr, res
        listed = subprocess.run([*as_user, str(BIN / "hodeictl"), "list", "--json"], env=env, capture_output=True,
                                timeout=60, cwd="/")
        assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed

"""Running jobs and their output survive hodeid restarts, graceful or not (local provider)."""

from __future__ import annotations

import hashlib
import signal

import pytest
from conftest import Daemon, pid_alive, wait_for


@pytest.mark.parametrize("how", ["graceful", "kill -9"])
def test_running_job_survives_a_restart_with_its_whole_log(make_daemon, tmp_path, how: str) -> None:
    """The job keeps running across the restart, and its log is byte for byte what it wrote."""
    d: Daemon = make_daemon()
    gate = tmp_path / "gate"
    script = (f"echo $$ > {tmp_path}/pid; i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo line $i; sleep 0.01; done;"
              f" head -c 3000000 /dev/urandom | tee {tmp_path}/tail.bin; echo; echo done")
    jid = d.submit(script)
    wait_for(lambda: d.output(jid).count(b"\n") > 20, what="some output")
    pid = int((tmp_path / "pid").read_text())
    if how == "graceful":
        assert d.stop() == 0
    else:
        d.kill()
    assert pid_alive(pid)  # the job did not die with the daemon
    d.start()
    wait_for(lambda: d.job(jid)["state"] == "running" and d.workers() and d.workers()[0]["job_id"] == jid,
             timeout=20, what="the agent to reconnect with its job")
    gate.touch()
    job = d.wait_final(jid)
    assert job["state"] == "succeeded"
    out = d.output(jid)
    head, _, _ = out.partition(b"\n" + (tmp_path / "tail.bin").read_bytes()[:16])
    lines = head.split(b"\n")
    assert lines == [f"line {i}".encode() for i in range(1, len(lines) + 1)]  # no gap, no repeat
    assert hashlib.sha256(out[len(head) + 1 : len(head) + 1 + 3000000]).digest() == \
        hashlib.sha256((tmp_path / "tail.bin").read_bytes()).digest()
    assert out.endswith(b"\ndone\n")


def test_result_produced_while_the_daemon_is_down_is_delivered(make_daemon, tmp_path) -> None:
    """A job that ends while hodeid is stopped gets its real exit code once hodeid is back."""
    d: Daemon = make_daemon()
    gate = tmp_path / "gate"
    jid = d.submit(f"echo $$ > {tmp_path}/pid; echo before; while [ ! -e {gate} ]; do sleep 0.02; done;"
                   " echo after; exit 5")
    wait_for(lambda: d.output(jid) == b"before\n", what="the job to start")
    d.kill()
    gate.touch()
    wait_for(lambda: not pid_alive(int((tmp_path / "pid").read_text())), what="the job to end")
    d.start()
    job = d.wait_final(jid)
    assert (job["state"], job["exit_code"]) == ("failed", 5)
    assert d.output(jid) == b"before\nafter\n"


def test_follower_survives_a_restart(make_daemon, tmp_path) -> None:
    """`logs -f` rides out a daemon restart: it reconnects and continues without gaps or repeats."""
    d: Daemon = make_daemon()
    gate = tmp_path / "gate"
    jid = d.submit(f"for i in $(seq 1 50); do echo a$i; done; while [ ! -e {gate} ]; do sleep 0.02; done;"
                   " for i in $(seq 1 50); do echo b$i; done")
    follower = d.popen_ctl("logs", "-f", str(jid))
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"a1\n"
    d.signal(signal.SIGTERM)
    assert d.proc is not None and d.proc.wait(timeout=15) == 0
    d.stop()
    d.start()
    gate.touch()
    rest = follower.stdout.read()  # not communicate(): it would skip what readline() buffered
    assert follower.wait(timeout=60) == 0
    follower.stdout.close()
    assert follower.stderr is not None
    follower.stderr.close()
    expected = [f"a{i}" for i in range(1, 51)] + [f"b{i}" for i in range(1, 51)]
    assert (b"a1\n" + rest).decode().split() == expected


def test_job_whose_worker_never_returns_is_lost(make_daemon, tmp_path) -> None:
    """If a job's agent is gone when hodeid comes back, the job ends lost with a reason."""
    d: Daemon = make_daemon()
    jid = d.submit(f"echo $$ > {tmp_path}/pid; sleep 300")
    wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip(), what="the job")
    d.wait_state(jid, "running")  # hodeid has stored the job's pid (with both daemon and agent dead
    d.kill()                      # before that, nobody could know which process to kill)
    for agent in d.agents():
        import os

        os.kill(agent, signal.SIGKILL)
    d.start()
    job = d.wait_final(jid, timeout=20)
    assert job["state"] == "lost" and job["reason"]
    wait_for(lambda: not pid_alive(int((tmp_path / "pid").read_text())), what="the orphaned job to be killed")


def test_chatty_job_runs_on_while_the_daemon_is_down(make_daemon, tmp_path) -> None:
    """With hodeid gone, a job writing 40 MB is not paused: the agent spools its output, then resends it."""
    d: Daemon = make_daemon()
    gate, end, copy = tmp_path / "gate", tmp_path / "end", tmp_path / "copy.bin"
    jid = d.submit(f"echo go; until [ -e {gate} ]; do sleep 0.02; done; head -c 41943040 /dev/urandom | tee {copy};"
                   f" touch {end}")
    wait_for(lambda: d.output(jid) == b"go\n", what="the job to start")
    d.kill()
    gate.touch()
    wait_for(end.exists, timeout=60, what="the job to finish while hodeid is down")
    d.start()
    job = d.wait_final(jid, timeout=60)
    assert job["state"] == "succeeded"
    out = d.ctl("logs", str(jid), timeout=60).stdout
    assert out == b"go\n" + copy.read_bytes()

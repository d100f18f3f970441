"""hodeid never signals a process it cannot prove is its own: a pid is checked against the start time
stored with it, so a process that took a dead agent's or job's pid (after a reboot, say) is left alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from conftest import Daemon, need_root, pid_alive, wait_for

from hodei import procs
from hodeid.config import Config
from hodeid.providers.local import LocalProvider


def gone_from_proc(pid: int) -> bool:
    """Dead and reaped: the pid is free for another process."""
    return not os.path.exists(f"/proc/{pid}")


def take_pid(pid: int, tries: int = 50) -> subprocess.Popen[bytes]:
    """Start a stranger (its own session, like any daemon) that gets exactly ``pid``; retry when another
    process on the machine takes it first."""
    for _ in range(tries):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    raise AssertionError(f"could not start a process with pid {pid} in {tries} tries")


@pytest.fixture
def strangers() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        proc.kill()
        proc.wait()


def test_processes_that_took_dead_pids_are_not_killed(make_daemon, tmp_path, strangers) -> None:
    """As after a reboot: hodeid, its agent and the job die; unrelated processes get the agent's and the
    job's pids; the restarted hodeid marks the job lost and leaves both processes alive."""
    need_root("needs root to choose the next pid through /proc/sys/kernel/ns_last_pid")
    d: Daemon = make_daemon()
    jid = d.submit(f"echo $$ > {tmp_path}/pid; exec sleep 300")
    d.wait_state(jid, "running")  # its pid is stored
    job_pid = int((tmp_path / "pid").read_text())
    [agent] = d.agents()
    d.kill()
    os.kill(agent, signal.SIGKILL)
    os.killpg(job_pid, signal.SIGKILL)
    wait_for(lambda: gone_from_proc(agent) and gone_from_proc(job_pid), timeout=30,
             what="the agent and the job to be reaped (by init: their parents are dead)")
    strangers.append(take_pid(agent))
    strangers.append(take_pid(job_pid))
    d.start()
    job = d.wait_state(jid, "lost", timeout=30)
    assert "lost" in job["reason"]
    assert d.stop() == 0  # hodeid has finished removing the worker: whatever it would signal, it has
    assert [pid_alive(p.pid) for p in strangers] == [True, True]


def test_local_provider_signals_only_a_pid_with_its_start_time(tmp_path) -> None:
    """stop, kill_job and exited act on a pid only when its start time is the stored one; a handle
    stored without one (before this check existed) is never signalled."""
    provider = LocalProvider(Config(state_dir=tmp_path))
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        stamp = procs.stamp(proc.pid)
        assert stamp
        other = str(int(stamp.split("@")[0]) + 1) + "@" + stamp.split("@")[1]
        asyncio.run(provider.stop(f"{proc.pid}:{other}", force=True))
        asyncio.run(provider.stop(str(proc.pid), force=True))  # an old handle: no start time
        asyncio.run(provider.kill_job("", proc.pid, other))
        asyncio.run(provider.kill_job("", proc.pid, ""))
        assert proc.poll() is None
        assert asyncio.run(provider.exited(f"{proc.pid}:{other}")) == "the agent process is gone"
        assert asyncio.run(provider.exited(f"{proc.pid}:{stamp}")) is None
        asyncio.run(provider.kill_job("", proc.pid, stamp))
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()

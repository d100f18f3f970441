"""A full disk holds a job's output up instead of losing it, and hodeid recovers when space returns."""

from __future__ import annotations

import subprocess

import pytest

from conftest import Daemon, need_root, wait_for


@pytest.fixture
def small_state(make_daemon):
    """hodeid whose state directory is a 24 MiB tmpfs (root only: it mounts one)."""
    need_root("needs root to mount a small tmpfs")
    d: Daemon = make_daemon(start=False)
    d.state_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(d.state_dir)], check=True)
    try:
        yield d.start()
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(d.state_dir)], check=False)


def test_full_disk_holds_output_until_space_returns(small_state: Daemon, tmp_path) -> None:
    """The job's reason says the disk is full, the daemon keeps serving, and no byte is lost."""
    d = small_state
    copy, end = tmp_path / "copy.bin", tmp_path / "end"
    jid = d.submit(f"head -c 41943040 /dev/urandom | tee {copy}; touch {end}")
    reason = wait_for(lambda: "disk full" in (r := d.job(jid)["reason"]) and r, timeout=60, what="a disk-full reason")
    assert "held by the worker" in reason and d.job(jid)["state"] == "running"
    assert d.ctl("list").returncode == 0  # still serving
    wait_for(end.exists, timeout=60, what="the job to finish, its output spooled by the agent")
    subprocess.run(["mount", "-o", "remount,size=200m", str(d.state_dir)], check=True)
    job = d.wait_final(jid, timeout=60)
    assert job["state"] == "succeeded" and job["reason"] == ""
    assert d.ctl("logs", str(jid), timeout=60).stdout == copy.read_bytes()

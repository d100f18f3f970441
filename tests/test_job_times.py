"""A job's times are when the job ran, not when hodeid got round to storing them."""

from __future__ import annotations

import sqlite3
import time

from conftest import Daemon, wait_for

# Seconds: past hodeid's 5 s busy timeout, so its first try to store the job's end fails, and the agent,
# which keeps the end until it is acknowledged, sends it again after reconnecting.
LOCK_HELD = 7.0


def test_finished_at_is_when_the_job_ended_not_when_it_was_stored(make_daemon, tmp_path) -> None:
    """While the database is locked, a job ends; its end is stored late, but with the agent's time:
    the duration shown is the job's own, not the lock's."""
    d: Daemon = make_daemon("--heartbeat-timeout", "60")  # a stalled database is not a silent worker
    gate, began, ended = tmp_path / "gate", tmp_path / "began", tmp_path / "ended"
    jid = d.submit(f"date +%s.%N > {began}; until [ -e {gate} ]; do sleep 0.01; done; date +%s.%N > {ended}")
    d.wait_state(jid, "running")
    db = sqlite3.connect(d.state_dir / "hodei.db", isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")  # hodeid can read, but not write
        gate.touch()
        wait_for(lambda: ended.exists() and ended.read_text().strip(), what="the job to end")
        time.sleep(LOCK_HELD)  # the fault: the database stays locked this long after the job ended
        # Its end is not stored yet. (Asked here, not through hodeictl: hodeid's one database thread
        # is waiting for the lock, so hodeictl would wait for it too, and keep the lock held.)
        assert db.execute("SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone() == ("running",)
    finally:
        db.execute("ROLLBACK")
        db.close()
    job = d.wait_final(jid)
    assert job["state"] == "succeeded"
    job_began, job_ended = float(began.read_text()), float(ended.read_text())
    # The agent stamps the start just after spawning and the end just after the exit: within a
    # fraction of a second of the job's own clock readings, where the lock would add seconds.
    assert abs(job["started_at"] - job_began) < 1.0
    assert abs(job["finished_at"] - job_ended) < 1.0, (job["finished_at"] - job_ended)
    assert job["finished_at"] - job["started_at"] < (job_ended - job_began) + 1.0

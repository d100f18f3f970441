"""One owner of a job's life: cancel requests kept with the job, and every end keeps its books."""

from __future__ import annotations

import contextlib
import os
import signal

from conftest import Daemon, pid_alive, wait_for


def test_a_cancel_asked_while_the_agent_is_away_survives_restarts(make_daemon, tmp_path) -> None:
    """A cancel that hodeid could not deliver (the agent was away) is stored with the job: two restarts
    of hodeid later, the agent reconnects, gets it, and the job ends cancelled with its TERM trap run."""
    d: Daemon = make_daemon("--heartbeat-timeout", "60")
    marker = tmp_path / "pid"
    jid = d.submit(f"trap 'echo got TERM; exit 143' TERM; echo $$ > {marker}; while :; do sleep 0.1; done")
    d.wait_state(jid, "running")
    (agent,) = d.agents()
    os.kill(agent, signal.SIGSTOP)  # away: it will reconnect only once continued
    try:
        d.kill()
        d.start()
        res = d.ctl("cancel", "--no-wait", str(jid))
        assert d.job(jid)["state"] == "running", res  # asked for, not delivered: the agent is away
        d.kill()
        d.start()
    finally:
        os.kill(agent, signal.SIGCONT)
    job = d.wait_final(jid, timeout=30)
    assert (job["state"], job["reason"]) == ("cancelled", "cancelled by user")
    assert b"got TERM" in d.output(jid)
    wait_for(lambda: not pid_alive(int(marker.read_text())), what="the job's process to be gone")


def test_a_cancel_enforced_by_hodeid_keeps_the_jobs_books(make_daemon, tmp_path) -> None:
    """When the agent does not answer a cancel, hodeid kills the job's processes and ends it cancelled
    through the same end as any other: its output counted and its log closed."""
    d: Daemon = make_daemon("--heartbeat-timeout", "60")
    marker = tmp_path / "pid"
    jid = d.submit(f"echo $$ > {marker}; echo hello; exec sleep 300")
    wait_for(lambda: d.output(jid) == b"hello\n", what="the job's output")
    d.wait_state(jid, "running")
    (agent,) = d.agents()
    os.kill(agent, signal.SIGSTOP)  # it will not answer
    try:
        d.ctl("cancel", "--grace", "0", str(jid), timeout=60)
        job = d.job(jid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # hodeid removed that worker: it is gone already
            os.kill(agent, signal.SIGKILL)
    assert job["state"] == "cancelled" and "did not answer" in job["reason"], job
    assert job["reason"].startswith("cancelled by user")
    assert job["log_bytes"] == 6 and d.output(jid) == b"hello\n"
    assert not pid_alive(int(marker.read_text()))

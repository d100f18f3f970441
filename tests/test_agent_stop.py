"""An agent told to stop (its worker is stopped) ends its job and reports it before it exits: the job's
last report is not lost with the agent's other tasks."""

from __future__ import annotations

import os
import signal

from conftest import Daemon, wait_for


def test_a_stopped_agent_reports_its_jobs_end_before_it_exits(daemon: Daemon) -> None:
    jid = daemon.submit("sleep 300")
    daemon.wait_state(jid, "running")
    [agent] = daemon.agents()
    os.kill(agent, signal.SIGTERM)
    job = daemon.wait_final(jid)
    assert job["state"] == "cancelled"
    assert job["reason"] == "the worker was stopped"
    wait_for(lambda: agent not in daemon.agents(), what="the agent to exit")

"""Workers appear on demand, run jobs in parallel, and go away when idle; the queue is fair."""

from __future__ import annotations

from conftest import Daemon, wait_for


def test_auto_provisions_from_zero_workers(make_daemon) -> None:
    """With no worker running, a submit starts one, which registers and runs the job."""
    d: Daemon = make_daemon()
    assert d.workers() == [] and d.agents() == []
    jid = d.submit("echo provisioned")
    assert d.wait_final(jid)["state"] == "succeeded"
    assert d.output(jid) == b"provisioned\n"
    workers = d.workers()
    assert len(workers) == 1 and workers[0]["provider"] == "local" and workers[0]["jobs_run"] == 1
    assert workers[0]["last_heartbeat"] is not None


def test_five_jobs_run_in_parallel_on_five_workers(make_daemon) -> None:
    """Five `sleep 2` jobs with five workers all run at the same time."""
    d: Daemon = make_daemon("--max-workers", "5", "--min-idle", "5")
    wait_for(lambda: [w["state"] for w in d.workers()] == ["idle"] * 5, timeout=30, what="five idle workers")
    submits = [d.popen_ctl("submit", "sleep 2") for _ in range(5)]  # at once, as five shells would
    ids = [int(p.communicate(timeout=30)[0]) for p in submits]
    jobs = [d.wait_final(jid, timeout=60) for jid in ids]
    assert all(j["state"] == "succeeded" for j in jobs)
    assert len({j["worker_id"] for j in jobs}) == 5
    # Every job started before any job finished: they overlapped, so the total is one job's time, not five.
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs)


def test_max_workers_is_respected(make_daemon, tmp_path) -> None:
    """No more workers than --max-workers exist, however many jobs wait."""
    d: Daemon = make_daemon("--max-workers", "2")
    gate = tmp_path / "gate"
    ids = [d.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done") for _ in range(5)]
    wait_for(lambda: sum(j["state"] == "running" for j in d.jobs()) == 2, what="two running jobs")
    assert len(d.workers()) == 2 and len(d.agents()) == 2
    assert sum(j["state"] == "queued" for j in d.jobs()) == 3
    gate.touch()
    for jid in ids:
        assert d.wait_final(jid)["state"] == "succeeded"
    assert len(d.agents()) <= 2


def test_priority_then_fifo(make_daemon, tmp_path) -> None:
    """Queued jobs start by priority, highest first, and in submission order within a priority."""
    d: Daemon = make_daemon("--max-workers", "1")
    gate, order = tmp_path / "gate", tmp_path / "order"
    blocker = d.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    d.wait_state(blocker, "running")
    for name, prio in (("low1", "0"), ("low2", "0"), ("high", "5"), ("mid", "1")):
        d.submit("--priority", prio, f"echo {name} >> {order}")
    gate.touch()
    wait_for(lambda: all(j["state"] == "succeeded" for j in d.jobs()), timeout=30, what="all jobs to finish")
    assert order.read_text().split() == ["high", "mid", "low1", "low2"]


def test_idle_workers_are_stopped_after_the_idle_timeout(make_daemon) -> None:
    """A worker idle past --idle-timeout is stopped, and its process exits."""
    d: Daemon = make_daemon("--idle-timeout", "1")
    jid = d.submit("true")
    assert d.wait_final(jid)["worker_id"]  # a worker ran it (it may already be gone: the timeout is short)
    wait_for(lambda: d.workers() == [] and d.agents() == [], timeout=15, what="the idle worker to go away")
    again = d.submit("echo again")  # and a new one comes when work does
    assert d.wait_final(again)["state"] == "succeeded"


def test_min_idle_keeps_workers_warm(make_daemon) -> None:
    """--min-idle workers are started with no job queued and kept past the idle timeout."""
    d: Daemon = make_daemon("--min-idle", "2", "--idle-timeout", "0.5")
    wait_for(lambda: [w["state"] for w in d.workers()] == ["idle", "idle"], timeout=15, what="two idle workers")
    pids = sorted(d.agents())
    assert len(pids) == 2
    jid = d.submit("true")
    d.wait_final(jid)
    wait_for(lambda: len([w for w in d.workers() if w["state"] == "idle"]) == 2, what="two idle workers again")


def test_a_dead_agent_makes_its_job_lost(make_daemon, tmp_path) -> None:
    """When a worker's agent dies mid-job, the job ends lost with a reason; nothing keeps running."""
    import os
    import signal

    from conftest import pid_alive

    d: Daemon = make_daemon()
    marker = tmp_path / "pid"
    jid = d.submit(f"echo $$ > {marker}; sleep 300")
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the job to start")
    d.wait_state(jid, "running")  # hodeid has heard of its start (and pid) from the agent
    (agent,) = d.agents()
    os.kill(agent, signal.SIGKILL)
    job = d.wait_final(jid, timeout=20)
    assert job["state"] == "lost" and job["worker_id"] in job["reason"]
    wait_for(lambda: not pid_alive(int(marker.read_text())), what="the job's process to be killed")
    assert d.ctl("wait", str(jid), check=False).returncode == 125
    assert d.wait_final(d.submit("true"))["state"] == "succeeded"  # and the daemon carries on

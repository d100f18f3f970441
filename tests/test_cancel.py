"""Cancel and timeout stop the job's processes for real: SIGTERM, then SIGKILL after the grace."""

from __future__ import annotations

from conftest import Daemon, pid_alive, wait_for


def _started(daemon: Daemon, jid: int, marker) -> None:
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the job to start")


def test_cancel_delivers_sigterm_and_kills_a_background_grandchild(daemon: Daemon, tmp_path) -> None:
    """The job's trap sees SIGTERM, and a background grandchild dies too."""
    marker = tmp_path / "grandchild.pid"
    jid = daemon.submit(f"trap 'echo got TERM; exit 143' TERM; sleep 300 & echo $! > {marker}; wait")
    _started(daemon, jid, marker)
    grandchild = int(marker.read_text())
    assert pid_alive(grandchild)
    res = daemon.ctl("cancel", str(jid))
    assert b"cancelled" in res.stdout
    job = daemon.job(jid)
    assert job["state"] == "cancelled" and job["reason"] == "cancelled by user"
    assert daemon.output(jid) == b"got TERM\n"
    assert not pid_alive(grandchild)


def test_job_ignoring_sigterm_is_killed_after_the_grace(daemon: Daemon, tmp_path) -> None:
    """A job that traps SIGTERM away is SIGKILLed once the grace period is over."""
    marker = tmp_path / "pid"
    jid = daemon.submit("--grace", "1", f"trap '' TERM; echo $$ > {marker}; while :; do sleep 0.1; done")
    _started(daemon, jid, marker)
    pid = int(marker.read_text())
    daemon.ctl("cancel", str(jid))
    job = daemon.job(jid)
    assert job["state"] == "cancelled" and job["signal"] == 9
    assert not pid_alive(pid)


def test_cancel_grace_can_be_given_at_cancel_time(daemon: Daemon, tmp_path) -> None:
    """`cancel --grace 0` kills at once, whatever the job's own grace."""
    marker = tmp_path / "pid"
    jid = daemon.submit("--grace", "600", f"trap '' TERM; echo $$ > {marker}; while :; do sleep 0.1; done")
    _started(daemon, jid, marker)
    daemon.ctl("cancel", "--grace", "0", str(jid), timeout=30)
    assert daemon.job(jid)["state"] == "cancelled"
    assert not pid_alive(int(marker.read_text()))


def test_timeout_stops_the_job_as_timed_out(daemon: Daemon, tmp_path) -> None:
    """--timeout sends SIGTERM when it expires; the job ends timed_out, and `wait` exits 124."""
    marker = tmp_path / "pid"
    jid = daemon.submit("--timeout", "0.5", "--grace", "1", f"echo $$ > {marker}; trap '' TERM; sleep 300")
    job = daemon.wait_final(jid)
    assert job["state"] == "timed_out" and "timed out" in job["reason"]
    assert not pid_alive(int(marker.read_text()))
    assert daemon.ctl("wait", str(jid), check=False).returncode == 124


def test_cancel_a_queued_job(make_daemon, tmp_path) -> None:
    """A job still in the queue is cancelled at once and never runs."""
    d: Daemon = make_daemon("--max-workers", "1")
    gate, ran = tmp_path / "gate", tmp_path / "ran"
    blocker = d.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    d.wait_state(blocker, "running")
    queued = d.submit(f"touch {ran}")
    d.ctl("cancel", str(queued))
    assert d.job(queued)["state"] == "cancelled"
    gate.touch()
    d.wait_final(blocker)
    follow_up = d.submit("true")
    d.wait_final(follow_up)
    assert not ran.exists()
    assert d.job(queued)["started_at"] is None


def test_cancel_no_wait_returns_before_the_job_stops(daemon: Daemon, tmp_path) -> None:
    """--no-wait returns at once; the job still ends cancelled."""
    marker = tmp_path / "pid"
    jid = daemon.submit("--grace", "2", f"trap '' TERM; echo $$ > {marker}; while :; do sleep 0.1; done")
    _started(daemon, jid, marker)
    daemon.ctl("cancel", "--no-wait", str(jid))
    assert daemon.job(jid)["state"] == "running"
    assert daemon.wait_final(jid)["state"] == "cancelled"


def test_cancel_of_a_finished_job_changes_nothing(daemon: Daemon) -> None:
    """Cancelling a job that already ended leaves its state as it was."""
    jid = daemon.submit("true")
    daemon.wait_final(jid)
    res = daemon.ctl("cancel", str(jid))
    assert b"succeeded" in res.stdout and daemon.job(jid)["state"] == "succeeded"

"""--retries runs a lost (or, with --retry-on-failure, failed) job again, keeping each attempt's output."""

from __future__ import annotations

from conftest import Daemon, wait_for


def dies_once(tmp_path) -> str:
    """A job whose first attempt prints, waits for the test's gate, then kills its own agent."""
    marker, gate = tmp_path / "first-done", tmp_path / "gate"
    return (f"if [ ! -e {marker} ]; then touch {marker}; echo first; until [ -e {gate} ]; do sleep 0.02; done;"
            " kill -9 $PPID; sleep 100; fi; echo second")


def test_lost_job_is_retried_and_each_attempt_keeps_its_output(daemon: Daemon, tmp_path) -> None:
    """The first attempt's worker dies; the second attempt runs and succeeds; both logs stay readable."""
    jid = daemon.submit("--retries", "1", dies_once(tmp_path))
    wait_for(lambda: daemon.output(jid) == b"first\n", what="the first attempt's output")
    (tmp_path / "gate").touch()
    job = daemon.wait_final(jid, timeout=40)
    assert job["state"] == "succeeded" and job["attempt"] == 2
    assert daemon.output(jid) == b"second\n"
    assert daemon.ctl("logs", "--attempt", "1", str(jid)).stdout == b"first\n"
    states = [e["to_state"] for e in job["history"]]
    assert states == ["queued", "assigned", "running", "queued", "assigned", "running", "succeeded"]
    lost_event = job["history"][3]
    assert "attempt 1 lost" in lost_event["reason"] and "retry 1/1" in lost_event["reason"]
    shown = daemon.ctl("show", str(jid)).stdout.decode()
    assert "history" in shown and "attempt 1 lost" in shown
    assert daemon.ctl("logs", "--attempt", "3", str(jid), check=False).returncode == 4


def test_failures_are_retried_only_when_asked(daemon: Daemon) -> None:
    """A failing job is retried with --retry-on-failure, up to --retries more times, and ends failed."""
    plain = daemon.submit("--retries", "2", "echo try; exit 3")
    asked = daemon.submit("--retries", "2", "--retry-on-failure", "echo try; exit 3")
    p, a = daemon.wait_final(plain), daemon.wait_final(asked, timeout=60)
    assert (p["state"], p["attempt"], p["exit_code"]) == ("failed", 1, 3)
    assert (a["state"], a["attempt"], a["exit_code"]) == ("failed", 3, 3)
    for k in (1, 2, 3):
        assert daemon.ctl("logs", "--attempt", str(k), str(asked)).stdout == b"try\n"
    assert daemon.ctl("wait", str(asked), check=False).returncode == 3


def test_follower_moves_on_to_the_retry(daemon: Daemon, tmp_path) -> None:
    """`logs -f` follows a job across its retry and exits with the final attempt's status."""
    jid = daemon.submit("--retries", "1", dies_once(tmp_path))
    wait_for(lambda: daemon.output(jid) == b"first\n", what="the first attempt's output")
    follower = daemon.popen_ctl("logs", "-f", str(jid))
    assert follower.stdout is not None and follower.stdout.readline() == b"first\n"
    (tmp_path / "gate").touch()
    assert follower.stdout.read() == b"second\n"
    assert follower.wait(timeout=60) == 0
    follower.stdout.close()
    assert follower.stderr is not None
    follower.stderr.close()

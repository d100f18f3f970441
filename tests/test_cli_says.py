"""hodeictl says what happened: no silent failure, no silent wait, and Ctrl-C leaves the job running."""

from __future__ import annotations

import signal

from conftest import Daemon

EXIT_DETACHED = 75


def test_a_job_that_fails_to_start_says_why(daemon: Daemon) -> None:
    """`submit -f` of a job that cannot start prints the reason on stderr, not only in `show`."""
    res = daemon.ctl("submit", "-f", "--cwd", "/nonexistent", "pwd", check=False)
    assert res.returncode == 127 and res.stdout == b""
    assert res.stderr.decode().endswith(
        "failed to start: the working directory /nonexistent does not exist\n"), res.stderr
    res = daemon.ctl("submit", "-f", "--", "hodei-no-such-command", "x", check=False)  # an argv
    assert res.returncode == 127
    assert b"failed to start: cannot run 'hodei-no-such-command': command not found\n" in res.stderr
    res = daemon.ctl("submit", "-f", "--", "hodei-no-such-command", check=False)  # a shell line: sh says it
    assert res.returncode == 127 and res.stderr.endswith(b"failed: exited with code 127\n"), res.stderr


def test_wait_and_follow_say_how_a_job_ended(daemon: Daemon) -> None:
    """A failed, a cancelled and a successful job: one line on stderr for each that did not succeed."""
    bad = daemon.submit("exit 3")
    res = daemon.ctl("wait", str(bad), check=False)
    assert res.returncode == 3 and f"hodeictl: job {bad} failed: exited with code 3\n".encode() in res.stderr
    good = daemon.submit("true")
    res = daemon.ctl("logs", "-f", str(good))
    assert res.returncode == 0 and res.stderr == b""
    slow = daemon.submit("sleep 300")
    daemon.wait_state(slow, "running")
    follower = daemon.popen_ctl("logs", "-f", str(slow))
    daemon.ctl("cancel", str(slow))
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 130 and f"hodeictl: job {slow} was cancelled: cancelled by user\n".encode() in err


def test_a_followed_job_that_waits_says_what_for(make_daemon) -> None:
    """While a followed job waits for a worker, hodeictl says so once; then its output follows."""
    d: Daemon = make_daemon("--max-workers", "1")
    blocker = d.submit("sleep 300")
    d.wait_state(blocker, "running")
    follower = d.popen_ctl("submit", "-f", "echo ran")
    assert follower.stderr is not None
    line = follower.stderr.readline().decode()
    assert line.startswith("hodeictl: job ") and line.endswith(" is queued: waiting for a worker\n"), line
    d.ctl("cancel", "--grace", "0", str(blocker))
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0 and out == b"ran\n" and err == b""


def test_ctrl_c_while_following_leaves_the_job_running(daemon: Daemon) -> None:
    """Ctrl-C in `logs -f`: the job keeps running, hodeictl says how to cancel it and exits 75, not the
    130 of a cancelled job."""
    jid = daemon.submit("echo started; sleep 300")
    follower = daemon.popen_ctl("logs", "-f", str(jid))
    assert follower.stdout is not None
    assert follower.stdout.readline() == b"started\n"  # it is following now
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)
    assert follower.returncode == EXIT_DETACHED
    assert err == (f"hodeictl: stopped following; job {jid} keeps running"
                   f" (`hodeictl cancel {jid}` stops it)\n").encode()
    assert daemon.job(jid)["state"] == "running"
    daemon.ctl("cancel", "--grace", "0", str(jid))

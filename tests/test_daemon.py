"""hodeid's own lifecycle: one daemon per socket, private sockets, systemd readiness, clean stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import subprocess

from conftest import BIN, Daemon, wait_for


def test_second_daemon_on_the_same_socket_is_refused(daemon: Daemon) -> None:
    """A second hodeid on a live socket exits with a clear message, and the first keeps serving."""
    res = subprocess.run([str(BIN / "hodeid"), "--state-dir", str(daemon.root / "other"), "--socket",
                          str(daemon.socket)], capture_output=True, timeout=30)
    assert res.returncode != 0
    assert b"another hodeid is already serving on" in res.stderr and b"Traceback" not in res.stderr
    assert daemon.wait_final(daemon.submit("true"))["state"] == "succeeded"


def test_second_daemon_on_the_same_state_dir_is_refused(daemon: Daemon) -> None:
    """Two daemons never share a database."""
    res = subprocess.run([str(BIN / "hodeid"), "--state-dir", str(daemon.state_dir), "--socket",
                          str(daemon.root / "other.sock"),
                          "--agent-socket", str(daemon.root / "other-agent" / "agent.sock")],
                         capture_output=True, timeout=30)
    assert res.returncode != 0 and b"already using the state directory" in res.stderr


def test_stale_socket_is_replaced(make_daemon) -> None:
    """A socket file left by a crashed daemon does not stop the next one from starting."""
    d: Daemon = make_daemon(start=False)
    d.root.mkdir(exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(d.socket))
    stale.close()  # the file stays, nobody listens
    d.start()
    assert d.wait_final(d.submit("true"))["state"] == "succeeded"


def test_sockets_are_private(daemon: Daemon) -> None:
    """The control and agent sockets are mode 0600."""
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.agent_socket).st_mode) == 0o600


def test_tells_systemd_it_is_ready(make_daemon) -> None:
    """With NOTIFY_SOCKET set, hodeid sends READY=1 once it serves."""
    d: Daemon = make_daemon(start=False)
    d.root.mkdir(exist_ok=True)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = d.root / "notify"
    notify.bind(str(path))
    notify.settimeout(20)
    os.environ["NOTIFY_SOCKET"] = str(path)
    try:
        d.start(wait=False)
    finally:
        del os.environ["NOTIFY_SOCKET"]
    assert notify.recv(100) == b"READY=1"
    assert d.ready()
    notify.close()


def test_sigterm_stops_cleanly_and_idle_workers_go_too(daemon: Daemon) -> None:
    """SIGTERM stops hodeid with status 0, removes its sockets, and idle agents exit."""
    daemon.wait_final(daemon.submit("true"))
    assert len(daemon.agents()) == 1
    assert daemon.stop() == 0
    assert not daemon.socket.exists() and not daemon.agent_socket.exists()
    wait_for(lambda: daemon.agents() == [], what="idle agents to exit")


def test_submitted_job_survives_kill_9(daemon: Daemon) -> None:
    """A job id that submit printed is still there after the daemon is killed right after."""
    jid = daemon.submit("--name", "durable", "echo after restart")
    daemon.kill()
    daemon.start()
    job = daemon.wait_final(jid)
    assert job["name"] == "durable"
    assert job["state"] in ("succeeded", "lost")
    if job["state"] == "succeeded":
        assert daemon.output(jid) == b"after restart\n"


def test_second_signal_forces_the_stop(daemon: Daemon, tmp_path) -> None:
    """A follower keeps the first stop waiting no longer than the second signal."""
    jid = daemon.submit("sleep 300")
    daemon.wait_state(jid, "running")
    daemon.signal(signal.SIGTERM)
    daemon.signal(signal.SIGTERM)
    assert daemon.proc is not None
    daemon.proc.wait(timeout=10)


def test_log_lines_carry_their_priority_when_stderr_is_the_journal(make_daemon) -> None:
    """When stderr is the journal (JOURNAL_STREAM names it), each line starts with its syslog priority
    and has no timestamp of its own: a lost worker is a warning (<4>), being ready is info (<6>)."""
    d: Daemon = make_daemon(start=False)
    d.log_path.touch()
    st = os.stat(d.log_path)
    os.environ["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    try:
        d.start()
    finally:
        del os.environ["JOURNAL_STREAM"]
    job = d.submit("sleep 300")
    d.wait_state(job, "running")
    for pid in d.agents():
        os.kill(pid, signal.SIGKILL)
    d.wait_final(job)
    lines = d.log().splitlines()
    assert any(line.startswith("<6>hodeid: hodeid ready: socket ") for line in lines), lines
    assert any(line.startswith("<4>hodeid.lifecycle: worker ") and " lost: " in line for line in lines), lines
    assert all(line[:1] == "<" and line[2:3] == ">" for line in lines), lines


def test_every_line_of_a_journal_record_carries_its_priority() -> None:
    """A record of several lines (a traceback) is one priority throughout, not info after its first line."""
    from hodeid.logsetup import JournalFormatter

    record = logging.LogRecord("hodeid.workers", logging.ERROR, __file__, 1, "failed:\nTraceback\n  line", None, None)
    assert JournalFormatter().format(record) == "<3>hodeid.workers: failed:\n<3>Traceback\n<3>  line"
    record.levelno = logging.DEBUG
    assert JournalFormatter().format(record).startswith("<7>")

"""Output is stored as it is produced, byte for byte, and followers see all of it."""

from __future__ import annotations

import hashlib

from conftest import Daemon, wait_for


def test_first_line_is_readable_while_the_job_runs(daemon: Daemon, tmp_path) -> None:
    """`logs` shows what a running job has written so far, not only after it ends."""
    gate = tmp_path / "gate"
    jid = daemon.submit(f"echo first line; while [ ! -e {gate} ]; do sleep 0.05; done; echo second line")
    wait_for(lambda: daemon.output(jid) == b"first line\n", what="the first line in the log")
    assert daemon.job(jid)["state"] == "running"
    gate.touch()
    daemon.wait_final(jid)
    assert daemon.output(jid) == b"first line\nsecond line\n"


def test_follow_started_before_the_job_runs_gets_everything(make_daemon, tmp_path) -> None:
    """`logs -f` on a queued job waits for it, streams all of it, and exits with its status."""
    d: Daemon = make_daemon("--max-workers", "1")
    gate = tmp_path / "gate"
    blocker = d.submit(f"while [ ! -e {gate} ]; do sleep 0.05; done")
    jid = d.submit("for i in 1 2 3; do echo out $i; echo err $i >&2; done; exit 4")
    assert d.job(jid)["state"] == "queued"
    follower = d.popen_ctl("logs", "-f", str(jid))
    gate.touch()
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 4
    assert out == b"out 1\nout 2\nout 3\n"
    assert err == f"err 1\nerr 2\nerr 3\nhodeictl: job {jid} failed: exited with code 4\n".encode()
    assert d.job(blocker)["state"] == "succeeded"


def test_follow_streams_lines_live(daemon: Daemon, tmp_path) -> None:
    """A follower sees each line while the job is still running (the job waits for us between lines)."""
    gate = tmp_path / "gate"
    jid = daemon.submit(f"for i in 1 2 3; do echo phase $i; while [ ! -e {gate}.$i ]; do sleep 0.02; done; done")
    follower = daemon.popen_ctl("logs", "-f", str(jid))
    assert follower.stdout is not None
    for i in (1, 2, 3):
        assert follower.stdout.readline() == f"phase {i}\n".encode()
        (tmp_path / f"gate.{i}").touch()
    assert follower.stdout.read() == b""
    assert follower.wait(timeout=30) == 0
    follower.stdout.close()
    assert follower.stderr is not None
    follower.stderr.close()


def test_binary_output_arrives_intact(daemon: Daemon) -> None:
    """Non-UTF-8 bytes, NULs and no trailing newline come back exactly."""
    jid = daemon.submit(r"printf '\377\376\000abc\200\n\351t\351'")
    daemon.wait_final(jid)
    assert daemon.output(jid) == b"\xff\xfe\x00abc\x80\n\xe9t\xe9"


def test_fifty_megabytes_arrive_intact(daemon: Daemon) -> None:
    """50 MB of random bytes on stdout are stored and replayed byte for byte."""
    jid = daemon.submit("head -c 52428800 /dev/urandom | tee /dev/stderr | sha256sum >&2")
    job = daemon.wait_final(jid, timeout=120)
    assert job["state"] == "succeeded"
    res = daemon.ctl("logs", str(jid), timeout=120)
    assert len(res.stdout) == 0
    data, digest_line = res.stderr[:-65 - 3], res.stderr[-65 - 3:]
    assert len(data) == 52428800
    assert hashlib.sha256(data).hexdigest().encode() == digest_line.split()[0]
    assert job["log_bytes"] == 52428800 + len(digest_line)


def test_a_long_log_reads_back_whole_and_tails_from_its_end(daemon: Daemon) -> None:
    """An 11 MB log (read in a worker thread while much of it is ahead of the reader, on the event loop
    for the rest) comes back whole and in order, to a reader and to a follower; `--tail 2` shows its last
    two lines."""
    jid = daemon.submit("seq 1 1500000")
    follower = daemon.popen_ctl("logs", "-f", str(jid))
    expected = "".join(f"{i}\n" for i in range(1, 1500001)).encode()
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0 and out == expected, err
    assert daemon.output(jid) == expected
    assert daemon.ctl("logs", "--tail", "2", str(jid)).stdout == b"1499999\n1500000\n"


def test_tail_and_timestamps(daemon: Daemon) -> None:
    """--tail N shows the last N lines; --timestamps prefixes every line with its time."""
    jid = daemon.submit("for i in $(seq 1 100); do echo line $i; done")
    daemon.wait_final(jid)
    assert daemon.ctl("logs", "--tail", "3", str(jid)).stdout == b"line 98\nline 99\nline 100\n"
    assert daemon.ctl("logs", "--tail", "0", str(jid)).stdout == b""
    assert daemon.ctl("logs", "--tail", "1000", str(jid)).stdout.count(b"\n") == 100
    stamped = daemon.ctl("logs", "--timestamps", str(jid)).stdout.splitlines()
    assert len(stamped) == 100
    for n, line in enumerate(stamped, 1):
        stamp, text = line.split(b" ", 1)
        assert text == f"line {n}".encode() and stamp[:2] == b"20" and b"T" in stamp


def test_stdout_and_stderr_are_kept_apart(daemon: Daemon) -> None:
    """stdout chunks go to stdout and stderr chunks to stderr."""
    jid = daemon.submit("echo to-out; echo to-err >&2")
    daemon.wait_final(jid)
    res = daemon.ctl("logs", str(jid))
    assert res.stdout == b"to-out\n" and res.stderr == b"to-err\n"


def test_dev_stderr_and_dev_stdout_work_as_in_a_terminal(daemon: Daemon) -> None:
    """`echo x > /dev/stderr` works: the job's output streams are real pipes."""
    jid = daemon.submit("echo to-err > /dev/stderr; echo to-out > /dev/stdout")
    assert daemon.wait_final(jid)["state"] == "succeeded"
    res = daemon.ctl("logs", str(jid))
    assert res.stdout == b"to-out\n" and res.stderr == b"to-err\n"


def test_output_past_the_cap_is_cut_with_a_marker_and_the_job_runs_on(make_daemon, tmp_path) -> None:
    """Past --max-log-bytes the log says it was truncated, and the job still runs to its end."""
    d: Daemon = make_daemon("--max-log-bytes", "100000")
    jid = d.submit(f"head -c 1000000 /dev/zero | tr '\\0' x; echo finished > {tmp_path}/end")
    job = d.wait_final(jid)
    assert job["state"] == "succeeded" and (tmp_path / "end").read_text() == "finished\n"
    res = d.ctl("logs", str(jid))
    assert res.stdout == b"x" * 100000  # exactly the cap: headers and the note do not count against it
    assert b"output truncated here, past 100000 bytes" in res.stderr
    assert job["log_bytes"] == 100000 and "output truncated" in job["reason"]

"""Inputs that used to break hodeid: each is refused in one sentence, and the daemon keeps serving."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import BIN, Daemon

from hodeid.config import Config, ConfigError

# flag values a hostile probe tried; each used to start a daemon that burned CPU, lost every job,
# refused every client, crashed in a loop, listened on another port, or died with a traceback
BAD_FLAGS = [
    (["--heartbeat-interval", "0"], "--heartbeat-interval", "0.1 to 60"),
    (["--heartbeat-timeout", "0"], "--heartbeat-timeout", "0.2 to 3600"),
    (["--heartbeat-interval", "10", "--heartbeat-timeout", "10"], "--heartbeat-timeout", "twice"),
    (["--heartbeat-interval", "20"], "--heartbeat-timeout", "twice"),  # over the default 15 s timeout
    (["--handshake-timeout", "0"], "--handshake-timeout", "0.1 to 3600"),
    (["--handshake-timeout", "nan"], "--handshake-timeout", "0.1 to 3600"),
    (["--max-workers", "99999999999999999999"], "--max-workers", "1 to 1024"),
    (["--max-workers", "0"], "--max-workers", "1 to 1024"),
    (["--min-idle", "5", "--max-workers", "2"], "--min-idle", "--max-workers"),
    (["--log-level", "bogus"], "--log-level", "debug, info"),
    (["--agent-listen", "127.0.0.1:99999"], "--agent-listen", "1 to 65535"),
    (["--agent-listen", "127.0.0.1:0"], "--agent-listen", "1 to 65535"),
    (["--socket-group", "no-such-group-hodei"], "--socket-group", "not a group"),
    (["--admin-group", "no-such-group-hodei"], "--admin-group", "not a group"),
    (["--provider", "podman"], "--provider", "local"),
] + [
    ([flag, value], flag, "to")
    for flag in ("--max-workers", "--min-idle", "--idle-timeout", "--heartbeat-interval", "--heartbeat-timeout",
                 "--provision-timeout", "--handshake-timeout", "--max-log-bytes", "--max-jobs-per-worker", "--cpus")
    for value in ("inf", "nan", "1e308", "-1")
]


def _hodeid(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """hodeid with these flags in a fresh dir; a daemon that starts instead of refusing is stopped by the timeout."""
    cmd = [str(BIN / "hodeid"), "--state-dir", str(root / "state"), "--socket", str(root / "s.sock"), *args]
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=8)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"hodeid {' '.join(args)} started instead of refusing: {e.stderr[-300:]!r}") from None


def _one_sentence(res: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("hodeid: "), res.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(("args", "flag", "says"), BAD_FLAGS, ids=[" ".join(a) for a, _, _ in BAD_FLAGS])
def test_bad_flag_values_are_refused_at_start_in_one_sentence(tmp_path: Path, args: list[str], flag: str,
                                                              says: str) -> None:
    res = _hodeid(tmp_path, *args)
    _one_sentence(res, flag, says)
    assert not (tmp_path / "s.sock").exists()


def test_socket_paths_over_the_unix_limit_are_refused() -> None:
    """sockaddr_un holds 107 bytes and a NUL: a longer control socket, or only the agent socket derived
    beside it, is refused by name instead of failing later (or binding a cut-off path)."""
    with tempfile.TemporaryDirectory(prefix="h") as short:
        base = Path(short)
        too_long = base / ("d" * (110 - len(str(base)))) / "s.sock"
        _one_sentence(_hodeid(base, "--socket", str(too_long)), "--socket", "107")
        # the control socket fits (107 bytes), agent/agent.sock beside it does not
        fits = base / ("d" * (107 - len(str(base)) - len("//s.sock"))) / "s.sock"
        assert len(str(fits)) == 107
        _one_sentence(_hodeid(base, "--socket", str(fits)), "--agent-socket", "agent/agent.sock beside it", "107")
        _one_sentence(_hodeid(base, "--agent-socket", str(too_long)), "--agent-socket", "107")


def test_a_config_built_in_code_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--heartbeat-interval"):
        Config(state_dir=tmp_path, socket=tmp_path / "s", heartbeat_interval=0)
    with pytest.raises(ConfigError, match="--max-workers"):
        Config(state_dir=tmp_path, socket=tmp_path / "s", max_workers=10**20)
    assert Config(state_dir=tmp_path, socket=tmp_path / "s").max_workers >= 1


def _big_jobs(daemon: Daemon, count: int, size: int = 1_000_000) -> list[int]:
    """``count`` queued jobs whose commands are ``size`` bytes each (the gate job holds the only worker)."""
    from hodeictl.client import Client, spec_from_cli

    with Client(daemon.socket) as c:
        return [c.submit(spec_from_cli([f": {i} " + "x" * size])).id for i in range(count)]


def test_replies_over_the_frame_limit_come_in_pages(make_daemon) -> None:
    """Twelve jobs with 1 MB commands are 12 MB of reply: list, cancel and wait used to fail with "a frame
    of N bytes is over the 8388608-byte limit"; now each answers in pages and prints every job."""
    d: Daemon = make_daemon("--max-workers", "1")
    gate = d.submit("sleep 600")
    d.wait_state(gate, "running")
    ids = _big_jobs(d, 12)
    listed = d.ctl("list", "--limit", "0", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [gate, *ids]
    table = d.ctl("list", "--limit", "0").stdout.decode().splitlines()
    assert len(table) == 1 + 13 and table[-1].startswith(f"{ids[-1]}\t")
    cancelled = d.ctl("cancel", *map(str, ids))
    assert cancelled.stdout.decode().splitlines() == [f"{i}\tcancelled\tcancelled by user" for i in ids]
    waited = d.ctl("wait", "--json", *map(str, ids), check=False)
    assert waited.returncode == 130  # cancelled, as `wait` says it
    assert [(j["id"], j["state"]) for j in json.loads(waited.stdout)] == [(i, "cancelled") for i in ids]
    assert d.job(gate)["state"] == "running"
    d.ctl("cancel", str(gate))
    assert d.wait_final(d.submit("true"))["state"] == "succeeded"


def test_tail_of_a_job_with_no_output_prints_nothing_and_follows(make_daemon) -> None:
    """`logs --tail N` of a job that wrote nothing (yet) said "internal error"; now it prints nothing,
    and with -f it goes on to follow what the job writes later."""
    from hodei.protocol import LogData
    from hodeictl.client import Client

    d: Daemon = make_daemon("--max-workers", "1")
    quiet = d.submit("true")
    assert d.wait_final(quiet)["state"] == "succeeded"
    for args in (["--tail", "3"], ["--tail", "0"], ["--tail", "3", "-f"]):
        res = d.ctl("logs", *args, str(quiet))
        assert (res.stdout, res.stderr) == (b"", b""), args
    gate = d.ctl("submit", "--", "sh", "-c", "sleep 600")  # holds the only worker: the next job stays queued
    queued = d.submit("sleep 1; echo late")
    assert d.ctl("logs", "--tail", "5", str(queued)).stdout == b""
    follower = d.popen_ctl("logs", "--tail", "5", "-f", str(queued))
    d.ctl("cancel", gate.stdout.decode().strip())
    out, err = follower.communicate(timeout=30)
    assert (out, err, follower.returncode) == (b"late\n", b"", 0)
    with Client(d.socket, timeout=10) as c:  # a tail no CLI sends: the whole log, not an internal error
        for tail in (2**63, 2**64 - 1):
            assert [m.data for m in c.logs(queued, tail=tail) if isinstance(m, LogData)] == [b"late\n"]
        assert [m for m in c.logs(quiet, tail=2**63) if isinstance(m, LogData)] == []


def test_a_request_over_the_frame_limit_is_refused_by_the_client_in_one_sentence(daemon: Daemon, tmp_path) -> None:
    """An 8 MiB command said "lost the connection" and exited 3, as if hodeid were not running."""
    big = tmp_path / "big.txt"
    big.write_text("echo " + "x" * (9 << 20) + "\n")
    res = daemon.ctl("submit", "--from", str(big), check=False)
    lines = res.stderr.decode().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("hodeictl: this request is") and "limit" in lines[0] and "nothing was sent" in lines[0]
    assert daemon.jobs() == [] and daemon.wait_final(daemon.submit("true"))["state"] == "succeeded"


def test_a_locked_database_is_called_locked_not_full(daemon: Daemon) -> None:
    """A database held locked by another process was reported with "if the disk is full"."""
    import sqlite3

    holder = sqlite3.connect(daemon.state_dir / "hodei.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as an sqlite3 shell or a backup tool might
    try:
        res = daemon.ctl("submit", "true", check=False)  # hodeid waits out its busy timeout (5 s), then says so
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lines = res.stderr.decode().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "locked by another process" in lines[0] and "disk is full" not in lines[0]
    assert daemon.wait_final(daemon.submit("true"))["state"] == "succeeded"

"""Load that could hurt hodeid: floods of connections that never say hello, and many log followers."""

from __future__ import annotations

import resource
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from conftest import Daemon, wait_for
from test_remote_agents import free_port, tls  # noqa: F401  (tls is a fixture)

from hodei.frames import encode_frame
from hodei.protocol import PROTOCOL_VERSION, Hello, ReadLogs, Role

FLOOD = 1100


@contextmanager
def nofile(soft: int, hard: int | None = None) -> Iterator[None]:
    """Run the block (and the processes it starts) with this open-file limit."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard if hard is not None else before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before[0], before[1]))


def daemon_with_usual_limit(make_daemon: Callable[..., Daemon], *args: str) -> Daemon:
    """hodeid started as from a login shell: soft limit 1024 descriptors, hard limit at least 4096."""
    hard = max(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)  # root may raise it
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test itself holds 1,100 sockets
    with nofile(1024, hard):
        return make_daemon(*args)


def closed_by_peer(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_a_flood_of_silent_connections_to_the_agent_listener_does_not_stop_submits(make_daemon) -> None:
    """1,100 connections to --agent-listen that say nothing (or half a hello): 15 submits at once all succeed,
    every job's log is there, and hodeid closes every one of the flood's connections."""
    port = free_port()
    d = daemon_with_usual_limit(make_daemon, "--agent-listen", f"127.0.0.1:{port}")
    flood: list[socket.socket] = []
    try:
        for i in range(FLOOD):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue  # the backlog was full: nothing held on hodeid's side
            if i % 10 == 0:
                s.sendall(b"\x00\x00\x00\x40partial")  # a frame length, then a few bytes of the 64 promised
            flood.append(s)
        assert len(flood) >= FLOOD // 2, f"only {len(flood)} connections could be opened"
        subs = [d.popen_ctl("submit", f"echo job {i}") for i in range(15)]
        results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in subs]  # type: ignore[union-attr]
        for p in subs:
            p.stdout.close()  # type: ignore[union-attr]
            p.stderr.close()  # type: ignore[union-attr]
        failed = [err.decode(errors="replace") for rc, _, err in results if rc != 0]
        assert not failed, f"{len(failed)} of 15 submits failed: {failed[:3]}"
        for i, (_, out, _) in enumerate(results):
            job_id = int(out)
            assert d.wait_final(job_id)["state"] == "succeeded"
            assert d.output(job_id) == f"job {i}\n".encode()
        deadline = time.monotonic() + 10 + 10  # the handshake timeout (default 10 s), and some slack on a busy machine
        still_open = sum(not closed_by_peer(s, deadline) for s in flood)
        assert still_open == 0, f"{still_open} of {len(flood)} silent connections were still open"
    finally:
        for s in flood:
            s.close()
    assert d.wait_final(d.submit("true"))["state"] == "succeeded"


def test_a_silent_tls_connection_is_closed_at_the_handshake_timeout(make_daemon, tls) -> None:  # noqa: F811
    """A TCP connection to a TLS listener that never starts the TLS handshake is closed like any silent one."""
    cert, key = tls
    port = free_port()
    d = make_daemon("--agent-listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key),
                    "--handshake-timeout", "1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert closed_by_peer(s, time.monotonic() + 10), "hodeid kept a silent TLS connection open for 10 s"
    ctx = ssl.create_default_context(cafile=str(cert))  # and a real TLS client still gets through to the hello
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        assert closed_by_peer(s, time.monotonic() + 10)  # no hello: closed after the handshake timeout
    assert "sent no hello within 1s" in d.log()


def test_hodeid_raises_its_own_descriptor_limit_but_jobs_get_the_usual_one(make_daemon) -> None:
    """hodeid runs with its soft limit raised to the hard one; its agents get the limit hodeid started with,
    and a job submitted from a shell with the usual limit sees that one."""
    d = daemon_with_usual_limit(make_daemon)
    assert d.proc is not None

    def soft_and_hard(pid: int) -> list[str]:
        with open(f"/proc/{pid}/limits") as f:
            return next(line for line in f if line.startswith("Max open files")).split()[3:5]

    soft, hard = soft_and_hard(d.proc.pid)
    assert soft == hard != "1024"
    with nofile(1024):
        job = d.submit("ulimit -Sn")
    assert d.wait_final(job)["state"] == "succeeded"
    assert d.output(job) == b"1024\n"
    assert [soft_and_hard(pid)[0] for pid in d.agents()] == ["1024"]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_stalled_followers_cost_little_memory_and_give_it_back(daemon: Daemon) -> None:
    """100 `logs -f` connections to a 20 MB log that read nothing: hodeid holds at most a block of it for
    each (not a megabyte or more), and its memory comes back once they hang up."""
    assert daemon.proc is not None
    job = daemon.submit("head -c 20000000 /dev/zero")
    assert daemon.wait_final(job)["state"] == "succeeded"
    start = rss_mib(daemon.proc.pid)
    ask = encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.CTL)) + encode_frame(ReadLogs(job_id=job, follow=True))
    readers = []
    try:
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(daemon.socket))
            s.sendall(ask)
            readers.append(s)
        for s in readers:  # hodeid has queued its first block for each of them by the time it arrives
            s.settimeout(30)
            assert s.recv(1, socket.MSG_PEEK)
        wait_for(lambda: daemon.ctl("list", check=False).returncode == 0, what="hodeid to answer")
        grown = rss_mib(daemon.proc.pid) - start
        assert grown < 40, f"hodeid grew by {grown:.0f} MiB for 100 readers that read nothing"
    finally:
        for s in readers:
            s.close()
    wait_for(lambda: rss_mib(daemon.proc.pid) < start + 16, timeout=20,  # type: ignore[union-attr]
             what=f"hodeid's RSS to come back near {start:.0f} MiB")


def test_many_followers_all_get_the_whole_log(daemon: Daemon) -> None:
    """50 `logs -f` followers of a job that writes 3 MB each get every byte, in order."""
    job = daemon.submit(
        "for i in $(seq 1 30); do head -c 100000 /dev/zero | tr '\\0' x; echo \" $i\"; sleep 0.02; done")
    followers = [daemon.popen_ctl("logs", "-f", str(job)) for _ in range(50)]
    expected = b"".join(b"x" * 100000 + f" {i}\n".encode() for i in range(1, 31))
    try:
        for p in followers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert out == expected
    finally:
        for p in followers:
            if p.poll() is None:
                p.kill()
                p.wait()
    wait_for(lambda: daemon.job(job)["state"] == "succeeded", what="the job to succeed")


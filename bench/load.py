#!/usr/bin/env python3
"""Load that could hurt hodeid, measured on a real hodeid (local provider) in a temp dir.

    .venv/bin/python bench/load.py                       # all three cases, about 2 minutes
    .venv/bin/python bench/load.py --only followers      # flood, followers, stalled (comma-separated)
    .venv/bin/python bench/load.py --json /tmp/load.json # details as JSON too

Each case starts its own hodeid (hodei_testing's Harness, local provider) with the soft open-file limit
of a login shell, 1024; the harness stops it, kills its agents and jobs and removes its temp dir.
  flood      1,100 connections to --agent-listen 127.0.0.1:PORT that never say hello, held; meanwhile
             15 `hodeictl submit` at once, then each job's completion and log. How many succeed,
             and how soon hodeid has closed every one of the flood's connections.
  followers  a job writes 1 MB, then a 100-byte line every 10 ms; 1,000 followers (ReadLogs with
             follow, as `hodeictl logs -f` sends it, read as fast as this process can) stay 10 s.
             hodeid's RSS before, at its peak, and 5 s after they have all gone.
  stalled    a finished job with 500 MB of output; 500 followers ask for it and then read nothing
             for 10 s. hodeid's RSS before, at its peak, and 5 s after they have gone.
RSS is VmRSS from /proc/PID/status, sampled every 0.1 s; MiB are 2^20 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _venv  # noqa: F401  (re-executes with the repo's .venv/bin/python)

from hodei.errors import DaemonNotRunning
from hodei.frames import encode_frame
from hodei.protocol import PROTOCOL_VERSION, Hello, ReadLogs, Role
from hodei_testing import BIN, Daemon, Harness, fd_count, rss_kb
from hodeictl.client import spec_from_cli

MARK = "HODEI_LOAD_RUN"  # every process started carries it: the harness's cleanup finds them by it


def rss_mib(pid: int) -> float:
    kb = rss_kb(pid)
    if kb is None:
        raise RuntimeError(f"hodeid {pid} is gone")
    return kb / 1024


def fds(pid: int) -> int | None:
    return fd_count(pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def login_shell_limit() -> Iterator[None]:
    """Processes started in the block get the usual soft open-file limit, 1024 (this one gets its own back)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def start(h: Harness, name: str, *args: str) -> Daemon:
    """A private hodeid, started as from a login shell."""
    with login_shell_limit():
        return h.daemon(name, args, start=True)


class Sampler:
    """hodeid's RSS every 0.1 s while a ``with`` block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib(self.pid))
            await asyncio.sleep(0.1)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()


async def settled_rss(pid: int, wait: float = 5.0) -> float:
    await asyncio.sleep(wait)
    return rss_mib(pid)


async def followers(path: Path, job_id: int, n: int, read: bool, stop: asyncio.Event) -> list[asyncio.Task[int]]:
    """``n`` followers, connected one after the other as hodeictl connects: a blocking connect() waits while
    the socket's backlog is full (asyncio's non-blocking one takes EAGAIN for success)."""
    tasks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await asyncio.to_thread(s.connect, str(path))
        r, w = await asyncio.open_unix_connection(sock=s)
        tasks.append(asyncio.create_task(follower(r, w, job_id, read, stop)))
    return tasks


async def follower(r: asyncio.StreamReader, w: asyncio.StreamWriter, job_id: int, read: bool,
                   stop: asyncio.Event) -> int:
    """One ReadLogs(follow) connection; returns the bytes it received (0 if it never reads)."""
    w.write(encode_frame(Hello(version=PROTOCOL_VERSION, role=Role.CTL, client="bench/load.py")))
    w.write(encode_frame(ReadLogs(job_id=job_id, follow=True)))
    got = 0
    try:
        if read:
            while not stop.is_set():
                chunk = await r.read(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        else:
            await stop.wait()
    finally:
        w.transport.abort()
    return got


async def measure_followers(d: Daemon, job_id: int, n: int, read: bool, hold: float) -> dict[str, Any]:
    """hodeid's RSS before ``n`` followers of ``job_id``, at its peak while they stay ``hold`` seconds, and
    5 s after they have gone; the bytes each got, and how long a `workers` request took meanwhile."""
    await asyncio.sleep(1.0)
    before = rss_mib(d.pid)
    stop = asyncio.Event()
    async with Sampler(d.pid) as during:
        tasks = await followers(d.socket, job_id, n, read, stop)
        await asyncio.sleep(hold)
        t = time.monotonic()
        with d.client() as c:
            c.workers()
        answer = time.monotonic() - t
        stop.set()
        got = await asyncio.gather(*tasks)
    after = await settled_rss(d.pid)
    return {"followers": n, "held_s": hold, "rss_before_mib": round(before, 1), "rss_peak_mib": round(during.peak, 1),
            "rss_after_mib": round(after, 1), "min_bytes_per_follower": min(got), "workers_request_s": round(answer, 3),
            "fds_after": fds(d.pid)}


async def followers_case(h: Harness, n: int = 1000, hold: float = 10.0) -> dict[str, Any]:
    d = start(h, "followers", "--max-workers", "1")
    with d.client() as c:  # the job runs until the harness's cleanup kills it
        job = c.submit(spec_from_cli([(
            "head -c 1000000 /dev/zero | tr '\\0' x; echo; i=0; while :; do"
            " printf '%099d\\n' $i; i=$((i+1)); sleep 0.01; done")]))
        while c.get(job.id).state != "running":
            await asyncio.sleep(0.05)
    return {"case": "followers", **await measure_followers(d, job.id, n, True, hold)}


async def stalled_case(h: Harness, n: int = 500, size: int = 500_000_000, hold: float = 10.0) -> dict[str, Any]:
    d = start(h, "stalled", "--max-workers", "1")
    with d.client() as c:
        job = c.submit(spec_from_cli([f"head -c {size} /dev/zero"]))
        c.wait([job.id])
    return {"case": "stalled", "log_bytes": size, **await measure_followers(d, job.id, n, False, hold)}


def job_ran(d: Daemon, job_id: int, output: bytes) -> bool:
    """Whether the job succeeded with this output; asked again while hodeid refuses our connection."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with d.client() as c:
                c.wait([job_id])
                text = b"".join(m.data for m in c.logs(job_id) if hasattr(m, "data"))
                return c.get(job_id).state == "succeeded" and text == output
        except DaemonNotRunning:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def open_flood(port: int, n: int) -> list[socket.socket]:
    """``n`` connections to 127.0.0.1:``port`` that will say nothing, one after the other, each waiting
    (2 s at most) to be taken into the listener's queue, as the probe that found the problem did."""
    flood = []
    for _ in range(n):
        try:
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            pass
    return flood


def flood_case(h: Harness, n: int = 1100, submits: int = 15) -> dict[str, Any]:
    port = free_port()
    d = start(h, "flood", "--agent-listen", f"127.0.0.1:{port}")
    flood: list[socket.socket] = []
    try:
        fds_before = fds(d.pid)
        t0 = time.monotonic()
        flood = open_flood(port, n)
        flood_open = time.monotonic() - t0
        fds_during = fds(d.pid)
        procs = [subprocess.Popen([str(BIN / "hodeictl"), "submit", f"echo job {i}"], env=d.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(submits)]
        outs = [(p.communicate(timeout=60), p.returncode) for p in procs]
        ok, errors = 0, []
        for i, ((out, err), rc) in enumerate(outs):
            if rc != 0:
                errors.append(err.decode(errors="replace").strip())
            else:
                ok += job_ran(d, int(out), f"job {i}\n".encode())
        submitted_s = time.monotonic() - t0
        closed, last = 0, 0.0
        deadline = time.monotonic() + 25  # the default handshake timeout is 10 s
        for s in flood:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    closed += 1
                    last = time.monotonic() - t0
            except TimeoutError:
                pass
            except OSError:  # reset or refused: not held either
                closed += 1
                last = time.monotonic() - t0
        return {"case": "flood", "connections": len(flood), "submits": submits, "submits_ok": ok, "errors": errors[:3],
                "flood_opened_in_s": round(flood_open, 3), "submits_and_jobs_s": round(submitted_s, 2),
                "closed_by_hodeid": closed,
                "last_closed_after_s": round(last, 2), "hodeid_fds_before": fds_before, "hodeid_fds_during": fds_during,
                "hodeid_fds_after": fds(d.pid)}
    finally:
        for s in flood:
            s.close()


def main() -> None:
    p = argparse.ArgumentParser(description="hodeid under hostile load: connection floods, many followers.")
    p.add_argument("--only", default="flood,followers,stalled", help="comma-separated: flood, followers, stalled")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # this process holds 1,100
    cases = args.only.split(",")
    if unknown := set(cases) - {"flood", "followers", "stalled"}:
        p.error(f"unknown case {', '.join(sorted(unknown))}: use flood, followers, stalled")
    results = []
    for case in cases:
        with Harness(prefix="hodei-load-", mark=MARK) as h:  # its cleanup: daemons, agents, jobs, the temp dir
            if case == "flood":
                r = flood_case(h)
            else:
                r = asyncio.run(followers_case(h) if case == "followers" else stalled_case(h))
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Ping during a big log read: a `Ping` round trip's p50/p99 while another client reads a 1 GiB log.

    .venv/bin/python bench/ping_during_read.py            # a 1 GiB log
    .venv/bin/python bench/ping_during_read.py --quick    # 256 MiB

A hodeid of its own (one worker). One job writes SIZE zero bytes on stdout (no newline in it), so its
log is SIZE bytes in records. One client sends `Ping` after `Ping` (2 ms apart) on its own connection,
timing each round trip, while, in turn: nothing else happens (the floor); `hodeictl logs JOB > /dev/null`
reads the whole log; `hodeictl logs --tail 10 JOB` (three times) scans it backwards from the end for ten
lines, and finds none (zeros have no newline), so each scan reads the whole file. Before hodeid read logs
off its event loop, every read and every tail scan made the other connections wait.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import threading
import time

import common
from common import MB, Results, ms, pct

from hodei.protocol import JobState, Ping, Pong
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SIZE = {"quick": 256 * MB, "full": 1024 * MB}
GAP = 0.002  # between one Pong and the next Ping


def pings(d: Daemon, stop: threading.Event, out: list[float]) -> None:
    with d.client() as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            if (reply := c.request(Ping())) != Pong():
                raise RuntimeError(f"hodeid answered Ping with {reply!r}")
            out.append(time.perf_counter() - t0)
            time.sleep(GAP)


async def while_running(d: Daemon, work: list[list[str]] | float) -> tuple[list[float], float]:
    """Ping round trips while the hodeictl commands ``work`` run one after another (or for ``work`` seconds),
    and how long that took."""
    stop, rtt = threading.Event(), []
    pinger = threading.Thread(target=pings, args=(d, stop, rtt))
    pinger.start()
    t0 = time.perf_counter()
    try:
        if isinstance(work, float):
            await asyncio.sleep(work)
        else:
            for argv in work:
                await asyncio.to_thread(subprocess.run, [str(d.bin / "hodeictl"), *argv], env=d.env, check=True,
                                        stdout=subprocess.DEVNULL)
    finally:
        took = time.perf_counter() - t0
        stop.set()
        await asyncio.to_thread(pinger.join)
    return rtt, took


def summary(rtt: list[float]) -> str:
    return f"p50 {ms(statistics.median(rtt))}, p99 {ms(pct(rtt, 99))}, max {ms(max(rtt))} (n={len(rtt)})"


async def measure(h: Harness, quick: bool, res: Results) -> None:
    size = SIZE["quick" if quick else "full"]
    res.phase(f"ping during a {size // MB} MiB log read")
    d = h.daemon("ping", ["--max-workers", "1"], start=True)
    with d.client() as c:
        job = c.submit(spec_from_cli([f"head -c {size} /dev/zero"]))
        [done] = c.wait([job.id])
    if done.state is not JobState.SUCCEEDED or done.log_bytes != size:
        raise RuntimeError(f"the log job ended {done.state} with {done.log_bytes} bytes, not {size}")
    idle, _ = await while_running(d, 3.0)
    read, t_read = await while_running(d, [["logs", str(job.id)]])
    tail, t_tail = await while_running(d, [["logs", "--tail", "10", str(job.id)]] * 3)
    floor = f"no read: p50 {ms(statistics.median(idle))}, p99 {ms(pct(idle, 99))}"
    res.row(f"Ping round trip while another client reads a {size // MB} MiB log (`hodeictl logs`)",
            f"p50 {ms(statistics.median(read))}, p99 {ms(pct(read, 99))}", floor, "p99 ≤ 10 ms",
            common.verdict(pct(read, 99) <= 0.010, f"max {ms(max(read))}"))
    res.row("… while `hodeictl logs --tail 10` scans it (three times)",
            f"p50 {ms(statistics.median(tail))}, p99 {ms(pct(tail, 99))}", floor, "p99 ≤ 10 ms",
            common.verdict(pct(tail, 99) <= 0.010, f"max {ms(max(tail))}"))
    res.note(f"**Ping during a {size // MB} MiB log read**: no read {summary(idle)}; during `hodeictl logs`"
             f" ({t_read:.2f} s, {size / MB / t_read:.0f} MiB/s) {summary(read)}; during three `logs --tail 10`"
             f" ({t_tail / 3:.2f} s each) {summary(tail)}.")


if __name__ == "__main__":
    common.run_alone("bench/ping_during_read.py", __doc__, measure, shared_daemon=False)

#!/usr/bin/env python3
"""1. Warm dispatch latency: submit returned -> `date` ran in the job, next to a bare fork/exec.

    .venv/bin/python bench/dispatch.py            # 200 jobs one after another
    .venv/bin/python bench/dispatch.py --quick    # 30

hodeid `--max-workers 2 --min-idle 1 --idle-timeout 3600`, both workers warmed up first. Each job is
the shell line `date +%s.%N > FILE`, submitted through hodeictl.client.Client; latency = the time the
job wrote minus time.time() taken as soon as submit() returned (both CLOCK_REALTIME on one host).
The floor: the same `/bin/sh -c` started with Popen(start_new_session=True) from this process.
Also run by bench/run (phase `dispatch`).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import common
from common import Results, ms, pct, verdict

from hodei.protocol import JobState
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SAMPLES = {"quick": 30, "full": 200}


def floor_dispatch(tmp: Path, n: int) -> list[float]:
    """The same fork/exec chain without hodei: Popen(/bin/sh -c 'date ...') in its own session."""
    out = []
    for i in range(n):
        f = tmp / f"floor-d{i}"
        t0 = time.time()
        p = subprocess.Popen(["/bin/sh", "-c", f"date +%s.%N > {f}"], stdin=subprocess.DEVNULL,
                             start_new_session=True)
        p.wait()
        out.append(float(f.read_text()) - t0)
    return out


async def bench_dispatch(d: Daemon, tmp: Path, n: int, res: Results) -> None:
    job_lat, accept_lat, rtt = [], [], []
    with d.client() as c:
        for i in range(n):
            f = tmp / f"d{i}"
            spec = spec_from_cli([f"date +%s.%N > {f}"])
            t_sub = time.time()
            job = c.submit(spec)
            t_ret = time.time()
            [done] = c.wait([job.id])
            if done.state is not JobState.SUCCEEDED:
                raise RuntimeError(f"dispatch job {job.id} ended {done.state}: {done.reason}")
            job_lat.append(float(f.read_text()) - t_ret)
            accept_lat.append((done.started_at or 0) - t_ret)
            rtt.append(t_ret - t_sub)
    floor = floor_dispatch(tmp, n)
    p50, p95 = statistics.median(job_lat), pct(job_lat, 95)
    f50, f95 = statistics.median(floor), pct(floor, 95)
    res.row(f"1. Warm dispatch: submit returned → `date` ran in the job (p50 / p95, n={n})",
            f"{ms(p50)} / {ms(p95)}", f"bare `sh -c date` fork/exec: {ms(f50)} / {ms(f95)}",
            "p50 ≤ 10 ms",
            verdict(p50 <= 0.010, f"{'under' if p50 <= 0.010 else 'over'} by {abs(p50 - 0.010) * 1000:.1f} ms"))
    res.note(
        f"**Dispatch** (n={n}, sequential, warm workers): submit round trip p50 {ms(statistics.median(rtt))}"
        f" (p95 {ms(pct(rtt, 95))}); submit returned → agent's Accept `started_at` p50"
        f" {ms(statistics.median(accept_lat))} (p95 {ms(pct(accept_lat, 95))}); → `date` in the job p50 {ms(p50)}"
        f" (p95 {ms(p95)}, max {ms(max(job_lat))}). Floor, the same `sh -c date` started by Popen in this"
        f" process: p50 {ms(f50)} (p95 {ms(f95)}). hodei's own share at p50: {ms(p50 - f50)}."
    )


async def measure(h: Harness, main: Daemon, quick: bool, res: Results) -> None:
    n = SAMPLES["quick" if quick else "full"]
    res.phase(f"1. dispatch latency, {n} samples")
    await bench_dispatch(main, h.root, n, res)


if __name__ == "__main__":
    common.run_alone("bench/dispatch.py", __doc__, measure)

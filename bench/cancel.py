#!/usr/bin/env python3
"""4. Cancel latency: cancel request sent -> the job's SIGTERM trap ran, next to a bare killpg.

    .venv/bin/python bench/cancel.py            # 30 jobs
    .venv/bin/python bench/cancel.py --quick    # 8

On bench/run's warm hodeid (--max-workers 2 --min-idle 1). Each job is
`trap 'date +%s.%N > FILE; exit 143' TERM; sleep 1000 & echo go > MARK; wait`; once MARK exists,
Client.cancel() (which waits, as `hodeictl cancel` does); latency = the trap's time minus the time
just before the request was sent. The floor: the same line under Popen, signalled with
os.killpg(SIGTERM) from this process. Also run by bench/run (phase `cancel`).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from pathlib import Path

import common
from common import Results, await_file, ms, pct, verdict, wait_for_file

from hodei.protocol import JobState
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SAMPLES = {"quick": 8, "full": 30}


def cancel_cmd(trap_file: Path, marker: Path) -> str:
    return f"trap 'date +%s.%N > {trap_file}; exit 143' TERM; sleep 1000 & echo go > {marker}; wait"


def floor_cancel(tmp: Path, n: int) -> list[float]:
    out = []
    for i in range(n):
        f, m = tmp / f"floor-c{i}", tmp / f"floor-cm{i}"
        p = subprocess.Popen(["/bin/sh", "-c", cancel_cmd(f, m)], stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_file(m)
        t0 = time.time()
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()
        out.append(float(wait_for_file(f)) - t0)
    return out


async def bench_cancel(d: Daemon, tmp: Path, n: int, res: Results) -> None:
    lat, rtt = [], []
    with d.client() as c:
        for i in range(n):
            f, m = tmp / f"c{i}", tmp / f"cm{i}"
            job = c.submit(spec_from_cli([cancel_cmd(f, m)]))
            await await_file(m)
            t0 = time.time()
            [done] = c.cancel([job.id])  # waits for the job to be final, as `hodeictl cancel` does
            t1 = time.time()
            if done.state is not JobState.CANCELLED:
                raise RuntimeError(f"cancelled job {job.id} ended {done.state}: {done.reason}")
            lat.append(float(wait_for_file(f)) - t0)
            rtt.append(t1 - t0)
    floor = floor_cancel(tmp, n)
    p50, f50 = statistics.median(lat), statistics.median(floor)
    res.row(f"4. Cancel: request sent → SIGTERM trap ran in the job (median, n={n})", ms(p50),
            f"`killpg` from this process: {ms(f50)}", "≤ 50 ms",
            verdict(p50 <= 0.050, f"{'under' if p50 <= 0.050 else 'over'} by {abs(p50 - 0.050) * 1000:.1f} ms"))
    res.note(
        f"**Cancel** (n={n}): cancel sent → trap ran p50 {ms(p50)}, p95 {ms(pct(lat, 95))}, max {ms(max(lat))};"
        f" cancel sent → `cancel` reply (job final) p50 {ms(statistics.median(rtt))}, p95 {ms(pct(rtt, 95))}."
        f" Floor, `os.killpg(SIGTERM)` on the same shell line started by Popen here: p50 {ms(f50)}."
    )


async def measure(h: Harness, main: Daemon, quick: bool, res: Results) -> None:
    n = SAMPLES["quick" if quick else "full"]
    res.phase(f"4. cancel latency, {n} samples")
    await bench_cancel(main, h.root, n, res)


if __name__ == "__main__":
    common.run_alone("bench/cancel.py", __doc__, measure)

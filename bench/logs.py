#!/usr/bin/env python3
# Blocking calls in async code on purpose: the CLI runs here are what is timed, one at a time: nothing else awaits
"""5. Log throughput: a job writes 200 MB on stdout; MB/s to the log file, and to a `logs -f` follower.

    .venv/bin/python bench/logs.py            # 200 MB
    .venv/bin/python bench/logs.py --quick    # 50 MB

On bench/run's warm hodeid (--max-workers 2 --min-idle 1). One job `head -c SIZE /dev/zero`: MB/s
from the agent's `started_at` to hodeid's `finished_at`, when every chunk is in the log file. A
`hodeictl logs -f JOB > /dev/null` started right after the submit: MB/s from job start until it
exits, its own start-up included. `log_bytes` is checked to be exactly SIZE. The floors:
`head -c SIZE /dev/zero > /dev/null` and `... | cat > /dev/null`, timed with `sh -c`.
Also run by bench/run (phase `logs`).
"""

from __future__ import annotations

import statistics
import subprocess
import time

import common
from common import MB, Results, verdict

from hodei.protocol import JobState
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SIZE = {"quick": 50 * MB, "full": 200 * MB}


def shell_time(line: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", line], check=True)
    return time.perf_counter() - t0


async def bench_logs(d: Daemon, size: int, res: Results) -> None:
    with d.client() as c:
        t_sub = time.time()
        job = c.submit(spec_from_cli([f"head -c {size} /dev/zero"]))
        follower = subprocess.Popen([str(d.bin / "hodeictl"), "logs", "-f", str(job.id)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=d.env)
        [done] = c.wait([job.id])
        t_done = time.time()
        _, err = follower.communicate(timeout=600)
        t_follow = time.time()
        if follower.returncode != 0 or done.state is not JobState.SUCCEEDED:
            raise RuntimeError(f"log job {done.state}, follower exit {follower.returncode}: {err.decode()[-500:]}")
        if done.log_bytes != size:
            raise RuntimeError(f"the log holds {done.log_bytes} bytes, not {size}")
        t_read = time.time()
        subprocess.run([str(d.bin / "hodeictl"), "logs", str(job.id)], stdout=subprocess.DEVNULL, env=d.env, check=True)
        t_read = time.time() - t_read
    assert done.started_at is not None and done.finished_at is not None
    disk = done.finished_at - done.started_at
    follow = t_follow - done.started_at
    floor_null = statistics.median(shell_time(f"head -c {size} /dev/zero > /dev/null") for _ in range(3))
    floor_cat = statistics.median(shell_time(f"head -c {size} /dev/zero | cat > /dev/null") for _ in range(3))
    rate = size / MB / disk
    frate = size / MB / follow
    res.row(f"5. Log throughput, {size // MB} MB on stdout: job start → stored on disk", f"{rate:.0f} MB/s",
            f"`head \\| cat > /dev/null`: {size / MB / floor_cat:.0f} MB/s; `head > /dev/null`:"
            f" {size / MB / floor_null:.0f} MB/s", "≥ 100 MB/s",
            verdict(rate >= 100, f"{rate / 100:.0%} of the target"))
    res.row("5b. … and to a concurrent `hodeictl logs -f > /dev/null` (finished reading)", f"{frate:.0f} MB/s",
            "(same floors)", "≥ 100 MB/s", verdict(frate >= 100, f"{frate / 100:.0%} of the target"))
    res.note(
        f"**Logs** ({size // MB} MB of zeros on stdout, one job): job started→finished {disk:.2f} s ({rate:.0f} MB/s);"
        f" submit→`wait` returned {t_done - t_sub:.2f} s; the follower (started right after submit, CLI start-up"
        f" included) finished {t_follow - t_done:.2f} s after `wait` returned, {frate:.0f} MB/s from job start."
        f" Reading the whole stored log back with `hodeictl logs` (no -f): {t_read:.2f} s"
        f" ({size / MB / t_read:.0f} MB/s incl. CLI start-up). Floors: `head -c {size} /dev/zero > /dev/null`"
        f" {floor_null * 1000:.0f} ms, `| cat > /dev/null` {floor_cat * 1000:.0f} ms."
    )


async def measure(h: Harness, main: Daemon, quick: bool, res: Results) -> None:
    size = SIZE["quick" if quick else "full"]
    res.phase(f"5. log throughput, {size // MB} MB")
    await bench_logs(main, size, res)


if __name__ == "__main__":
    common.run_alone("bench/logs.py", __doc__, measure)

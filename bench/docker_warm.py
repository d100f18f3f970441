#!/usr/bin/env python3
"""Docker 2. Warm path: submit returned -> `date +%s.%N` ran inside an idle container worker.

    .venv/bin/python bench/docker_warm.py            # 100 jobs one after another
    .venv/bin/python bench/docker_warm.py --quick    # 20

hodeid `--provider docker --network none --max-workers 2 --min-idle 1 --idle-timeout 3600`, two
workers warmed up first. Next to the host's fork/exec floor and `docker exec` into a running
container. A sample whose job does not succeed (a container removed from outside) is taken again.
Part of bench/docker_bench.py.
"""

from __future__ import annotations

import subprocess
import time

import _venv  # noqa: F401  (first: the venv's python)
import aiodocker
from common import pct, say
from docker_common import (
    BENCH_LABEL,
    IMAGE,
    TOKEN,
    Client,
    Events,
    Results,
    cmdline,
    docker_cli,
    med,
    ms,
    output_of,
    run_alone,
    start_daemon,
    until_idle,
    verdict,
)

from hodei.protocol import JobState
from hodei_testing import Harness
from hodeictl.client import spec_from_cli

SAMPLES = {"quick": 20, "full": 100}


def floor_fork(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        res = subprocess.run(["/bin/sh", "-c", "date +%s.%N"], capture_output=True, text=True, start_new_session=True,
                             check=False)
        out.append(float(res.stdout) - t0)
    return out


def floor_exec(container: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        res = subprocess.run(["docker", "exec", container, "date", "+%s.%N"], capture_output=True, text=True,
                             check=True)
        out.append(float(res.stdout) - t0)
    return out


async def bench_warm(h: Harness, n: int, docker: aiodocker.Docker, res: Results) -> None:
    d = await start_daemon(h, "warm", ["--max-workers", "2", "--min-idle", "1", "--idle-timeout", "3600"])
    res.commands.append(f"warm: `{cmdline(d)}`")
    lat, acc, rtt, disp, spawn, ran = [], [], [], [], [], []
    disturbed: list[str] = []
    async with Client(d.socket) as c:
        say("warm: bringing up the warm workers")
        await until_idle(c, 1)
        for _ in range(3):
            ids = [(await c.submit(spec_from_cli(["true"]))).id for _ in range(4)]
            await c.wait(ids)
        await until_idle(c, 2)
        say(f"warm: {n} jobs, one after another")
        while len(lat) < n:
            spec = spec_from_cli(["date +%s.%N"])
            t_sub = time.time()
            job = await c.submit(spec)
            t_ret = time.time()
            [done] = await c.wait([job.id])
            if done.state is not JobState.SUCCEEDED:
                disturbed.append(f"job {job.id} {done.state}: {done.reason}")
                if len(disturbed) > 5:
                    raise RuntimeError(f"warm jobs keep failing: {disturbed}")
                await until_idle(c, 1)
                continue
            out = await output_of(d, job.id)
            _, history = await c.history(job.id)
            assigned = next(e.at for e in history if e.to_state is JobState.ASSIGNED)
            lat.append(float(out) - t_ret)
            acc.append((done.started_at or 0) - t_ret)
            rtt.append(t_ret - t_sub)
            disp.append(assigned - t_ret)
            spawn.append((done.started_at or 0) - assigned)
            ran.append(float(out) - (done.started_at or 0))
        workers = len(await c.workers())
    d.stop()
    say("warm: floors (host fork/exec, docker exec)")
    fork = floor_fork(n)
    name = f"hodei-bench-{TOKEN}-exec"
    docker_cli("run", "-d", "--network", "none", "--name", name, "--label", f"{BENCH_LABEL}={TOKEN}",
               "--entrypoint", "/bin/sleep", IMAGE, "600")
    try:
        floor_exec(name, 2)
        ex = floor_exec(name, max(5, n // 4))
    finally:
        docker_cli("rm", "-f", name, check=False)
    p50, p95 = med(lat), pct(lat, 95)
    res.rows.append((f"2. Warm: submit returned → `date` ran in an idle container worker (p50 / p95, n={n})",
                     f"{ms(p50)} / {ms(p95)}", (f"host `sh -c date` fork/exec: {ms(med(fork))} / {ms(pct(fork, 95))};"
                     f" `docker exec` into a running container: {ms(med(ex))} / {ms(pct(ex, 95))} (n={len(ex)})"),
                     f"{p50 / med(ex):.2f}× docker exec", "p50 ≤ 15 ms",
                     verdict(p50 <= 0.015,
                             f"{'under' if p50 <= 0.015 else 'over'} by {abs(p50 - 0.015) * 1000:.1f} ms")))
    res.notes.append(f"**Warm dispatch** (n={n}, sequential, {workers} warm workers): submit round trip p50"
                     f" {ms(med(rtt))} (p95 {ms(pct(rtt, 95))}); submit returned → agent's Accept `started_at` p50"
                     f" {ms(med(acc))} (p95 {ms(pct(acc, 95))}); → `date` in the job p50 {ms(p50)} (p95 {ms(p95)},"
                     f" max {ms(max(lat))}). Split, p50 (p95): submit returned → job assigned (hodeid's dispatch)"
                     f" {ms(med(disp))} ({ms(pct(disp, 95))}); assigned → agent's `started_at` (Assign frame, agent"
                     f" spawns `/bin/sh`) {ms(med(spawn))} ({ms(pct(spawn, 95))}); `started_at` → `date` ran"
                     f" {ms(med(ran))} ({ms(pct(ran, 95))}). hodei's share above the host fork/exec floor at p50:"
                     f" {ms(p50 - med(fork))}."
                     + (f" Samples dropped and redone because the job did not succeed: {disturbed}."
                        if disturbed else ""))


async def measure(h: Harness, docker: aiodocker.Docker, events: Events, res: Results, quick: bool) -> None:
    await bench_warm(h, SAMPLES["quick" if quick else "full"], docker, res)


if __name__ == "__main__":
    run_alone("bench/docker_warm.py", __doc__, measure)

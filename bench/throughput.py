#!/usr/bin/env python3
# Blocking calls in async code on purpose: the CLI runs here are what is timed, one at a time: nothing else awaits
"""2, 3. Throughput: 1,000 `true` jobs submitted four ways, then waited for; side by side with task-spooler.

    .venv/bin/python bench/throughput.py            # 5 rounds of 1,000 jobs
    .venv/bin/python bench/throughput.py --quick    # 2 rounds of 200

Each way of submitting gets a fresh hodeid with its workers warmed up: 2 and 2b `Client.submit_many`
(batches of 100 a request) at --max-workers 2 and 4; 2c the CLI, `hodeictl submit --from -` then
`hodeictl wait`; 2d one `Client.submit` at a time. jobs/s = N / (first submit -> `wait` returned).
task-spooler (`tsp`, TS_SLOTS 2 and 4, private TS_SOCKET) runs the same N `tsp true` in the same
rounds, interleaved, so that the machine's drift hits each alike; medians are reported. Without
`tsp` those cells say so. Also run by bench/run (phase `throughput`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import common
from common import Results, verdict

from hodei.protocol import JobState
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SIZES = {"quick": (200, 2), "full": (1000, 5)}  # jobs a round, rounds


THROUGHPUT_MODES = {
    "batched": "Client.submit_many: batches of 100 jobs a request",
    "cli": "`hodeictl submit --from -` fed one line a job, then `hodeictl wait` on the ids",
    "single": "Client.submit: one request and one reply a job",
}


async def bench_throughput(d: Daemon, n: int, mode: str) -> dict[str, float]:
    spec = spec_from_cli(["true"])
    t0 = time.time()
    ids = []
    if mode == "cli":
        out = subprocess.run([str(d.bin / "hodeictl"), "submit", "--from", "-"], input=b"true\n" * n, env=d.env,
                             capture_output=True, check=True).stdout
        ids = [int(x) for x in out.split()]
        t1 = time.time()
        subprocess.run([str(d.bin / "hodeictl"), "wait", *map(str, ids)], env=d.env, capture_output=True, check=True)
        t2 = time.time()
        with d.client() as c:
            done = c.wait(ids)
    else:
        with d.client() as c:
            jobs = c.submit_many(spec for _ in range(n)) if mode == "batched" else (c.submit(spec) for _ in range(n))
            for job in jobs:
                ids.append(job.id)
            t1 = time.time()
            done = c.wait(ids)
            t2 = time.time()
    bad = [j for j in done if j.state is not JobState.SUCCEEDED]
    if len(done) != n or bad:
        raise RuntimeError(f"{len(bad)} of {len(done)} throughput jobs did not succeed, e.g. {bad[:1]}")
    last = max(j.finished_at or 0 for j in done)
    return {"total": t2 - t0, "submit": t1 - t0, "last_finished": last - t0, "n": n}


def tsp_throughput(tmp: Path, n: int, slots: int, round_: int = 0) -> dict[str, float] | None:
    tsp = shutil.which("tsp")
    if not tsp:
        return None
    root = tmp / f"tsp{slots}-{round_}"
    root.mkdir()
    env = {**os.environ, "TS_SOCKET": str(root / "sock"), "TMPDIR": str(root), "TS_SLOTS": str(slots),
           "TS_MAXFINISHED": str(n + 100), "TS_MAXCONN": str(n + 100)}
    try:
        subprocess.run([tsp, "-S", str(slots)], env=env, check=True, capture_output=True)  # starts the server
        t0 = time.time()
        last = ""
        for _ in range(n):
            last = subprocess.run([tsp, "true"], env=env, check=True, capture_output=True, text=True).stdout.strip()
        t1 = time.time()
        subprocess.run([tsp, "-w", last], env=env, capture_output=True, check=False)
        while True:  # -w waited for the last job only; make sure every one is finished
            listing = subprocess.run([tsp, "-l"], env=env, capture_output=True, text=True, check=False).stdout
            if not any(word in listing for word in (" running ", " queued ", " allocating ")):
                break
            time.sleep(0.005)
        t2 = time.time()
        finished = listing.count(" finished ")
        if finished < n:
            raise RuntimeError(f"tsp lists {finished} finished jobs, expected {n}:\n{listing[-2000:]}")
        return {"total": t2 - t0, "submit": t1 - t0, "n": n}
    finally:
        subprocess.run([tsp, "-K"], env=env, capture_output=True, check=False)



async def throughput_phases(h: Harness, n_jobs: int, rounds: int, res: Results) -> None:
    """Each way of submitting on its own warm hodeid, and task-spooler, `rounds` times, interleaved so
    that the machine's drift (2x between minutes here) hits each alike; medians are reported."""
    runs: list[tuple[str, int, str]] = [
        ("2", 2, "batched"), ("2b", 4, "batched"), ("2c", 2, "cli"), ("2d", 2, "single"),
    ]
    res.phase(f"2. throughput: {len(runs)} ways and tsp, {rounds} rounds of {n_jobs} jobs")
    started = {
        key: common.warm_daemon(h, f"thr{key}", ["--max-workers", str(workers), "--idle-timeout", "3600"], workers)
        for key, workers, _ in runs
    }
    thr: dict[str, list[dict[str, float]]] = {key: [] for key, _, _ in runs}
    peer: dict[int, list[dict[str, float]]] = {2: [], 4: []}
    for r in range(rounds):
        for key, _, mode in runs:
            thr[key].append(await bench_throughput(started[key], n_jobs, mode))
        for slots, samples in peer.items():
            if (p := tsp_throughput(h.root, n_jobs, slots, r)) is not None:
                samples.append(p)
    for d in started.values():
        d.stop()
    for key, workers, mode in runs:
        rates = sorted(n_jobs / t["total"] for t in thr[key])
        rate = statistics.median(rates)
        t = min(thr[key], key=lambda t: abs(n_jobs / t["total"] - rate))  # the median round, for the details
        peers = sorted(n_jobs / p["total"] for p in peer[workers])
        label = (f"task-spooler, TS_SLOTS={workers}: {statistics.median(peers):.0f} jobs/s" if peers
                 else "tsp not installed")
        target = "≥ 500 jobs/s" if key == "2" else "(≥ 500 jobs/s)"
        res.row(f"{key}. Throughput, {n_jobs} `true` jobs, --max-workers {workers}: {THROUGHPUT_MODES[mode]},"
                f" then wait all (median of {len(rates)})", f"{rate:.0f} jobs/s", label, target,
                verdict(rate >= 500, f"{rate / 500:.0%} of the target"))
        res.note(
            f"**Throughput {key}** ({n_jobs} jobs, --max-workers {workers}, {THROUGHPUT_MODES[mode]}): rounds"
            f" {', '.join(f'{x:.0f}' for x in rates)} jobs/s. In the median round submitting took {t['submit']:.2f} s,"
            f" the last job finished {t['last_finished']:.2f} s after the first submit, and `wait` on all ids"
            f" returned at {t['total']:.2f} s."
            + (f" task-spooler with {workers} slots ({n_jobs} `tsp true` client runs, then waiting for all; tsp execs"
               f" `true` directly, hodei runs the CLI's shell line `/bin/sh -c true`): rounds"
               f" {', '.join(f'{x:.0f}' for x in peers)} jobs/s." if peers and mode == "batched" else "")
        )


async def measure(h: Harness, quick: bool, res: Results) -> None:
    n_jobs, rounds = SIZES["quick" if quick else "full"]
    await throughput_phases(h, n_jobs, rounds, res)


if __name__ == "__main__":
    common.run_alone("bench/throughput.py", __doc__, measure, shared_daemon=False)

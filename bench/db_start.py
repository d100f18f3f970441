#!/usr/bin/env python3
"""What hodeid's start-up checks of its database cost with a big state dir.

    .venv/bin/python bench/db_start.py              # 100,000 queued jobs, each with a log file
    .venv/bin/python bench/db_start.py --jobs 10000

Builds a state dir in a temp dir: JOBS queued jobs (specs as `hodeictl submit` makes them, with the
caller's environment) written through hodeid's own Store, and one small log file per job. Then it
times, each --repeat times, on a warm page cache:
  - PRAGMA quick_check on the database (what hodeid runs at every start),
  - LogStore.highest_job_id() (the listdir of logs/ that keeps job ids unique),
  - a whole hodeid start: from Popen until a Ping is answered on the control socket,
and prints the medians. The temp dir is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from hodei.protocol import JobSpec
from hodei_testing import Daemon
from hodeid.logstore import LogStore
from hodeid.notify import Notifier
from hodeid.store import Store


async def build(state: Path, jobs: int) -> None:
    store = await Store.open(state / "hodei.db")
    spec = JobSpec(command=["echo hello"], shell=True, client_env=dict(os.environ))
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        await store.insert_jobs([spec] * n, owner_uid=os.getuid(), pools=[""] * n)
    await store.close()
    logs = state / "logs"
    logs.mkdir()
    for job_id in range(1, jobs + 1):
        (logs / f"{job_id}.1.log").write_bytes(b"")


def start_hodeid(root: Path) -> float:
    """Seconds from the Popen of hodeid until it answers a Ping, polled every 5 ms; then it is stopped."""
    d = Daemon(root, ["--max-workers", "1"], log_level="warning")
    try:
        d.start(timeout=600, interval=0.005)
        assert d.started_in is not None
        return d.started_in
    finally:
        d.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hodei-dbs-"))
    try:
        state = root / "state"
        state.mkdir()
        t = time.monotonic()
        asyncio.run(build(state, args.jobs))
        db = state / "hodei.db"
        print(f"built {args.jobs:,} jobs in {time.monotonic() - t:.1f} s; database {db.stat().st_size / 2**20:.1f} MiB")
        checks, scans, starts = [], [], []
        for _ in range(args.repeat):
            conn = sqlite3.connect(db)
            t = time.perf_counter()
            assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
            checks.append(time.perf_counter() - t)
            conn.close()
            logs = LogStore(state / "logs", Notifier())
            t = time.perf_counter()
            assert logs.highest_job_id() == args.jobs
            scans.append(time.perf_counter() - t)
            starts.append(start_hodeid(root))

        def ms(xs: list[float]) -> str:
            return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"

        print(f"PRAGMA quick_check:       {ms(checks)}")
        print(f"listdir of logs/:         {ms(scans)}")
        print(f"hodeid start to a Ping:   {ms(starts)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

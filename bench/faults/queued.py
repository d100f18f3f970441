#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Case 7: 10,000 queued jobs: hodeid RSS, `hodeictl list` latency, ListJobs round trips, an 8 MiB reply.

    .venv/bin/python bench/faults/queued.py [--quick]    # --quick: 2,000 jobs

--max-workers 1, the first job holds the worker; then N jobs are submitted on one connection (time
per 1,000), `hodeictl list` and `list --limit 0 --json` are timed (median of 10, next to `--help`
and `python -c pass`), and jobs with a 32 kB command are added until the all-jobs reply passes
MAX_FRAME. Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
import msgspec
from case import (
    Client,
    Run,
    Sampler,
    ctl,
    entry,
    mb,
    median,
    ms,
)

from hodei.protocol import MAX_FRAME, JobsReply
from hodei_testing import Daemon, rss_kb
from hodeictl.client import spec_from_cli


def cli_times(d: Daemon, args: list[str], n: int = 10) -> tuple[float, int, int]:
    """(median seconds, last exit code, last stdout size) of n runs of hodeictl."""
    times, code, size = [], 0, 0
    for _ in range(n):
        t0 = time.monotonic()
        r = ctl(d, *args)
        times.append(time.monotonic() - t0)
        code, size = r.returncode, len(r.stdout)
    return median(times), code, size


async def client_times(c: Client, limit: int, n: int = 10) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(n):
        t0 = time.monotonic()
        jobs = await c.list(limit=limit)
        times.append(time.monotonic() - t0)
        count = len(jobs)
    return median(times), count


async def queued_case(run: Run) -> dict[str, Any]:
    n = 2000 if run.quick else 10_000
    d = run.daemon("queue", ["--max-workers", "1"])
    await d.astart()
    gate = d.root / "gate"
    res: dict[str, Any] = {"queued": n}
    async with d.aclient() as c:
        blocker = await c.submit(spec_from_cli([f"while [ ! -e {gate} ]; do sleep 0.1; done"]))
        for _ in range(200):
            if (await c.get(blocker.id)).state == "running":
                break
            await asyncio.sleep(0.05)
        res["rss_one_job_kb"] = rss_kb(d.pid)
        res["cli_list_1_job_s"], _, _ = cli_times(d, ["list"])
        res["cli_help_s"], _, _ = cli_times(d, ["--help"])  # the CLI's own start-up, no socket
        t0 = time.monotonic()
        for _ in range(10):
            subprocess.run([str(d.bin / "python"), "-c", "pass"], check=False)
        res["python_pass_s"] = (time.monotonic() - t0) / 10
        spec = spec_from_cli(["true"])
        res["spec_bytes"] = len(msgspec.msgpack.encode(spec))
        t0 = t1 = time.monotonic()
        per_1000 = []
        for i in range(1, n + 1):
            await c.submit(spec)
            if i % 1000 == 0:
                per_1000.append(round(time.monotonic() - t1, 2))
                t1 = time.monotonic()
        res["submit_s"] = round(time.monotonic() - t0, 2)
        res["submit_s_per_1000"] = per_1000
        await asyncio.sleep(1.0)
        res["rss_after_submit_kb"] = rss_kb(d.pid)
        sampler = Sampler(lambda: {"hodeid": [d.pid]})
        sampler.start()
        res["cli_list_s"], res["cli_list_exit"], _ = cli_times(d, ["list"])
        res["cli_list_all_json_s"], res["cli_list_all_exit"], res["cli_list_all_bytes"] = cli_times(
            d, ["list", "--limit", "0", "--json"])
        res["client_list50_s"], _ = await client_times(c, 50)
        res["client_list_all_s"], res["client_list_all_count"] = await client_times(c, 0)
        sampler.stop()
        res["rss_peak_during_lists_kb"] = sampler.peak("hodeid")
        res["rss_after_lists_kb"] = rss_kb(d.pid)
        jobs = await c.list(limit=0)
        frame = len(msgspec.msgpack.encode(JobsReply(jobs=jobs)))
        res["list_all_frame_bytes"] = frame
        res["list_all_frame_bytes_per_job"] = round(frame / len(jobs), 1)
        # The reply to "all jobs" is one frame, and frames are capped at MAX_FRAME: push it over.
        long_cmd = "true # " + "x" * 32000
        per = len(msgspec.msgpack.encode(JobsReply(jobs=jobs[:1]))) - 4 + len(long_cmd)
        extra = int((MAX_FRAME - frame) / per) + 20
        long_spec = spec_from_cli([long_cmd])
        for _ in range(extra):
            await c.submit(long_spec)
        res["overflow_extra_jobs"] = extra
    over = ctl(d, "list", "--limit", "0", "--json")
    res["overflow_cli_exit"] = over.returncode
    res["overflow_cli_stderr"] = over.stderr.decode(errors="replace").strip()[-300:]
    res["overflow_cli_default_list_exit"] = ctl(d, "list").returncode
    gate.touch()
    d.stop(30)
    return res


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(7):
        if r := await run.case("7 queued jobs", queued_case(run)):
            run.row(f"7. {r['queued']:,} queued jobs (--max-workers 1, first job holds the worker)",
                    f"`hodeictl list` median {ms(r['cli_list_s'])} (with 1 job: {ms(r['cli_list_1_job_s'])};"
                    f" `hodeictl --help`: {ms(r['cli_help_s'])});"
                    f" `list --limit 0 --json` {ms(r['cli_list_all_json_s'])};"
                    f" ListJobs round trip: 50 jobs {ms(r['client_list50_s'])},"
                    f" all {ms(r['client_list_all_s'])}",
                    f"nothing; but with {r['overflow_extra_jobs']:,} more jobs of a 32 kB command"
                    f" `list --limit 0` exits {r['overflow_cli_exit']}",
                    f"hodeid RSS {mb(r['rss_after_submit_kb'])} after the submits (1 job: {mb(r['rss_one_job_kb'])}),"
                    f" peak {mb(r['rss_peak_during_lists_kb'])} during the lists;"
                    f" submits on one connection: first 1,000 in {r['submit_s_per_1000'][0]} s,"
                    f" last 1,000 in {r['submit_s_per_1000'][-1]} s")


if __name__ == "__main__":
    entry("bench/faults/queued.py", __doc__, [cases])

#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Case 8: kill -9 of hodeid while short jobs stream through it: does every job run exactly once?

    .venv/bin/python bench/faults/assignment_crash.py [--quick]

8: batches of 100 jobs (each appends its id to a file) on 2 workers; hodeid is killed with kill -9 at
a random moment after each batch and started again (8 rounds; --quick: 3). The file says how often
each job ran; job_events say what state each was in at each kill.
8b: the job itself kill -9s hodeid as it starts (its Accept may be lost), then its agent is killed:
is the job's `sleep 300` left running? Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
from case import (
    FAST_HB,
    FINAL,
    Client,
    Poller,
    Run,
    entry,
    job_events,
    started_at_kind,
)

from hodei.protocol import Ping
from hodei_testing import pid_alive
from hodeictl.client import spec_from_cli


async def assignment_crash_case(run: Run) -> dict[str, Any]:
    rounds = 3 if run.quick else 8
    batch = 100
    d = run.daemon("assign", ["--max-workers", "2", *FAST_HB])
    await d.astart()
    shared = d.root / "ran.txt"
    spec = spec_from_cli([f"echo $HODEI_JOB_ID >> {shared}; sleep 0.05"])
    rng = random.Random(8)
    p = Poller(d)
    ids: list[int] = []
    kills: list[float] = []  # wall clock, to compare with job_events
    restarts: list[float] = []
    async def flowing(c: Client) -> bool:
        workers: Any = await c.workers()
        return sum(1 for w in workers if w.last_heartbeat is not None) >= 2

    for _ in range(rounds):
        async def submit_batch(c: Client) -> list[int]:
            return [(await c.submit(spec)).id for _ in range(batch)]

        await p.until(flowing, timeout=30, interval=0.02)  # both agents back: jobs flow when we strike
        ids += await p.call(submit_batch)
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        await p.close()
        d.kill()
        kills.append(time.time())
        d.spawn()
        restarts.append(time.time())
        await p.call(lambda c: c.request(Ping()))
    t0 = time.monotonic()

    async def settled(c: Client) -> bool:
        return all(str(j.state) in FINAL for j in await c.list(limit=0))

    ok = await p.until(settled, timeout=120, interval=0.2)
    settle_s = round(time.monotonic() - t0, 2)
    jobs = await p.call(lambda c: c.list(limit=0))
    await p.close()
    d.stop(30)
    counts = (collections.Counter(int(x) for x in shared.read_text().split()) if shared.exists()
              else collections.Counter())
    by_state = collections.Counter(str(j.state) for j in jobs)
    state_of = {j.id: str(j.state) for j in jobs}
    res: dict[str, Any] = {
        "rounds": rounds, "jobs": len(ids), "settled": bool(ok), "settle_after_last_restart_s": settle_s,
        "final_states": dict(by_state),
        "ran_twice_or_more": sorted(i for i in ids if counts[i] > 1),
        "succeeded_but_never_ran": sorted(i for i in ids if state_of.get(i) == "succeeded" and counts[i] == 0),
        "ran_but_not_succeeded": sorted((i, state_of.get(i)) for i in ids
                                        if counts[i] >= 1 and state_of.get(i) != "succeeded"),
        "left_unfinished": sorted((i, state_of.get(i)) for i in ids if state_of.get(i) not in FINAL),
    }
    # Which jobs were caught mid-assignment: their state in the database at each kill instant.
    events = job_events(d)
    history: dict[int, list[tuple[float, str]]] = collections.defaultdict(list)
    for job_id, at, _frm, to, _w, _why in events:
        history[job_id].append((at, to))
    at_kill: collections.Counter[str] = collections.Counter()
    caught_assigned: list[int] = []
    for k in kills:
        for job_id, hist in history.items():
            state = None
            for at, to in hist:
                if at <= k:
                    state = to
            if state in ("assigned", "running"):
                at_kill[state] += 1
                if state == "assigned":
                    caught_assigned.append(job_id)
    res["states_at_kill_instants"] = dict(at_kill)
    last = restarts[-1]
    res["unfinished_at_last_restart"] = sum(
        1 for hist in history.values() if (st := max(((at, to) for at, to in hist if at <= last), default=(0, None))[1])
        and st not in FINAL)
    db = sqlite3.connect(f"file:{d.state_dir / 'hodei.db'}?mode=ro", uri=True)
    pids = dict(db.execute("SELECT id, pid FROM jobs").fetchall())
    db.close()
    info = {j.id: j for j in jobs}
    res["caught_assigned"] = [
        {"job": i, "state": state_of.get(i), "ran": counts[i], "pid_known": pids.get(i) is not None,
         "started_at": started_at_kind(info[i]) if i in info else None}
        for i in caught_assigned]
    res["jobs_with_unknown_pid"] = sum(1 for i in ids if pids.get(i) is None and state_of.get(i) == "succeeded")
    res["requeued_after_reconnect"] = sum(1 for e in events if e[2] == "assigned" and e[3] == "queued")
    res["requeue_reasons"] = dict(collections.Counter(e[5] for e in events if e[2] == "assigned" and e[3] == "queued"))
    res["lost_reasons"] = dict(collections.Counter(e[5] for e in events if e[3] == "lost"))
    return res


async def accept_lost_case(run: Run) -> dict[str, Any]:
    """hodeid dies between handing out a job and recording its start; later the job's agent dies.

    The job itself kills hodeid with kill -9 as its first act, so the crash lands right after the
    agent started it: sometimes before hodeid stored the agent's Accept (with the job's pid), sometimes
    after. Then, with hodeid back and the job running, its agent is killed with kill -9: is the job's
    own process (a `sleep 300`) killed with it, as it is in case 4?
    """
    tries = 3 if run.quick else 6
    out = [await accept_lost_once(run, k) for k in range(tries)]
    unknown = [r for r in out if not r["pid_known"]]
    return {"tries": tries, "runs": out, "pid_unknown": len(unknown),
            "orphaned_when_pid_unknown": sum(r["sleep_300_left_running"] for r in unknown),
            "orphaned_when_pid_known": sum(r["sleep_300_left_running"] for r in out if r["pid_known"])}


async def accept_lost_once(run: Run, k: int) -> dict[str, Any]:
    d = run.daemon(f"acc{k}", ["--max-workers", "1", *FAST_HB])
    await d.astart()
    pidfile = d.root / "sleeper.pid"
    p = Poller(d)
    job = await p.call(lambda c: c.submit(spec_from_cli([f"sleep 300 & echo $! > {pidfile}; kill -9 {d.pid}; wait"])))
    await p.close()
    assert d.proc is not None
    d.proc.wait(30)
    d.spawn()

    async def back(c: Client) -> bool:
        workers: Any = await c.workers()
        return any(w.job_id == job.id and w.last_heartbeat is not None for w in workers) and (
            await c.get(job.id)).state == "running"

    ok = await p.until(back, timeout=30)
    j = await p.call(lambda c: c.get(job.id))
    db = sqlite3.connect(f"file:{d.state_dir / 'hodei.db'}?mode=ro", uri=True)
    (pid,) = db.execute("SELECT pid FROM jobs WHERE id = ?", (job.id,)).fetchone()
    db.close()
    r: dict[str, Any] = {"running_again": bool(ok), "pid_known": pid is not None,
                         "started_at": started_at_kind(j)}
    workers: Any = await p.call(lambda c: c.workers())
    agent = next((w.pid for w in workers if w.job_id == job.id), None)
    sleeper = int(pidfile.read_text())
    if agent:
        os.kill(agent, signal.SIGKILL)

    async def final(c: Client) -> Any:
        return str((await c.get(job.id)).state) in FINAL

    await p.until(final, timeout=30)
    await asyncio.sleep(1.0)
    r["final"] = str((await p.call(lambda c: c.get(job.id))).state)
    r["sleep_300_left_running"] = pid_alive(sleeper)
    if pid_alive(sleeper):
        os.kill(sleeper, signal.SIGKILL)
    await p.close()
    d.stop(30)
    return r


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(8):
        if r := await run.case("8 kill -9 during assignment", assignment_crash_case(run)):
            dup, never = r["ran_twice_or_more"], r["succeeded_but_never_ran"]
            run.row(f"8. kill -9 of hodeid {r['rounds']}x while {r['jobs']:,} short jobs stream through 2 workers",
                    f"final states {r['final_states']}; {r['requeued_after_reconnect']} jobs requeued on reconnect",
                    f"{len(dup)} ran twice, {len(never)} succeeded without running,"
                    f" {len(r['left_unfinished'])} left unfinished",
                    f"{r['states_at_kill_instants'].get('assigned', 0)} jobs caught `assigned` at a kill,"
                    f" {r['states_at_kill_instants'].get('running', 0)} `running`;"
                    f" settled {r['settle_after_last_restart_s']} s after the last restart")
        if r := await run.case("8b accept lost, then agent killed", accept_lost_case(run)):
            run.row(f"8b. the job kill -9s hodeid as it starts ({r['tries']}x); after the restart its agent is killed",
                    f"job back to `running` after the restart, then `lost`; in {r['pid_unknown']} of {r['tries']} runs"
                    " hodeid had not stored the Accept: no pid, and started_at is the submit time",
                    f"the job's `sleep 300` is LEFT RUNNING in {r['orphaned_when_pid_unknown']}"
                    f" of those {r['pid_unknown']}"
                    f" runs ({r['orphaned_when_pid_known']} of the other {r['tries'] - r['pid_unknown']})",
                    f"{r['orphaned_when_pid_unknown'] + r['orphaned_when_pid_known']} orphaned processes"
                    f" in {r['tries']} runs")


if __name__ == "__main__":
    entry("bench/faults/assignment_crash.py", __doc__, [cases])

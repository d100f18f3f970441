#!/usr/bin/env python3
"""Docker 3. Twenty `sleep 2` jobs at once with --max-workers 20, from zero workers.

    .venv/bin/python bench/docker_twenty.py            # 3 runs of one job, 3 of twenty
    .venv/bin/python bench/docker_twenty.py --quick    # 1 and 1

hodeid `--provider docker --network none --max-workers 20 --max-jobs-per-worker 1 --idle-timeout 1`.
Next to one such job from zero, the serial sum, and twenty parallel `docker run --rm ... sleep 2`;
the engine's events, hodeid's, the engine's and the containers' CPU say where the time goes.
Part of bench/docker_bench.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import _venv  # noqa: F401  (first: the venv's python)
import aiodocker
from common import say
from docker_common import (
    BENCH_LABEL,
    IMAGE,
    TOKEN,
    Client,
    Disturbed,
    Events,
    Results,
    cmdline,
    containers_cpu,
    cpu_of,
    host_cpu,
    med,
    pids_named,
    retried,
    run_alone,
    sec,
    start_daemon,
    until_no_workers,
)

from hodei.protocol import JobState
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SIZES = {"quick": (1, 1), "full": (3, 3)}  # runs of one job, runs of twenty


async def hodei_batch(d: Daemon, ctl: Client, docker: aiodocker.Docker, events: Events, k: int) -> dict[str, Any]:
    await until_no_workers(d, ctl, docker)
    busy0, total0 = host_cpu()
    cpu0 = cpu_of([d.pid])
    engine0 = cpu_of(pids_named("dockerd", "containerd"))
    inside0 = containers_cpu()
    n_events = len(events.items)
    async with Client(d.socket) as c:
        t0 = time.time()
        ids = [(await c.submit(spec_from_cli(["sleep 2"]))).id for _ in range(k)]
        t_sub = time.time()
        done = await c.wait(ids)
        t1 = time.time()
    busy1, total1 = host_cpu()
    inside = containers_cpu() - inside0
    ours = {j.worker_id for j in done}
    with events.lock:
        others = sum(1 for a, _, attrs in events.items[n_events:]
                     if a == "start" and attrs.get("hodei.worker-id") not in ours)
    bad = [j for j in done if j.state is not JobState.SUCCEEDED]
    if bad:
        raise Disturbed(f"{len(bad)} of {k} sleep jobs did not succeed: {bad[0]}")
    created, started, assigned = [], [], []
    for j in done:
        wid = j.worker_id or ""
        created.append((await events.wait_for("create", "hodei.worker-id", wid) or float("nan")) - t0)
        started.append((await events.wait_for("start", "hodei.worker-id", wid) or float("nan")) - t0)
        _, history = await ctl.history(j.id)
        assigned.append(next(e.at for e in history if e.to_state is JobState.ASSIGNED) - t0)
    return {
        "wall": t1 - t0, "submit": t_sub - t0, "workers": len({j.worker_id for j in done}),
        "last_create": max(created), "first_start": min(started), "median_start": med(started),
        "last_start": max(started), "first_assigned": min(assigned), "median_assigned": med(assigned),
        "last_assigned": max(assigned), "last_started": max((j.started_at or 0) - t0 for j in done),
        "last_finished": max((j.finished_at or 0) - t0 for j in done),
        "cpu_busy": (busy1 - busy0) / max(1, total1 - total0),
        "hodeid_cpu": cpu_of([d.pid]) - cpu0, "engine_cpu": cpu_of(pids_named("dockerd", "containerd")) - engine0,
        "inside_cpu": inside, "other_containers": others,
    }


def docker_batch(k: int, events: Events) -> dict[str, float]:
    t0 = time.time()
    procs = [subprocess.Popen(["docker", "run", "--rm", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                               "--entrypoint", "/bin/sleep", IMAGE, "2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(k)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"docker run sleep 2 failed: {err.decode(errors='replace')}")
    wall = time.time() - t0
    time.sleep(0.2)  # the events thread may be a little behind
    with events.lock:
        starts = sorted(t - t0 for a, t, attrs in events.items if a == "start" and attrs.get(BENCH_LABEL) == TOKEN
                        and t >= t0)
    return {"wall": wall, "first_start": starts[0] if starts else float("nan"),
            "median_start": med(starts), "last_start": starts[-1] if starts else float("nan")}


async def bench_twenty(h: Harness, singles: int, reps: int, docker: aiodocker.Docker, events: Events,
                       res: Results) -> None:
    d = await start_daemon(h, "twenty", ["--max-workers", "20", "--max-jobs-per-worker", "1", "--idle-timeout", "1"])
    res.commands.append(f"twenty: `{cmdline(d)}`")
    one, twenty, peer_one, peer_twenty = [], [], [], []
    disturbed: list[str] = []
    async with Client(d.socket) as ctl:
        for i in range(max(singles, reps)):
            if i < singles:
                say(f"twenty: one `sleep 2` from zero workers, {i + 1}/{singles}")
                one.append(await retried(lambda: hodei_batch(d, ctl, docker, events, 1), disturbed))
                peer_one.append(await asyncio.to_thread(docker_batch, 1, events))
            if i < reps:
                say(f"twenty: twenty `sleep 2` from zero workers, {i + 1}/{reps}")
                twenty.append(await retried(lambda: hodei_batch(d, ctl, docker, events, 20), disturbed))
                peer_twenty.append(await asyncio.to_thread(docker_batch, 20, events))
        await until_no_workers(d, ctl, docker)
    d.stop()
    single = med([s["wall"] for s in one])
    total = med([s["wall"] for s in twenty])
    serial = 20 * single
    peer20, peer1 = med([p["wall"] for p in peer_twenty]), med([p["wall"] for p in peer_one])
    res.rows.append(((f"3. Twenty `sleep 2` at once, `--max-workers 20`, from zero workers: first submit → all finished"
                     f" (median, n={reps})"), sec(total),
                     (f"one such job from zero: {sec(single)} (n={singles}); serial sum 20 × that: {sec(serial)};"
                     f" twenty parallel `docker run --rm … sleep 2`: {sec(peer20)}"
                     f" (one: {sec(peer1)})"),
                     (f"{total / single:.2f}× one job; {serial / total:.1f}× faster than serial;"
                     f" {total / peer20:.2f}× docker run"), "", ""))

    def m(key: str) -> float:
        return med([s[key] for s in twenty])

    res.notes.append(
        f"**Twenty at once, where the time goes** (medians over {reps} run(s), seconds after the first submit):"
        f" all 20 submitted {sec(m('submit'))}; last container created (engine event) {sec(m('last_create'))};"
        f" containers started (engine `start` events): first {sec(m('first_start'))}, median {sec(m('median_start'))},"
        f" last {sec(m('last_start'))}; jobs assigned (their agent registered): first {sec(m('first_assigned'))},"
        f" median {sec(m('median_assigned'))}, last"
        f" {sec(m('last_assigned'))}; last job started {sec(m('last_started'))}; last"
        f" finished {sec(m('last_finished'))}; `wait` returned {sec(total)}. {int(m('workers'))} distinct workers."
        f" Host CPU busy over the run: {m('cpu_busy') * 100:.0f}% of {os.cpu_count()} cores; CPU seconds used by"
        f" hodeid {m('hodeid_cpu'):.2f}, by dockerd + containerd {m('engine_cpu'):.2f}, inside containers (the"
        f" docker cgroup: agents, docker-init, the jobs) {m('inside_cpu'):.2f}; containers started on this engine"
        f" by others meanwhile: {int(max(s['other_containers'] for s in twenty))} at most."
        f" One job from zero: assigned after {sec(med([s['first_assigned'] for s in one]))}, wall {sec(single)}."
        f" The twenty parallel `docker run`s, for comparison: containers started first"
        f" {sec(med([p['first_start'] for p in peer_twenty]))},"
        f" median {sec(med([p['median_start'] for p in peer_twenty]))},"
        f" last {sec(med([p['last_start'] for p in peer_twenty]))}."
        + (f" Runs redone because a job did not succeed: {disturbed}." if disturbed else "")
    )


async def measure(h: Harness, docker: aiodocker.Docker, events: Events, res: Results, quick: bool) -> None:
    await bench_twenty(h, *SIZES["quick" if quick else "full"], docker, events, res)


if __name__ == "__main__":
    run_alone("bench/docker_twenty.py", __doc__, measure)

#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Case 4: a worker dies or freezes mid-job: what the user sees, how long until the job is final.

    .venv/bin/python bench/faults/worker_fault.py [--quick]

The agent is killed with kill -9 or frozen with SIGSTOP (local provider), or its container is killed
or paused (docker), with fast heartbeats (0.5 s / 5 s) and the defaults (2 s / 15 s). Reported: the
job's final state and reason, the time from the fault, whether the job's own process (or the
container) was removed, and whether the next job runs. Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
from case import (
    FAST_HB,
    FINAL,
    IMAGE,
    Client,
    Poller,
    Run,
    ctl,
    docker,
    entry,
    secs,
)

from hodei_testing import pid_alive
from hodeictl.client import spec_from_cli


async def worker_fault_case(run: Run, provider: str, fault: str, flags: list[str]) -> dict[str, Any]:
    tag = {"kill -9": "k", "SIGSTOP": "s", "docker kill": "k", "docker pause": "p"}[fault]
    name = f"w-{provider[0]}{tag}{'f' if flags else 'd'}"
    args = ["--max-workers", "1", *flags]
    if provider == "docker":
        args += ["--provider", "docker", "--image", IMAGE, "--network", "none", "--provision-timeout", "90"]
    d = run.daemon(name, args)
    await d.astart()
    share = d.agent_socket.parent
    inside = "/run/hodei-agent" if provider == "docker" else str(share)
    p = Poller(d)
    job = await p.call(lambda c: c.submit(spec_from_cli([f"echo $$ > {inside}/pid; echo started; sleep 300"])))
    jid = job.id
    res: dict[str, Any] = {"provider": provider, "fault": fault, "flags": " ".join(flags) or "defaults (2 s / 15 s)"}

    async def running(c: Client) -> Any:
        j = await c.get(jid)
        return j if j.state == "running" and (share / "pid").exists() else None

    j = await p.until(running, timeout=120)
    if not j:
        res["error"] = "the job did not start"
        return res
    workers = await p.call(lambda c: c.workers())
    worker = next(w for w in workers if w.job_id == jid)
    await asyncio.sleep(0.5)
    job_pid = int((share / "pid").read_text())
    if fault == "kill -9":
        os.kill(worker.pid, signal.SIGKILL)
    elif fault == "SIGSTOP":
        os.kill(worker.pid, signal.SIGSTOP)
    elif fault == "docker kill":
        docker("kill", f"hodei-worker-{worker.id}")
    else:
        docker("pause", f"hodei-worker-{worker.id}")
    t0 = time.monotonic()

    async def lost(c: Client) -> Any:
        j = await c.get(jid)
        return j if str(j.state) in FINAL else None

    j = await p.until(lost, timeout=60, interval=0.01)
    res["to_final_s"] = round(time.monotonic() - t0, 3) if j else None
    res["state"] = str(j.state) if j else "not final after 60 s"
    res["reason"] = j.reason if j else ""
    cli = json.loads(ctl(d, "show", str(jid), "--json").stdout or b"{}")
    res["cli_show_state"], res["attempt"] = cli.get("state"), cli.get("attempt")
    res["output_kept"] = ctl(d, "logs", str(jid)).stdout.decode(errors="replace")
    if provider == "local":
        deadline = time.monotonic() + 5
        while pid_alive(job_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        res["job_process_gone"] = not pid_alive(job_pid)
        if fault == "SIGSTOP":
            res["frozen_agent_gone"] = not pid_alive(worker.pid)
    else:
        await asyncio.sleep(2)
        res["container_removed"] = f"hodei-worker-{worker.id}" not in docker("ps", "-a", "--format", "{{.Names}}")
    # Does the daemon carry on? One more job on a fresh worker.
    nxt = await p.call(lambda c: c.submit(spec_from_cli(["echo again"])))
    fin = await p.call(lambda c: c.wait([nxt.id]), timeout=120)
    res["next_job"] = str(fin[0].state)
    if fault == "docker pause":
        docker("unpause", f"hodei-worker-{worker.id}", check=False)
    await p.close()
    d.stop(30)
    return res


def worker_fault_row(run: Run, r: dict[str, Any]) -> None:
    what = "agent" if r["provider"] == "local" else "container"
    label = f"4. {r['fault']} of the worker {what} mid-job ({r['provider']}; heartbeat {r['flags']})"
    if "error" in r:
        run.row(label, r["error"], "n/a", "n/a")
        return
    sees = f"job `{r['state']}`: \"{r['reason']}\"; next job `{r['next_job']}`"
    extra = ""
    if "job_process_gone" in r:
        extra = "; the job's own process was " + ("killed" if r["job_process_gone"] else "LEFT RUNNING")
    if "frozen_agent_gone" in r:
        extra += "; the frozen agent was " + ("killed" if r["frozen_agent_gone"] else "LEFT BEHIND")
    if "container_removed" in r:
        extra = "; the container was " + ("removed" if r["container_removed"] else "LEFT BEHIND")
    kept = "output before the fault kept" if r["output_kept"] == "started\n" else f"output now {r['output_kept']!r}"
    run.row(label, sees, f"the run of the job (attempt {r['attempt']}, not retried); {kept}" + extra,
            f"lost after {secs(r['to_final_s'])}")


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(4):
        for fault, flags in (("kill -9", FAST_HB), ("kill -9", []), ("SIGSTOP", FAST_HB), ("SIGSTOP", [])):
            if fault == "SIGSTOP" and not flags and run.quick:
                continue
            if r := await run.case(f"4 {fault} agent, local, {flags or 'defaults'}",
                                   worker_fault_case(run, "local", fault, flags)):
                worker_fault_row(run, r)
        if why_no_docker := run.why_no_docker():
            run.row("4. docker kill of the worker container", f"not measured: {why_no_docker}", "n/a", "n/a")
        else:
            for fault, flags in (("docker kill", FAST_HB), ("docker kill", []), ("docker pause", FAST_HB)):
                if r := await run.case(f"4 {fault}, {flags or 'defaults'}",
                                       worker_fault_case(run, "docker", fault, flags)):
                    worker_fault_row(run, r)


if __name__ == "__main__":
    entry("bench/faults/worker_fault.py", __doc__, [cases])

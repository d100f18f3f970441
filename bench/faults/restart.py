#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Cases 1-3: hodeid restarts under a running job; is its log whole, does a follower ride it out?

    .venv/bin/python bench/faults/restart.py [--quick] [--only 1,2,3]

  1 graceful restart (SIGTERM, start again) with a job writing a numbered line every 10 ms through
    `tee FILE`, local provider; a `hodeictl logs -f` follower attached meanwhile
  2 the same with kill -9 of hodeid, started again at once; 2b: down for 5 s (and `hodeictl show` meanwhile)
  3 both on the docker provider (--network none); run again once if another hodeid's sweep removed our container
FILE is then compared byte for byte with `hodeictl logs`, and the follower's output with FILE's tail.
Figures: the new hodeid's first answer, its agent back with the job, the time without an answer.
Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
from case import (
    IMAGE,
    Client,
    DockerEvents,
    Poller,
    Run,
    ctl,
    entry,
    log_tail,
    say,
    secs,
)

from hodeictl.client import spec_from_cli


def line_writer(gate: str, out: str, pidfile: str | None) -> str:
    pid = f"echo $$ > {pidfile}; " if pidfile else ""
    return (f'{pid}{{ i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo "line $i"; sleep 0.01; done; }} | tee {out}')


def compare(a: bytes, b: bytes) -> dict[str, Any]:
    """Where two outputs differ, in terms of the numbered lines."""
    res: dict[str, Any] = {"identical": a == b, "file_bytes": len(a), "log_bytes": len(b)}
    if a != b:
        n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        res["first_difference_at"] = n
        res["file_around"] = a[max(0, n - 30): n + 30].decode(errors="replace")
        res["log_around"] = b[max(0, n - 30): n + 30].decode(errors="replace")
        la, lb = a.split(b"\n"), b.split(b"\n")
        res["file_lines"], res["log_lines"] = len(la), len(lb)
        res["missing_lines"] = len(set(la) - set(lb))
        res["repeated_lines"] = len(lb) - len(set(lb))
    return res


async def restart_case(run: Run, provider: str, how: str, down: float = 0.0) -> dict[str, Any]:
    """A job writing a numbered line every 10 ms through `tee FILE`; restart hodeid; compare FILE with `logs`."""
    name = f"r-{provider[0]}-{'k' if how == 'kill -9' else 'g'}{int(down)}"
    args = ["--max-workers", "2"]
    if provider == "docker":
        args += ["--provider", "docker", "--image", IMAGE, "--network", "none", "--provision-timeout", "90"]
    d = run.daemon(name, args)
    await d.astart()
    events = DockerEvents((d.state_dir / "instance").read_text().strip()) if d.docker else None
    share = d.agent_socket.parent  # bind-mounted into containers as /run/hodei-agent
    inside = "/run/hodei-agent" if provider == "docker" else str(share)
    gate, out = "gate", "out.txt"
    cmd = line_writer(f"{inside}/{gate}", f"{inside}/{out}", None)
    p = Poller(d)
    job = await p.call(lambda c: c.submit(spec_from_cli([cmd])))
    jid = job.id
    res: dict[str, Any] = {"provider": provider, "how": how, "job": jid, "downtime_extra_s": down}

    async def lines_in_log(c: Client) -> bool:
        return (await c.get(jid)).state == "running" and (share / out).exists() and (share / out).stat().st_size > 300

    started = await p.until(lines_in_log, timeout=120)
    if not started:
        res["error"] = f"the job did not start: {(await p.call(lambda c: c.get(jid))).state}"
        res["hodeid_log_tail"] = log_tail(d)
        if events is not None:
            res["docker_events"] = events.stop()
        return res
    res["job_started_after_s"] = round(time.time() - job.created_at, 2)
    await asyncio.sleep(1.0 if run.quick else 2.0)
    follower_out = open(d.root / "follower.out", "wb")  # noqa: SIM115 - the follower writes to it until stopped
    follower = subprocess.Popen([str(d.bin / "hodeictl"), "logs", "-f", str(jid)], stdout=follower_out,
                                stderr=subprocess.PIPE, env=d.env)
    await asyncio.sleep(0.5)
    await p.close()
    size_at_stop = (share / out).stat().st_size
    t_signal = time.monotonic()
    if how == "graceful":
        t_stop = time.monotonic()
        code = d.stop(30)
        took = time.monotonic() - t_stop
        res["stop_exit_code"], res["stop_took_s"] = code, round(took, 3)
    else:
        d.kill()
    t_down = time.monotonic()
    if down:
        cli = ctl(d, "show", str(jid), "--json")
        res["cli_while_down"] = {"exit": cli.returncode, "stderr": cli.stderr.decode(errors="replace").strip()}
        await asyncio.sleep(max(0.0, down - (time.monotonic() - t_down)))
    t0 = d.spawn()
    res["start_after_stop_s"] = round(t0 - t_down, 3)

    async def answers(c: Client) -> bool:
        return True

    await p.until(answers, timeout=60, interval=0.002)
    res["daemon_answers_s"] = round(time.monotonic() - t0, 3)
    res["unanswered_s"] = round(time.monotonic() - t_signal, 3)  # from the signal to the new hodeid's first answer

    async def reconnected(c: Client) -> Any:
        workers: Any = await c.workers()  # (typed list[...] inside Client, where `list` is its method)
        return next((w for w in workers if w.job_id == jid and w.last_heartbeat is not None), None)

    w = await p.until(reconnected, timeout=60, interval=0.005)
    res["agent_back_s"] = round(time.monotonic() - t0, 3) if w else None
    state = (await p.call(lambda c: c.get(jid))).state
    res["state_after_restart"] = str(state)
    cli_workers = json.loads(ctl(d, "workers", "--json").stdout or b"[]")
    res["cli_workers_shows_job"] = any(x.get("job_id") == jid for x in cli_workers)
    res["file_grew_while_down"] = (share / out).stat().st_size > size_at_stop
    await asyncio.sleep(1.0 if run.quick else 2.0)
    (share / gate).touch()
    final = await p.call(lambda c: c.wait([jid]), timeout=120)
    res["final_state"], res["exit_code"], res["reason"] = str(final[0].state), final[0].exit_code, final[0].reason
    try:
        follower.wait(timeout=60)
    except subprocess.TimeoutExpired:
        follower.kill()
        follower.wait()
    follower_out.close()
    res["follower_exit"] = follower.returncode
    assert follower.stderr is not None
    res["follower_stderr"] = follower.stderr.read().decode(errors="replace").strip()[-300:]
    follower.stderr.close()
    logs = ctl(d, "logs", str(jid))
    written = (share / out).read_bytes()
    res["compare_logs"] = compare(written, logs.stdout)
    res["logs_exit"] = logs.returncode
    # The follower attached after the first ~1.5 s of output: compare it with the file's tail.
    fol = (d.root / "follower.out").read_bytes()
    res["follower_bytes"] = len(fol)
    res["follower_is_suffix_of_file"] = bool(fol) and written.endswith(fol)
    res["follower_equals_file"] = fol == written
    await p.close()
    d.stop(30)
    if events is not None:
        res["docker_events"] = events.stop()
    if res["final_state"] != "succeeded" or not res["compare_logs"]["identical"]:
        res["hodeid_log_tail"] = log_tail(d)
    return res


async def restart_case_docker(run: Run, how: str) -> dict[str, Any]:
    """The docker restart case; run again once if another hodeid's sweep removed our container."""
    r = await restart_case(run, "docker", how)
    ev = r.get("docker_events", {})
    if r.get("final_state") != "succeeded" and ev.get("our_container_died_within_2s_of_another_instances_removal"):
        say("our container was removed together with another hodeid's containers: running the case again")
        again = await restart_case(run, "docker", how)
        again["first_attempt_disturbed"] = r
        return again
    return r


def restart_row(run: Run, label: str, r: dict[str, Any]) -> None:
    if "error" in r:
        run.row(label, r["error"], "see details", "n/a")
        return
    cmp = r["compare_logs"]
    ok = cmp["identical"] and r["final_state"] == "succeeded"
    fol = "rides it out, output identical" if r["follower_exit"] == 0 and r["follower_equals_file"] else (
        f"exits {r['follower_exit']}, {r['follower_bytes']} bytes, identical to the file: {r['follower_equals_file']}")
    sees = f"job stays `{r['state_after_restart']}`, ends `{r['final_state']}`; a `logs -f` follower {fol}"
    if "cli_while_down" in r:
        cli = r["cli_while_down"]
        sees += f"; `hodeictl show` while down exits {cli['exit']}: \"{cli['stderr'][:90]}...\""
    lost = ("nothing: " if ok else "DIFFERENT: ") + (
        f"{cmp['file_bytes']} bytes compared, identical" if cmp["identical"]
        else f"file {cmp['file_bytes']} B vs logs {cmp['log_bytes']} B,"
             f" first difference at byte {cmp.get('first_difference_at')}")
    fig = (f"agent back with its job {secs(r['agent_back_s'])} after the new hodeid's start (which answers at"
           f" {secs(r['daemon_answers_s'])}); no answer for {secs(r['unanswered_s'])} from the signal")
    run.row(label, sees, lost, fig)


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(1):
        if r := await run.case("1 graceful restart, local", restart_case(run, "local", "graceful")):
            restart_row(run, "1. graceful restart of hodeid (SIGTERM, start), job running, local", r)
    if want(2):
        if r := await run.case("2 kill -9 restart, local", restart_case(run, "local", "kill -9")):
            restart_row(run, "2. kill -9 of hodeid, start at once, job running, local", r)
        if r := await run.case("2b kill -9, down 5 s, local", restart_case(run, "local", "kill -9", down=5.0)):
            restart_row(run, "2b. kill -9 of hodeid, down 5 s, job running, local", r)
            if "cli_while_down" in r:
                run.details["2b kill -9, down 5 s, local"]["note"] = (
                    "cli_while_down: `hodeictl show` while hodeid was down")
    if want(3):
        if why_no_docker := run.why_no_docker():
            run.row("3. restarts on the docker provider", f"not measured: {why_no_docker}", "n/a", "n/a")
        else:
            if r := await run.case("3 graceful restart, docker", restart_case_docker(run, "graceful")):
                restart_row(run, "3. graceful restart of hodeid, job running, docker --network none", r)
            if r := await run.case("3b kill -9 restart, docker", restart_case_docker(run, "kill -9")):
                restart_row(run, "3b. kill -9 of hodeid, start at once, job running, docker --network none", r)


if __name__ == "__main__":
    entry("bench/faults/restart.py", __doc__, [cases])

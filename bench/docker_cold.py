#!/usr/bin/env python3
# Blocking calls in async code on purpose: the `docker run` floor is timed on its own, one at a time:
# nothing else awaits.
"""Docker 1. Cold path: from zero workers, submit -> first log line at a follower, next to a bare `docker run`.

    .venv/bin/python bench/docker_cold.py            # 15 rounds
    .venv/bin/python bench/docker_cold.py --quick    # 3

hodeid `--provider docker --network none --max-workers 4 --max-jobs-per-worker 1 --idle-timeout 1`.
Each round, in a rotating order: the hodeid sample (hodeictl.client: submit, then logs(follow=True)
until the first LogData; we first wait for the worker list and the daemon's containers to be empty);
`docker run --rm --network none --entrypoint /bin/true IMAGE`; `docker run ... /bin/echo x` (when the
line is printed); the same container cycle through aiodocker (create, start, wait, delete: what
hodeid does); `docker run --init ... python -c '<the agent's imports>'`. The `docker events` stream
and the job itself (which reads /proc/$PPID/stat, its agent) break hodeid's time down.
Part of bench/docker_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import subprocess
import time
from pathlib import Path

import _venv  # noqa: F401  (first: the venv's python)
import aiodocker
from common import say
from docker_common import (
    AGENT_PY,
    BENCH_LABEL,
    COLD_CMD,
    IMAGE,
    IMPORT_PY,
    TOKEN,
    Client,
    Disturbed,
    Events,
    Results,
    cmdline,
    cpu_of,
    med,
    ms,
    output_of,
    proc_stat,
    retried,
    run_alone,
    start_daemon,
    until_no_workers,
    verdict,
)

from hodei.protocol import JobState, LogData
from hodei_testing import Daemon, Harness
from hodeictl.client import spec_from_cli

SAMPLES = {"quick": 3, "full": 15}


async def cold_hodei(d: Daemon, ctl: Client, docker: aiodocker.Docker, events: Events) -> dict[str, float]:
    await until_no_workers(d, ctl, docker)
    spec = spec_from_cli([COLD_CMD])
    async with Client(d.socket) as c:
        t0 = time.time()
        job = await c.submit(spec)
        t_ret = time.time()
        first: LogData | None = None
        async with contextlib.aclosing(c.logs(job.id, follow=True)) as stream:
            async for msg in stream:
                if isinstance(msg, LogData):
                    first = msg
                break
        t1 = time.time()
    if first is None or not first.data.startswith(b"x\n"):
        raise Disturbed(f"cold job {job.id}: the first log message was {first!r}")
    [done] = await ctl.wait([job.id])
    if done.state is not JobState.SUCCEEDED:
        raise Disturbed(f"cold job {job.id} ended {done.state}: {done.reason}")
    out = await output_of(d, job.id)
    agent_stat, init_stat = (proc_stat(line) for line in out.decode().splitlines()[1:3])
    _, history = await ctl.history(job.id)
    assigned = next(e.at for e in history if e.to_state is JobState.ASSIGNED)
    wid = done.worker_id or ""
    created = await events.wait_for("create", "hodei.worker-id", wid)
    started = await events.wait_for("start", "hodei.worker-id", wid)
    if created is None or started is None:
        raise RuntimeError(f"no create/start event seen for worker {wid}")
    if created < t0:
        raise RuntimeError(f"worker {wid} was created before the submit: not a cold sample")
    agent = agent_stat["start"]
    return {
        "total": t1 - t0, "rtt": t_ret - t0,
        "to_create": created - t0,
        "create_to_init": init_stat["start"] - created,
        "init_to_agent": agent - init_stat["start"],
        "agent_vs_start_event": started - agent,
        "agent_to_assigned": assigned - agent,
        "agent_cpu": agent_stat["cpu"],
        "assigned_to_started": (done.started_at or float("nan")) - assigned,
        "started_to_output": first.ts - (done.started_at or float("nan")),
        "output_to_follower": t1 - first.ts,
        "docker_part": agent - t0,  # until the agent's process exists: hodeid's scheduling and the engine
        "hodei_part": t1 - agent,  # from there: the agent's start-up, registration, dispatch, the job, its output
    }


async def cold_docker_run(events: Events) -> dict[str, float]:
    name = f"hodei-bench-{TOKEN}-{secrets.token_hex(3)}"
    t0 = time.time()
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--name", name, "--label", f"{BENCH_LABEL}={TOKEN}",
                    "--entrypoint", "/bin/true", IMAGE], check=True, capture_output=True)
    t1 = time.time()
    created = await events.wait_for("create", "name", name)
    started = await events.wait_for("start", "name", name)
    died = await events.wait_for("die", "name", name)
    nan = float("nan")
    return {"total": t1 - t0, "to_create": (created or nan) - t0,
            "create_to_start": (started or nan) - (created or nan), "start_to_die": (died or nan) - (started or nan),
            "die_to_exit": t1 - (died or nan)}


def cold_docker_first_line() -> dict[str, float]:
    """`docker run ... /bin/echo x`: when the CLI prints the line, and when it exits (container removed)."""
    t0 = time.time()
    p = subprocess.Popen(["docker", "run", "--rm", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                          "--entrypoint", "/bin/echo", IMAGE, "x"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    line = p.stdout.readline()
    t1 = time.time()
    p.stdout.close()
    p.wait()
    t2 = time.time()
    if line != b"x\n" or p.returncode != 0:
        raise RuntimeError(f"docker run echo printed {line!r} and exited {p.returncode}")
    return {"first_line": t1 - t0, "total": t2 - t0}


async def cold_aiodocker(docker: aiodocker.Docker, bind_dir: Path) -> dict[str, float]:
    """The container cycle hodeid makes, through the same library, with the same host config, /bin/true inside."""
    name = f"hodei-bench-{TOKEN}-{secrets.token_hex(3)}"
    config = {
        "Image": IMAGE,
        "Entrypoint": ["/bin/true"],
        "Labels": {BENCH_LABEL: TOKEN},
        "HostConfig": {"Binds": [f"{bind_dir}:/run/hodei-agent"], "Init": True, "NetworkMode": "none"},
    }
    t0 = time.perf_counter()
    with contextlib.suppress(aiodocker.exceptions.DockerError):
        await docker.containers.get(name)  # create_or_replace looks the name up first: a 404 for a new worker
    t1 = time.perf_counter()
    container = await docker.containers.create(config, name=name)
    t2 = time.perf_counter()
    await container.start()
    t3 = time.perf_counter()
    await container.wait()
    t4 = time.perf_counter()
    await container.delete(force=True)
    t5 = time.perf_counter()
    return {"lookup": t1 - t0, "create": t2 - t1, "start": t3 - t2, "wait": t4 - t3, "delete": t5 - t4,
            "create_start": t3 - t1, "total": t5 - t1}


def cold_python_import() -> dict[str, float]:
    """The agent's interpreter and imports in a container; --init, as hodeid's workers have, so python is not PID 1
    (PID 1's start time is runc's, before the container even starts)."""
    t0 = time.time()
    res = subprocess.run(["docker", "run", "--rm", "--init", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                          "--entrypoint", AGENT_PY, IMAGE, "-c", IMPORT_PY], check=True, capture_output=True, text=True)
    t1 = time.time()
    agent, full, age = (float(x) for x in res.stdout.split())
    return {"total": t1 - t0, "import_agent": agent, "import_all": full, "age": age}


IMPORTTIME_OF = ("site", "asyncio", "ssl", "uvloop", "msgspec", "argparse", "logging", "hodei.protocol",
                 "hodei_agent.job")


def cold_importtime() -> dict[str, float]:
    """`python -X importtime` of the agent's imports in a container: cumulative seconds per module of interest."""
    res = subprocess.run(["docker", "run", "--rm", "--init", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                          "--entrypoint", AGENT_PY, IMAGE, "-X", "importtime", "-c", "import hodei_agent.main, uvloop"],
                         check=True, capture_output=True, text=True)
    found: dict[str, float] = {"all": 0.0}
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name[1:].startswith(" "):  # a top-level import: its cumulative time counts once
            found["all"] += int(cumulative) / 1e6
        name = name.strip()
        if name in IMPORTTIME_OF and name not in found:
            found[name] = int(cumulative) / 1e6
    return found


async def bench_cold(h: Harness, n: int, docker: aiodocker.Docker, events: Events, res: Results) -> None:
    d = await start_daemon(h, "cold", ["--max-workers", "4", "--max-jobs-per-worker", "1", "--idle-timeout", "1"])
    res.commands.append(f"cold: `{cmdline(d)}`")
    bind_dir = h.root / "bind"
    bind_dir.mkdir()
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in ("hodei", "run", "echo", "aio", "py")}
    disturbed: list[str] = []
    async with Client(d.socket) as ctl:
        say("cold: warm-up (one of each, not counted)")
        await retried(lambda: cold_hodei(d, ctl, docker, events), disturbed)
        await cold_docker_run(events)
        cold_docker_first_line()
        await cold_aiodocker(docker, bind_dir)
        cold_python_import()
        cpu0 = cpu_of([d.pid])
        for i in range(n):
            say(f"cold: round {i + 1}/{n}")
            cases = [
                ("hodei", lambda: cold_hodei(d, ctl, docker, events)),
                ("run", lambda: cold_docker_run(events)),
                ("echo", lambda: asyncio.to_thread(cold_docker_first_line)),
                ("aio", lambda: cold_aiodocker(docker, bind_dir)),
                ("py", lambda: asyncio.to_thread(cold_python_import)),
            ]
            shift = i % len(cases)  # rotate the order: no case always runs right after the same other
            for key, fn in cases[shift:] + cases[:shift]:
                samples[key].append(await retried(fn, disturbed))
        hodeid_cpu = (cpu_of([d.pid]) - cpu0) / n
        await until_no_workers(d, ctl, docker)
        imports = [await asyncio.to_thread(cold_importtime) for _ in range(3)]
    d.stop()

    def m(key: str, field_: str) -> float:
        return med([s[field_] for s in samples[key]])

    h, bare = m("hodei", "total"), m("run", "total")
    ratio = h / bare
    res.rows.append((f"1. Cold: submit → first log line at a follower, from zero workers (median, n={n})", ms(h),
                     f"`docker run --rm --network none --entrypoint /bin/true`: {ms(bare)}", f"{ratio:.2f}×",
                     "≤ 1.3× bare run", verdict(ratio <= 1.3, f"{ratio:.2f}× vs 1.3×; {ms(h - 1.3 * bare)} over"
                                                if ratio > 1.3 else f"{ratio:.2f}× vs 1.3×")))
    echo = m("echo", "first_line")
    res.rows.append(("1b. Cold, same question asked of Docker alone: `docker run --rm … /bin/echo x` → line printed",
                     ms(h), ms(echo), f"{h / echo:.2f}×", "", ""))
    aio = m("aio", "create_start")
    res.rows.append(("1c. Cold vs the container create + start hodeid itself asks for (aiodocker, same host config)",
                     ms(h), ms(aio), f"{h / aio:.2f}×", "", ""))
    res.rows.append((
        ("1d. The agent's Python in a container (`docker run --init … python -c 'import hodei_agent.agent;"
        " import hodei_agent.main, uvloop'`): process start → imports done, timed inside"), ms(m("py", "age")),
        (f"the imports alone {ms(m('py', 'import_all'))}, of which `hodei_agent.agent` {ms(m('py', 'import_agent'))};"
        f" the whole `docker run`: {ms(m('py', 'total'))} vs {ms(bare)} for `/bin/true`"), "", "", ""))
    it = {k: med([x.get(k, float("nan")) for x in imports]) for k in ("all", *IMPORTTIME_OF)}
    res.notes.append("**The agent's imports in a container** (`python -X importtime -c 'import hodei_agent.main,"
                     " uvloop'`, cumulative, median of 3; nested modules count in their parents too): all top-level"
                     f" imports {ms(it['all'])}; " + ", ".join(f"`{k}` {ms(it[k])}" for k in IMPORTTIME_OF) + ".")

    b = res.breakdown
    b.append(("submit round trip (client → JobReply)", ms(m("hodei", "rtt")), "sqlite insert of the job"))
    b.append(("submit → engine `create` event", ms(m("hodei", "to_create")),
              "hodeid: scheduler pass, worker row insert, aiodocker name lookup (a 404), `POST /containers/create`"))
    b.append(("`create` event → PID 1 (docker-init) exists", ms(m("hodei", "create_to_init")),
              "`POST /containers/{id}/start` begins: containerd/runc create the task (namespaces, mounts, cgroups)"))
    b.append(("PID 1 exists → agent process exists", ms(m("hodei", "init_to_agent")),
              ("runc start, docker-init forks the agent. The engine's `start` event comes"
              f" {ms(m('hodei', 'agent_vs_start_event'))} after the agent exists")))
    b.append(("agent process exists → job assigned", ms(m("hodei", "agent_to_assigned")),
              (f"the agent's Python start-up and imports (row 1d: {ms(m('py', 'age'))}), connect, Hello/Welcome,"
              f" Ready, scheduler dispatch. The agent had used {ms(m('hodei', 'agent_cpu'))} of CPU by the time its"
              " job ran")))
    b.append(("job assigned → agent's Accept `started_at`", ms(m("hodei", "assigned_to_started")),
              "Assign over the socket, spawn `/bin/sh`"))
    b.append(("`started_at` → first output chunk's timestamp", ms(m("hodei", "started_to_output")),
              "`sh` runs `echo x`"))
    b.append(("first output timestamp → follower has the LogData", ms(m("hodei", "output_to_follower")),
              "Output frame, log file append, follower wake-up"))
    b.append(("**total** (median of totals; the medians above need not add up to it)", ms(h), ""))
    b.append(("of which: submit → agent process exists", ms(m("hodei", "docker_part")),
              "hodeid's provisioning and the engine: what a bare `docker run` also pays, up to its process"))
    b.append(("of which: agent process exists → follower has the line", ms(m("hodei", "hodei_part")),
              "what hodei adds on top of Docker: the agent's start-up and registration, dispatch, output path"))
    aio_parts = ", ".join(f"{k} {ms(m('aio', k))}" for k in ("lookup", "create", "start", "wait", "delete"))
    run_parts = ", ".join(f"{k.replace('_', ' ')} {ms(m('run', k))}" for k in ("to_create", "create_to_start",
                                                                               "start_to_die", "die_to_exit"))
    run_parts = run_parts.replace("to create", "CLI start to `create` event").replace("create to start", "→ `start`")
    run_parts = run_parts.replace("start to die", "→ `die`").replace("die to exit", "→ CLI exit (removal)")
    res.notes.append(f"**Cold floors, in detail** (medians, n={n}). aiodocker cycle: {aio_parts}; total "
                     f"{ms(m('aio', 'total'))}. Bare `docker run /bin/true` from the CLI's start: {run_parts}; "
                     f"`docker run … /bin/echo x`: line after {ms(echo)}, exit after {ms(m('echo', 'total'))}. "
                     f"`docker run … python -c '<imports>'`: {ms(m('py', 'total'))}. hodeid's own CPU per cold job: "
                     f"{ms(hodeid_cpu)}.")
    spread = [s["total"] for s in samples["hodei"]]
    bare_spread = ", ".join(f"{s['total']:.2f}" for s in samples["run"])
    res.notes.append(f"**Cold hodeid samples** (s): {', '.join(f'{x:.2f}' for x in spread)}. "
                     f"Bare run samples (s): {bare_spread}.")
    if disturbed:
        res.notes.append(f"**Cold samples redone** because something outside this run disturbed them: {disturbed}.")
    res.notes.append("Process start times come from `/proc/PID/stat` read by the job (clock ticks: 10 ms"
                     " resolution); engine times from `docker events` (`timeNano`).")


async def measure(h: Harness, docker: aiodocker.Docker, events: Events, res: Results, quick: bool) -> None:
    await bench_cold(h, SAMPLES["quick" if quick else "full"], docker, events, res)


if __name__ == "__main__":
    run_alone("bench/docker_cold.py", __doc__, measure)

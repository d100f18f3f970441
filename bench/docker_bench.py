#!/usr/bin/env python3
"""hodei on the Docker provider: cold start, warm dispatch, twenty at once; each next to its Docker floor.

    .venv/bin/python bench/docker_bench.py            # full run: about 2-3 minutes on a 2-core VM
    .venv/bin/python bench/docker_bench.py --quick    # fewer samples: about 1 minute

Starts its own hodeid daemons (``--provider docker --network none``) in a temp dir and measures:

1. Cold path. Zero workers: ``submit`` -> first log line received by a follower (hodeictl.client:
   submit, then ``logs(follow=True)`` until the first LogData), next to a bare
   ``docker run --rm --network none --entrypoint /bin/true IMAGE``, the same container cycle through
   aiodocker (create, start, wait, delete: what hodeid does) and ``docker run ... python -c 'import
   hodei_agent...'`` (the agent's start-up inside a container). Samples are interleaved, so drift
   hits every case alike, and each hodeid sample starts from zero workers (``--max-jobs-per-worker 1``;
   we wait for the worker list and the daemon's containers to be empty). The ``docker events``
   stream and the job itself (which reads ``/proc/$PPID/stat``, its agent) break hodeid's time down.
2. Warm path. ``--min-idle 1``: submit returned -> ``date +%s.%N`` ran inside the container, ~100
   times, next to the host's fork/exec floor and ``docker exec`` into a running container.
3. Twenty ``sleep 2`` jobs at once with ``--max-workers 20`` from zero workers, next to one such
   job from zero, the serial sum, and twenty parallel ``docker run ... sleep 2``.

Clocks: time.time() here, ``date +%s.%N`` in a container, the agent's timestamps and dockerd's event
times are all CLOCK_REALTIME of this one kernel (containers share it), so differences are latencies.

Cleanup, also on failure or Ctrl-C: each hodeid gets SIGTERM (then SIGKILL); every container
labelled with one of our daemons' ``hodei.instance`` (hodeid's workers) or with our run's
``hodei.bench=<token>`` (the floors) is removed with ``docker rm -f``; the temp dir is removed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
if (VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != VENV.resolve():
    os.execv(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), str(Path(__file__).resolve()), *sys.argv[1:]])
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import aiodocker  # noqa: E402

from hodei.protocol import JobState, LogData  # noqa: E402
from hodei_testing import AsyncClient as Client  # noqa: E402
from hodeictl.client import spec_from_cli  # noqa: E402

BIN = VENV / "bin" if (VENV / "bin" / "hodeid").exists() else Path(sys.executable).parent
IMAGE = os.environ.get("HODEI_WORKER_IMAGE", "hodei-worker:latest")
AGENT_PY = "/opt/hodei/bin/python"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN = secrets.token_hex(6)
BENCH_LABEL = "hodei.bench"
# Seconds since the epoch at boot, to turn /proc/PID/stat start times (ticks since boot) into wall time.
BOOT_WALL = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
# The cold job: its first line is what the follower waits for; then its agent's and PID 1's stat lines.
COLD_CMD = "echo x; cat /proc/$PPID/stat /proc/1/stat"
# The agent's imports, timed from inside; and this process's age when they are done (interpreter start-up
# included), from its own /proc start time (clock ticks since boot) against CLOCK_BOOTTIME.
IMPORT_PY = ("import time; t = time.perf_counter(); import hodei_agent.agent; a = time.perf_counter(); "
             "import hodei_agent.main, uvloop; b = time.perf_counter(); import os; "
             "st = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK'); "
             "print(a - t, b - t, time.clock_gettime(time.CLOCK_BOOTTIME) - st)")


# ---- small helpers --------------------------------------------------------------------------------


def say(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(x: float) -> str:
    return "n/a" if x != x else f"{x * 1000:.0f} ms" if abs(x) >= 0.1 else f"{x * 1000:.1f} ms"


def sec(x: float) -> str:
    return f"{x:.2f} s"


def docker_cli(*args: str, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def proc_stat(text: str) -> dict[str, float]:
    """Start time (wall) and CPU seconds from one /proc/PID/stat line."""
    fields = text.rsplit(")", 1)[1].split()
    return {"start": BOOT_WALL + int(fields[19]) / CLK_TCK, "cpu": (int(fields[11]) + int(fields[12])) / CLK_TCK}


def host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole host, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def pids_named(*names: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                total += proc_stat(f.read())["cpu"]
        except OSError:
            pass
    return total


def contention(cpu_seconds: float = 0.3) -> float:
    """Wall time over CPU time of a CPU-bound loop: 1.0 when a core was free for us, 2.0 when we got half of one."""
    w0, c0 = time.perf_counter(), time.process_time()
    while time.process_time() - c0 < cpu_seconds:
        sum(range(1000))
    return (time.perf_counter() - w0) / (time.process_time() - c0)


def containers_cpu() -> float:
    """CPU seconds used by every container so far (cgroup v1 cpuacct of the docker parent; v2 cpu.stat)."""
    for path, scale in (("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage", 1e-9),
                        ("/sys/fs/cgroup/docker/cpu.stat", None)):
        with contextlib.suppress(OSError, ValueError):
            text = Path(path).read_text()
            if scale:
                return int(text) * scale
            return int(next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec"))) / 1e6
    return float("nan")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    virtual = any(line.startswith("flags") and " hypervisor" in line for line in cpuinfo.splitlines())
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    distro = ""
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        distro = next((line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME")), "")
    engine = docker_cli("info", "--format", "{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}}"
                        " v{{.CgroupVersion}}, runtime {{.DefaultRuntime}}", check=False).strip()
    image = docker_cli("image", "inspect", "--format", "{{.Id}} {{.Created}} {{.Size}}", IMAGE, check=False).split()
    git = ["git", "-C", str(REPO)]
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{os.cpu_count()} cores, {model}" + (" (virtual machine)" if virtual else ""),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": distro,
        "python": f"{platform.python_version()} ({sys.executable})",
        "docker": engine,
        "image": (f"{IMAGE} {image[0][7:19]}, built {image[1][:19]}, {int(image[2]) / 1e6:.0f} MB" if len(image) == 3
                  else f"{IMAGE} (not found)"),
        "agent_python": docker_cli("run", "--rm", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                                   "--entrypoint", AGENT_PY, IMAGE, "-c", "import platform; print(platform.python_version())",
                                   check=False).strip(),
        "commit": subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "dirty": str(subprocess.run([*git, "status", "--porcelain", "--", "hodei", "hodeid", "hodeictl", "hodei_agent"],
                                    capture_output=True, text=True).stdout.count("\n")),
    }


# ---- the docker events stream -----------------------------------------------------------------------


class Events:
    """`docker events` for containers, read by a thread: engine-side times of create, start, die, destroy."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--filter", "type=container"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.items: list[tuple[str, float, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            attrs = dict(ev.get("Actor", {}).get("Attributes", {}))
            attrs["id"] = ev.get("Actor", {}).get("ID", ev.get("id", ""))
            with self.lock:
                self.items.append((ev.get("Action", ev.get("status", "")), ev.get("timeNano", 0) / 1e9, attrs))

    def time_of(self, action: str, key: str, value: str) -> float | None:
        with self.lock:
            return next((t for a, t, attrs in self.items if a == action and attrs.get(key) == value), None)

    async def wait_for(self, action: str, key: str, value: str, timeout: float = 5.0) -> float | None:
        deadline = time.monotonic() + timeout
        while (t := self.time_of(action, key, value)) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return t

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- the daemon -------------------------------------------------------------------------------------


class Daemon:
    def __init__(self, root: Path, name: str, args: list[str]) -> None:
        self.root = root / name
        self.root.mkdir()
        self.socket = self.root / "hodei.sock"
        self.args = ["--provider", "docker", "--image", IMAGE, "--network", "none", *args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "hodeid.log"
        self.instance = ""

    @property
    def cmdline(self) -> str:
        return "hodeid --state-dir DIR --socket DIR/hodei.sock " + " ".join(self.args)

    async def start(self) -> Daemon:
        cmd = [str(BIN / "hodeid"), "--state-dir", str(self.root / "state"), "--socket", str(self.socket), *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                         env={**os.environ, "HODEI_SOCKET": str(self.socket)})
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hodeid exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                async with Client(self.socket) as c:
                    await c.list(limit=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        # hodeid labels its containers hodei.instance=<this>: how cleanup tells ours from anyone else's
        self.instance = (self.root / "state" / "instance").read_text().strip()
        return self

    def cpu(self) -> float:
        return cpu_of([self.proc.pid]) if self.proc is not None else 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)  # hodeid waits up to 20 s for its containers' removal
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def containers_of(docker: aiodocker.Docker, label: str) -> list[str]:
    return [c.id for c in await docker.containers.list(all=True, filters={"label": [label]})]


async def until_no_workers(d: Daemon, ctl: Client, docker: aiodocker.Docker, timeout: float = 60) -> None:
    """Zero workers in hodeid's list and zero containers of this daemon in the engine."""
    deadline = time.monotonic() + timeout
    while await ctl.workers() or await containers_of(docker, f"hodei.instance={d.instance}"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers still there after {timeout}s: {await ctl.workers()}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # let the engine finish its side of the last removal


async def until_idle(ctl: Client, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for w in await ctl.workers() if w.state == "idle") < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} workers did not become idle: {await ctl.workers()}")
        await asyncio.sleep(0.05)


class Disturbed(Exception):
    """A sample spoiled from outside (a worker container removed by someone else, say): it is taken again."""


async def retried(fn: Any, disturbed: list[str], tries: int = 3) -> Any:
    for attempt in range(tries):
        try:
            return await fn()
        except Disturbed as e:
            say(f"  sample disturbed, taking it again: {e}")
            disturbed.append(str(e))
            if attempt == tries - 1:
                raise


async def output_of(d: Daemon, job_id: int) -> bytes:
    """A finished job's output, on a connection of its own that is closed right after.

    Never on a connection that sends another request next: hodeid can lose a request sent right after
    a ReadLogs stream ended (its hang-up watcher reads a byte of it; see docs/benchmarks-docker.md).
    """
    async with Client(d.socket) as c:
        return b"".join([m.data async for m in c.logs(job_id) if isinstance(m, LogData)])


# ---- results ----------------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    breakdown: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def verdict(ok: bool, how: str) -> str:
    return f"met ({how})" if ok else f"**missed** ({how})"


# ---- 1. cold path -----------------------------------------------------------------------------------


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
    return {"total": t1 - t0, "to_create": (created or nan) - t0, "create_to_start": (started or nan) - (created or nan),
            "start_to_die": (died or nan) - (started or nan), "die_to_exit": t1 - (died or nan)}


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


async def bench_cold(tmp: Path, n: int, docker: aiodocker.Docker, events: Events, res: Results) -> None:
    d = Daemon(tmp, "cold", ["--max-workers", "4", "--max-jobs-per-worker", "1", "--idle-timeout", "1"])
    DAEMONS.append(d)  # before start: cleanup stops it even if it fails to come up
    await d.start()
    res.commands.append(f"cold: `{d.cmdline}`")
    bind_dir = tmp / "bind"
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
        cpu0 = d.cpu()
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
        hodeid_cpu = (d.cpu() - cpu0) / n
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
        "1d. The agent's Python in a container (`docker run --init … python -c 'import hodei_agent.agent;"
        " import hodei_agent.main, uvloop'`): process start → imports done, timed inside", ms(m("py", "age")),
        f"the imports alone {ms(m('py', 'import_all'))}, of which `hodei_agent.agent` {ms(m('py', 'import_agent'))};"
        f" the whole `docker run`: {ms(m('py', 'total'))} vs {ms(bare)} for `/bin/true`", "", "", ""))
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
              "runc start, docker-init forks the agent. The engine's `start` event comes"
              f" {ms(m('hodei', 'agent_vs_start_event'))} after the agent exists"))
    b.append(("agent process exists → job assigned", ms(m("hodei", "agent_to_assigned")),
              f"the agent's Python start-up and imports (row 1d: {ms(m('py', 'age'))}), connect, Hello/Welcome,"
              f" Ready, scheduler dispatch. The agent had used {ms(m('hodei', 'agent_cpu'))} of CPU by the time its"
              " job ran"))
    b.append(("job assigned → agent's Accept `started_at`", ms(m("hodei", "assigned_to_started")),
              "Assign over the socket, spawn `/bin/sh`"))
    b.append(("`started_at` → first output chunk's timestamp", ms(m("hodei", "started_to_output")), "`sh` runs `echo x`"))
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


# ---- 2. warm path -----------------------------------------------------------------------------------


def floor_fork(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        res = subprocess.run(["/bin/sh", "-c", "date +%s.%N"], capture_output=True, text=True, start_new_session=True)
        out.append(float(res.stdout) - t0)
    return out


def floor_exec(container: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.time()
        res = subprocess.run(["docker", "exec", container, "date", "+%s.%N"], capture_output=True, text=True, check=True)
        out.append(float(res.stdout) - t0)
    return out


async def bench_warm(tmp: Path, n: int, docker: aiodocker.Docker, res: Results) -> None:
    d = Daemon(tmp, "warm", ["--max-workers", "2", "--min-idle", "1", "--idle-timeout", "3600"])
    DAEMONS.append(d)  # before start: cleanup stops it even if it fails to come up
    await d.start()
    res.commands.append(f"warm: `{d.cmdline}`")
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
                     f"{ms(p50)} / {ms(p95)}", f"host `sh -c date` fork/exec: {ms(med(fork))} / {ms(pct(fork, 95))};"
                     f" `docker exec` into a running container: {ms(med(ex))} / {ms(pct(ex, 95))} (n={len(ex)})",
                     f"{p50 / med(ex):.2f}× docker exec", "p50 ≤ 15 ms",
                     verdict(p50 <= 0.015, f"{'under' if p50 <= 0.015 else 'over'} by {abs(p50 - 0.015) * 1000:.1f} ms")))
    res.notes.append(f"**Warm dispatch** (n={n}, sequential, {workers} warm workers): submit round trip p50"
                     f" {ms(med(rtt))} (p95 {ms(pct(rtt, 95))}); submit returned → agent's Accept `started_at` p50"
                     f" {ms(med(acc))} (p95 {ms(pct(acc, 95))}); → `date` in the job p50 {ms(p50)} (p95 {ms(p95)},"
                     f" max {ms(max(lat))}). Split, p50 (p95): submit returned → job assigned (hodeid's dispatch)"
                     f" {ms(med(disp))} ({ms(pct(disp, 95))}); assigned → agent's `started_at` (Assign frame, agent"
                     f" spawns `/bin/sh`) {ms(med(spawn))} ({ms(pct(spawn, 95))}); `started_at` → `date` ran"
                     f" {ms(med(ran))} ({ms(pct(ran, 95))}). hodei's share above the host fork/exec floor at p50:"
                     f" {ms(p50 - med(fork))}."
                     + (f" Samples dropped and redone because the job did not succeed: {disturbed}." if disturbed else ""))


# ---- 3. twenty at once ------------------------------------------------------------------------------


async def hodei_batch(d: Daemon, ctl: Client, docker: aiodocker.Docker, events: Events, k: int) -> dict[str, Any]:
    await until_no_workers(d, ctl, docker)
    busy0, total0 = host_cpu()
    cpu0 = d.cpu()
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
        others = sum(1 for a, _, attrs in events.items[n_events:] if a == "start" and attrs.get("hodei.worker-id") not in ours)
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
        "hodeid_cpu": d.cpu() - cpu0, "engine_cpu": cpu_of(pids_named("dockerd", "containerd")) - engine0,
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


async def bench_twenty(tmp: Path, singles: int, reps: int, docker: aiodocker.Docker, events: Events,
                       res: Results) -> None:
    d = Daemon(tmp, "twenty", ["--max-workers", "20", "--max-jobs-per-worker", "1", "--idle-timeout", "1"])
    DAEMONS.append(d)  # before start: cleanup stops it even if it fails to come up
    await d.start()
    res.commands.append(f"twenty: `{d.cmdline}`")
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
    res.rows.append((f"3. Twenty `sleep 2` at once, `--max-workers 20`, from zero workers: first submit → all finished"
                     f" (median, n={reps})", sec(total),
                     f"one such job from zero: {sec(single)} (n={singles}); serial sum 20 × that: {sec(serial)};"
                     f" twenty parallel `docker run --rm … sleep 2`: {sec(peer20)}"
                     f" (one: {sec(peer1)})",
                     f"{total / single:.2f}× one job; {serial / total:.1f}× faster than serial;"
                     f" {total / peer20:.2f}× docker run", "", ""))

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
        f" {sec(med([p['first_start'] for p in peer_twenty]))}, median {sec(med([p['median_start'] for p in peer_twenty]))},"
        f" last {sec(med([p['last_start'] for p in peer_twenty]))}."
        + (f" Runs redone because a job did not succeed: {disturbed}." if disturbed else "")
    )


# ---- output -----------------------------------------------------------------------------------------


def render(res: Results, info: dict[str, str], argv: list[str], elapsed: float, loads: tuple[str, str],
           probes: tuple[float, float]) -> str:
    lines = [
        "## Machine",
        "",
        f"- Date: {info['date']}",
        f"- CPU: {info['cpu']}; RAM: {info['ram']}",
        f"- Kernel: {info['kernel']} ({info['os']})",
        f"- Python (host, hodeid): {info['python']}; Python in the worker image: {info['agent_python']}",
        f"- Docker server: {info['docker']}",
        f"- Worker image: {info['image']}",
        f"- hodei commit: {info['commit']} ({info['dirty']} files in hodei/, hodeid/, hodeictl/, hodei_agent/"
        " differ from it)",
        f"- Load average (1, 5, 15 min) at start / end: {loads[0]} / {loads[1]}; CPU contention probe"
        f" (wall / CPU time of a busy loop; 1.0 = a free core) at start / end: {probes[0]:.2f} / {probes[1]:.2f}",
        "",
        f"Command: `{' '.join(argv)}` ({elapsed:.0f} s). Daemons:",
        "",
        *[f"- {c}" for c in res.commands],
        "",
        "## Results",
        "",
        "| Measurement | hodei | Floor / peer, same run | Ratio | Target | Verdict |",
        "|---|---|---|---|---|---|",
        *["| " + " | ".join(r) + " |" for r in res.rows],
        "",
        "### Cold path: where hodeid's time goes (medians)",
        "",
        "| Segment | Median | What happens |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in res.breakdown],
        "",
        "### Details",
        "",
        *[f"- {n}" for n in res.notes],
    ]
    return "\n".join(lines)


DAEMONS: list[Daemon] = []


async def run(args: argparse.Namespace, tmp: Path, res: Results) -> None:
    n_cold, n_warm, singles, reps = (3, 20, 1, 1) if args.quick else (15, 100, 3, 3)
    events = Events()
    docker = aiodocker.Docker()
    try:
        await bench_warm(tmp, n_warm, docker, res)
        await bench_cold(tmp, n_cold, docker, events, res)
        await bench_twenty(tmp, singles, reps, docker, events, res)
    finally:
        await docker.close()
        events.stop()


def cleanup(tmp: Path, keep: bool) -> None:
    for d in DAEMONS:
        d.stop()
        if not d.instance:  # it failed before we read it: hodeid may have written it all the same
            with contextlib.suppress(OSError):
                d.instance = (d.root / "state" / "instance").read_text().strip()
    labels = [f"{BENCH_LABEL}={TOKEN}", *(f"hodei.instance={d.instance}" for d in DAEMONS if d.instance)]
    for label in labels:
        ids = docker_cli("ps", "-aq", "--filter", f"label={label}", check=False).split()
        if ids:
            say(f"cleanup: removing {len(ids)} container(s) labelled {label}")
            docker_cli("rm", "-f", *ids, check=False)
    if keep:
        say(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="bench/docker_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (hodeid logs) to look at afterwards")
    args = p.parse_args()
    if docker_cli("image", "inspect", IMAGE, check=False) == "":
        sys.exit(f"docker_bench: no Docker engine, or no image {IMAGE}: run scripts/docker-setup.sh as root")
    os.environ.pop("HODEI_STATE_DIR", None)
    tmp = Path(tempfile.mkdtemp(prefix="hodei-db-"))  # short: Unix socket paths are limited to 108 bytes
    res = Results()
    t0 = time.monotonic()
    load0, probe0 = loadavg(), contention()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        info = machine()
        asyncio.run(run(args, tmp, res))
    except BaseException:
        for d in DAEMONS:
            if d.log_path.exists():
                say(f"--- {d.log_path} (tail) ---\n{d.log_path.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        cleanup(tmp, args.keep)
    print(render(res, info, [".venv/bin/python", "bench/docker_bench.py", *sys.argv[1:]], time.monotonic() - t0,
                 (load0, loadavg()), (probe0, contention())))


if __name__ == "__main__":
    main()

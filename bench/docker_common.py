"""What the Docker benchmarks share: the engine's event stream, CPU accounting, waits for workers and
containers, the tables, and the command line of bench/docker_bench.py and of each docker_*.py.

Clocks: time.time() here, `date +%s.%N` in a container, the agent's timestamps and dockerd's event
times are all CLOCK_REALTIME of this one kernel (containers share it), so differences are latencies.

Cleanup (hodei_testing.Harness), also on failure or Ctrl-C: each hodeid gets SIGTERM (then SIGKILL);
every container labelled with one of our daemons' `hodei.instance` (hodeid's workers) or with our
run's `hodei.bench=<token>` (the floors) is removed with `docker rm -f`; the temp dir is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _venv  # noqa: F401  (first: the venv's python)
import aiodocker
import common
from common import say

from hodei.protocol import LogData
from hodei_testing import AsyncClient as Client
from hodei_testing import Daemon, Harness

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


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 1000:.0f} ms" if abs(x) >= 0.1 else f"{x * 1000:.1f} ms"


def sec(x: float) -> str:
    return f"{x:.2f} s"


def docker_cli(*args: str, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
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


def machine() -> dict[str, str]:
    engine = docker_cli("info", "--format", "{{.ServerVersion}}, storage {{.Driver}}, cgroup {{.CgroupDriver}}"
                        " v{{.CgroupVersion}}, runtime {{.DefaultRuntime}}", check=False).strip()
    image = docker_cli("image", "inspect", "--format", "{{.Id}} {{.Created}} {{.Size}}", IMAGE, check=False).split()
    return {
        "date": common.now(),
        "cpu": f"{os.cpu_count()} cores, {common.cpu_model()}" + (" (virtual machine)" if common.hypervisor() else ""),
        "ram": common.ram(),
        "kernel": platform.release(),
        "os": common.distro(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "docker": engine,
        "image": (f"{IMAGE} {image[0][7:19]}, built {image[1][:19]}, {int(image[2]) / 1e6:.0f} MB" if len(image) == 3
                  else f"{IMAGE} (not found)"),
        "agent_python": docker_cli("run", "--rm", "--network", "none", "--label", f"{BENCH_LABEL}={TOKEN}",
                                   "--entrypoint", AGENT_PY, IMAGE,
                                   "-c", "import platform; print(platform.python_version())", check=False).strip(),
        "commit": common.commit(),
        "dirty": str(len(common.dirty_files())),
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


async def start_daemon(h: Harness, name: str, args: list[str]) -> Daemon:
    """hodeid on the docker provider, `--network none`, in the harness's dir NAME; cleanup removes its containers."""
    return await h.daemon(name, ["--provider", "docker", "--image", IMAGE, "--network", "none", *args]).astart()


def cmdline(d: Daemon) -> str:
    return "hodeid --state-dir DIR --socket DIR/hodei.sock " + " ".join(d.args)


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
        (f"- hodei commit: {info['commit']} ({info['dirty']} files in hodei/, hodeid/, hodeictl/, hodei_agent/"
        " differ from it)"),
        (f"- Load average (1, 5, 15 min) at start / end: {loads[0]} / {loads[1]}; CPU contention probe"
        f" (wall / CPU time of a busy loop; 1.0 = a free core) at start / end: {probes[0]:.2f} / {probes[1]:.2f}"),
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


def run_alone(
    prog: str, doc: str | None, body: Callable[[Harness, aiodocker.Docker, Events, Results, bool], Awaitable[None]]
) -> None:
    """bench/docker_bench.py, or one of its measurement files run on its own: check the engine and the
    image, run `body` in a fresh Harness with an events stream, clean up, print the tables."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (hodeid logs) to look at afterwards")
    args = p.parse_args()
    if docker_cli("image", "inspect", IMAGE, check=False) == "":
        sys.exit(f"{prog}: no Docker engine, or no image {IMAGE}: run scripts/docker-setup.sh as root")
    os.environ.pop("HODEI_STATE_DIR", None)
    h = Harness(prefix="hodei-db-")  # short: Unix socket paths are limited to 108 bytes
    h.labels.append(f"{BENCH_LABEL}={TOKEN}")  # the floors' containers
    res = Results()
    t0 = time.monotonic()
    load0, probe0 = common.loadavg(), contention()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    async def run() -> None:
        events = Events()
        docker = aiodocker.Docker()
        try:
            await body(h, docker, events, res, args.quick)
        finally:
            await docker.close()
            events.stop()

    try:
        info = machine()
        asyncio.run(run())
    except BaseException:
        say(h.log_tails())
        raise
    finally:
        say(h.cleanup(keep=args.keep))
    print(render(res, info, [".venv/bin/python", prog, *sys.argv[1:]], time.monotonic() - t0,
                 (load0, common.loadavg()), (probe0, contention())))

# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""What every fault case of bench/reliability.py shares: the run (a hodei_testing.Harness with a report),
a client that rides out restarts, Docker helpers, an RSS sampler, and the entry point of a case file.

Importing it first re-execs with the venv's python (bench/_venv.py), then copies hodei/, hodeid/,
hodeictl/ and hodei_agent/ into the run's temp dir and puts that copy first on PYTHONPATH (this
process, hodeid, its agents): edits made to the tree during a run do not mix versions.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/, for _venv and common
import _venv

ROOT = Path(tempfile.mkdtemp(prefix="hodei-rel-"))  # short: socket paths are limited to 108 bytes
SNAPSHOT = ROOT / "src"
for _pkg in ("hodei", "hodeid", "hodeictl", "hodei_agent"):
    shutil.copytree(_venv.REPO / _pkg, SNAPSHOT / _pkg, ignore=shutil.ignore_patterns("__pycache__"))
os.environ["PYTHONPATH"] = str(SNAPSHOT) + (
    os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""
)
sys.path.insert(0, str(SNAPSHOT))

import argparse
import asyncio
import json
import platform
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import common

from hodei.protocol import FINAL_STATES
from hodei_testing import AsyncClient as Client
from hodei_testing import Daemon, Harness, rss_kb

MARK = "HODEI_RELIABILITY_RUN"  # every process we start inherits MARK=<token>: cleanup finds them by it
os.environ.pop("NO_COLOR", None)
IMAGE = os.environ.get("HODEI_WORKER_IMAGE", "hodei-worker:latest")
FAST_HB = ["--heartbeat-interval", "0.5", "--heartbeat-timeout", "5"]
FINAL = {str(s) for s in FINAL_STATES}
MiB = 1024 * 1024
CaseFn = Callable[["Run", Callable[[int], bool]], Awaitable[None]]


def say(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1000:.0f} ms"


def secs(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def ctl(d: Daemon, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """The real hodeictl; its exit status is part of what a case reports, so it never raises on one."""
    return d.ctl(*args, check=False, timeout=timeout)


def job_events(d: Daemon) -> list[tuple[int, float, str | None, str, str | None, str]]:
    """hodeid's job_events table, read-only: every state change, with its time and reason."""
    db = sqlite3.connect(f"file:{d.state_dir / 'hodei.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT job_id, at, from_state, to_state, worker_id, reason FROM job_events"
                          " ORDER BY id").fetchall()
    finally:
        db.close()


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode()


def docker_ready() -> str | None:
    """None when the engine answers and the worker image exists; else why not."""
    if not shutil.which("docker"):
        return "no docker CLI"
    try:
        docker("info", timeout=20)
    except Exception as e:
        return f"no Docker engine answers ({e})"
    try:
        docker("image", "inspect", IMAGE, timeout=20)
    except Exception:
        return f"the worker image {IMAGE} is missing (run scripts/docker-setup.sh)"
    return None


class DockerEvents:
    """`docker events` of every hodei-managed container while a case runs: ours, and other hodeids'.

    Other hodeids (a test suite, another benchmark) may run on the same engine at the same time; the
    events show whether one of them removed our containers (a sweep of every hodei.managed container).
    """

    KEEP = ("create", "start", "kill", "die", "stop", "destroy", "pause", "unpause", "oom")

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.t0 = time.time()
        self.proc = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "label=hodei.managed=true",
             "--format",
             '{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes "hodei.instance"}}'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def stop(self) -> dict[str, Any]:
        time.sleep(0.3)
        self.proc.terminate()
        out, _ = self.proc.communicate()
        ours: list[tuple[float, str, str]] = []
        others: list[tuple[float, str, str]] = []
        for line in out.splitlines():
            parts = line.split(" ")
            if len(parts) < 3 or parts[1].split(":")[0] not in self.KEEP:
                continue
            t = int(parts[0]) / 1e9 - self.t0
            inst = parts[3] if len(parts) > 3 else ""
            (ours if inst == self.instance else others).append((round(t, 2), parts[1], parts[2]))
        our_deaths = [t for t, action, _ in ours if action in ("kill", "die", "destroy")]
        foreign = [t for t, action, _ in others if action == "destroy"]
        sweep = any(abs(a - b) < 2.0 for a in our_deaths for b in foreign)
        return {"ours": [f"t+{t}s {a} {n}" for t, a, n in ours],
                "other_instances_destroyed": len(foreign),
                "our_container_died_within_2s_of_another_instances_removal": sweep}


def started_at_kind(job: Any) -> str:
    if job.started_at is None:
        return "missing"
    return "= created_at" if job.started_at == job.created_at else "recorded"


def log_tail(d: Daemon, n: int = 40) -> list[str]:
    return [line for line in d.log().splitlines() if "DEBUG" not in line][-n:]


class Sampler(threading.Thread):
    """VmRSS of some processes every `period` seconds, in the background."""

    def __init__(self, pids: Callable[[], dict[str, list[int]]], period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pids, self.period = pids, period
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._halt.is_set():
            try:
                groups = self.pids()
            except Exception:
                groups = {}
            row = {}
            for name, pids in groups.items():
                row[name] = sum(v for p in pids if (v := rss_kb(p)) is not None)
            self.samples.append((time.monotonic() - t0, row))
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, name: str) -> int | None:
        values = [row[name] for _, row in self.samples if row.get(name)]
        return max(values) if values else None


class Poller:
    """A Client that rides out daemon restarts: each call retries until it gets an answer."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.c: Client | None = None

    async def call(self, fn: Callable[[Client], Awaitable[Any]], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.c is None:
                    c = Client(self.d.socket)
                    await c.connect()
                    self.c = c
                return await fn(self.c)
            except Exception:
                await self.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.005)

    async def until(self, fn: Callable[[Client], Awaitable[Any]], timeout: float, interval: float = 0.01) -> Any:
        """Poll until fn returns something truthy; None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = await self.call(fn, timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                return None
            if value:
                return value
            await asyncio.sleep(interval)
        return None

    async def close(self) -> None:
        if self.c is not None:
            try:
                await self.c.close()
            except Exception:
                pass
            self.c = None


# ---- the run: what was started, and its report -----------------------------------------------------


class Run:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.harness = Harness(root=ROOT, mark=MARK)
        self.root = ROOT
        self.rows: list[dict[str, str]] = []
        self.details: dict[str, Any] = {"docker": "available"}
        self._why_no_docker: str | bool | None = False

    def daemon(self, name: str, args: Sequence[str]) -> Daemon:
        return self.harness.daemon(name, args, log_level="info")

    def why_no_docker(self) -> str | None:
        """None when the engine answers and the worker image exists; else why not. Asked once a run."""
        if self._why_no_docker is False:
            self._why_no_docker = docker_ready()
            self.details["docker"] = self._why_no_docker or "available"
        return self._why_no_docker  # type: ignore[return-value]

    def row(self, fault: str, sees: str, lost: str, figure: str) -> None:
        self.rows.append({"fault": fault, "sees": sees, "lost": lost, "figure": figure})
        say(f"| {fault} | {sees} | {lost} | {figure} |")

    async def case(self, key: str, coro: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
        say(f"== {key}")
        t0 = time.monotonic()
        try:
            r = await coro
        except Exception as e:
            say(traceback.format_exc())
            self.details[key] = {"crashed": f"{type(e).__name__}: {e}"}
            return None
        r["case_took_s"] = round(time.monotonic() - t0, 1)
        r["loadavg_after"] = Path("/proc/loadavg").read_text().split(" ", 3)[:3]
        self.details[key] = r
        say(json.dumps(r, default=str)[:2000])
        return r

    def cleanup(self) -> str:
        return self.harness.cleanup()


# ---- the machine, the report --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    dv = "none"
    image = "n/a"
    if shutil.which("docker"):
        dv = subprocess.run(["docker", "version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}"],
                            capture_output=True, text=True, check=False).stdout.strip() or "engine not answering"
        found = subprocess.run(["docker", "image", "inspect", IMAGE, "--format", "{{.Id}} {{.Created}}"],
                               capture_output=True, text=True, check=False).stdout.split()
        image = f"{found[0].removeprefix('sha256:')[:12]}, built {found[1][:19]}" if len(found) == 2 else "missing"
    return {
        "date": common.now(),
        "cpu": f"{os.cpu_count()} cores, {common.cpu_model()}",
        "ram": common.ram(),
        "kernel": platform.release(),
        "os": common.distro(),
        "python": platform.python_version(),
        "docker": dv,
        "commit": common.commit(),
        "code": "snapshot of the working tree taken at start; uncommitted files in the product packages: "
                + (", ".join(common.dirty_files()) or "none"),
        "worker_image": f"{IMAGE} {image}",
        "loadavg_at_start": open("/proc/loadavg").read().split(" ", 3)[:3],
    }


def entry(prog: str, doc: str | None, cases: list[CaseFn]) -> None:
    """The command line of bench/reliability.py, and of each case file run on its own: run `cases` in
    order (each skips what --only leaves out), clean up, print the machine, the matrix, the details."""
    try:
        _entry(prog, doc, cases)
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)  # already gone after a run; not after --help or a bad flag


def _entry(prog: str, doc: str | None, cases: list[CaseFn]) -> None:
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts (2,000 connections / jobs, 256 MiB, 3 rounds)")
    ap.add_argument("--only", default="", help="comma-separated case numbers, e.g. 1,4")
    ap.add_argument("--json", default="", help="also write the details here")
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",") if x.strip()}
    run = Run(args.quick)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    info = machine()
    t0 = time.monotonic()
    try:
        asyncio.run(_run_cases(run, only, cases))
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
    finally:
        cleanup = run.cleanup()
    total = time.monotonic() - t0
    print("## Machine\n")
    for k, v in info.items():
        print(f"- {k}: {v}")
    print(f"- command: `.venv/bin/python {prog}{' --quick' if args.quick else ''}"
          f"{' --only ' + args.only if args.only else ''}` ({total:.0f} s)")
    print("\n## Fault matrix\n")
    print("| fault | what the user sees | what is lost | measured figure |")
    print("| --- | --- | --- | --- |")
    for r in run.rows:
        print(f"| {r['fault']} | {r['sees']} | {r['lost']} | {r['figure']} |")
    print("\n## Details\n")
    print("```json")
    print(json.dumps(run.details, indent=1, default=str))
    print("```")
    print(f"\n{cleanup}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": run.rows, "details": run.details,
                                               "cleanup": cleanup, "took_s": total}, indent=1, default=str))


async def _run_cases(run: Run, only: set[int], cases: list[CaseFn]) -> None:
    def want(n: int) -> bool:
        return not only or n in only

    for case in cases:
        await case(run, want)

#!/usr/bin/env python3
# A benchmark, not library code: it catches whatever a case raises (to report it and go on), and its
# async cases call blocking subprocesses on purpose (the real CLI, timed one at a time).
# ruff: noqa: BLE001, S110, ASYNC220, ASYNC221, ASYNC230, SIM102, SIM115
"""hodei fault injection: start real hodeid daemons in temp dirs, break things, measure what survives.

    .venv/bin/python bench/reliability.py            # full run, 7-9 minutes on 2 cores
    .venv/bin/python bench/reliability.py --quick    # smaller counts, about 3 minutes: a smoke test
    .venv/bin/python bench/reliability.py --only 1,4 # some cases only (numbers as in docs/reliability.md)

Prints the machine, then one markdown row per fault (fault | what the user sees | what is lost |
measured figure), then the details of every case as JSON (also written to --json PATH).

Cases:
  1 graceful restart (SIGTERM, start again) with a job writing a numbered line every 10 ms, local
  2 the same with kill -9 of hodeid (and once with hodeid down for 5 s)
  3 both on the docker provider (--network none)
  4 agent killed with kill -9 / frozen with SIGSTOP mid-job (local), docker kill / docker pause
  5 10,000 garbage connections in a row on the control socket (2,000 on the agent socket), then a job
  6 hodeid RSS while a job writes 1 GiB to stdout, without and with a `logs -f` follower;
    6c: --max-log-bytes 1000 and a job whose output is under it
  7 10,000 queued jobs: hodeid RSS, `hodeictl list` latency, ListJobs round trip, an 8 MiB reply
  8 kill -9 of hodeid while short jobs stream through it: does every job run exactly once?
    8b: the job kills hodeid as it starts (its Accept may be lost), then its agent is killed

Clocks: durations are time.monotonic() in this process. "From start" means from the Popen of the new
hodeid. Polls go through hodeictl.client.Client on a persistent connection every 10 ms (the same
requests `hodeictl show/workers --json` make); the real CLI is used for what a user runs.

The code measured is a copy of hodei/, hodeid/, hodeictl/ and hodei_agent/ taken at start (first on
PYTHONPATH for everything started), so edits made to the tree during a run do not mix versions.

Cleanup (also on Ctrl-C or SIGTERM): every hodeid gets SIGTERM then SIGKILL; every process carrying this run's
marker variable (agents, jobs, followers) is SIGCONTed and SIGKILLed; containers labelled with one
of our daemons' instance ids are removed; the temp dir is removed. The last line says what was left.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
if (VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != VENV.resolve():
    os.execv(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), str(Path(__file__).resolve()), *sys.argv[1:]])

# One consistent version of the code for the whole run, even while the working tree is being edited:
# the four packages are copied at start and put first on the path of this process, hodeid and its agents.
import shutil
import tempfile

ROOT = Path(tempfile.mkdtemp(prefix="hodei-rel-"))  # short: socket paths are limited to 108 bytes
SNAPSHOT = ROOT / "src"
for _pkg in ("hodei", "hodeid", "hodeictl", "hodei_agent"):
    shutil.copytree(REPO / _pkg, SNAPSHOT / _pkg, ignore=shutil.ignore_patterns("__pycache__"))
os.environ["PYTHONPATH"] = str(SNAPSHOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
sys.path.insert(0, str(SNAPSHOT))

import argparse
import asyncio
import collections
import datetime
import json
import platform
import random
import secrets
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from hodei.frames import encode_frame
from hodei.protocol import (
    FINAL_STATES,
    MAX_FRAME,
    PROTOCOL_VERSION,
    CtlReply,
    Error,
    Hello,
    JobsReply,
    Ping,
    Role,
)
from hodei_testing import AsyncClient as Client  # noqa: E402
from hodeictl.client import spec_from_cli

BIN = VENV / "bin" if (VENV / "bin" / "hodeid").exists() else Path(sys.executable).parent
MARK = "HODEI_RELIABILITY_RUN"  # every process we start inherits MARK=<token>: cleanup finds them by it
TOKEN = secrets.token_hex(6)
os.environ[MARK] = TOKEN  # before anything starts: hodeid -> agents, and our client_env -> local jobs
os.environ.pop("NO_COLOR", None)
IMAGE = os.environ.get("HODEI_WORKER_IMAGE", "hodei-worker:latest")
FAST_HB = ["--heartbeat-interval", "0.5", "--heartbeat-timeout", "5"]
FINAL = {str(s) for s in FINAL_STATES}
MiB = 1024 * 1024


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


# ---- processes ------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def processes_with_env(key: str, value: str) -> list[int]:
    found = []
    needle = f"{key}={value}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and pid_alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


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
             "--format", '{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes "hodei.instance"}}'],
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


# ---- one hodeid -----------------------------------------------------------------------------------


class Daemon:
    def __init__(self, run: Run, name: str, args: list[str]) -> None:
        self.run = run
        self.root = run.root / name
        self.root.mkdir()
        self.state_dir = self.root / "state"
        self.socket = self.root / "hodei.sock"
        self.agent_socket = self.root / "agent" / "agent.sock"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "hodeid.log"
        self.docker = "docker" in args
        run.daemons.append(self)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HODEI_SOCKET": str(self.socket)}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> float:
        """Start hodeid without waiting; returns the monotonic time of the Popen."""
        cmd = [str(BIN / "hodeid"), "--state-dir", str(self.state_dir), "--socket", str(self.socket),
               "--agent-socket", str(self.agent_socket), "--log-level", "info", *self.args]
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        return t0

    async def start(self) -> float:
        """Start hodeid and wait until it answers; returns seconds from Popen to the first answer."""
        t0 = self.spawn()
        await self.until_answers()
        if self.docker:
            self.run.note_instance(self)
        return time.monotonic() - t0

    async def until_answers(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"hodeid exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                c = Client(self.socket)
                await c.connect()
                try:
                    await c.request(Ping())
                    return
                finally:
                    await c.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.005)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def term(self, timeout: float = 30) -> tuple[int | None, float]:
        """SIGTERM and wait; (exit code, seconds it took)."""
        assert self.proc is not None
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, time.monotonic() - t0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(BIN / "hodeictl"), *args], capture_output=True, timeout=timeout, env=self.env,
                              check=False)

    def agents(self) -> list[int]:
        return processes_with_env("HODEI_AGENT_SOCKET", str(self.agent_socket))

    def client(self) -> Client:
        return Client(self.socket)

    def events(self) -> list[tuple[int, float, str | None, str, str | None, str]]:
        db = sqlite3.connect(f"file:{self.state_dir / 'hodei.db'}?mode=ro", uri=True)
        try:
            return db.execute("SELECT job_id, at, from_state, to_state, worker_id, reason FROM job_events"
                              " ORDER BY id").fetchall()
        finally:
            db.close()


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


# ---- the run: what was started, and its cleanup ---------------------------------------------------


class Run:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.root = ROOT
        self.daemons: list[Daemon] = []
        self.instances: set[str] = set()
        self.rows: list[dict[str, str]] = []
        self.details: dict[str, Any] = {}

    def note_instance(self, d: Daemon) -> None:
        try:
            self.instances.add((d.state_dir / "instance").read_text().strip())
        except OSError:
            pass

    def row(self, fault: str, sees: str, lost: str, figure: str) -> None:
        self.rows.append({"fault": fault, "sees": sees, "lost": lost, "figure": figure})
        say(f"| {fault} | {sees} | {lost} | {figure} |")

    def containers(self) -> list[str]:
        found: list[str] = []
        for inst in self.instances:
            found += docker("ps", "-aq", "--filter", f"label=hodei.instance={inst}", check=False).split()
        return found

    def cleanup(self) -> str:
        for d in self.daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.term(timeout=15)
            if d.docker:
                self.note_instance(d)
        left = processes_with_env(MARK, TOKEN)
        for pid in left:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        containers = self.containers() if self.instances and shutil.which("docker") else []
        if containers:
            docker("rm", "-f", *containers, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        time.sleep(0.5)
        still = processes_with_env(MARK, TOKEN)
        still_c = self.containers() if self.instances and shutil.which("docker") else []
        return (f"cleanup: {len(self.daemons)} hodeid stopped, {len(left)} marked processes killed, "
                f"{len(containers)} containers removed, temp dir removed; left behind: "
                f"{len(still)} processes, {len(still_c)} containers, dir exists={self.root.exists()}")


# ---- 1-3: restarts with a running job -------------------------------------------------------------


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
    d = Daemon(run, name, args)
    await d.start()
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
    follower_out = open(d.root / "follower.out", "wb")
    follower = subprocess.Popen([str(BIN / "hodeictl"), "logs", "-f", str(jid)], stdout=follower_out,
                                stderr=subprocess.PIPE, env=d.env)
    await asyncio.sleep(0.5)
    await p.close()
    size_at_stop = (share / out).stat().st_size
    t_signal = time.monotonic()
    if how == "graceful":
        code, took = d.term()
        res["stop_exit_code"], res["stop_took_s"] = code, round(took, 3)
    else:
        d.kill9()
    t_down = time.monotonic()
    if down:
        cli = d.ctl("show", str(jid), "--json")
        res["cli_while_down"] = {"exit": cli.returncode, "stderr": cli.stderr.decode(errors="replace").strip()}
        await asyncio.sleep(max(0.0, down - (time.monotonic() - t_down)))
    t0 = d.spawn()
    res["start_after_stop_s"] = round(t0 - t_down, 3)

    async def answers(c: Client) -> bool:
        return True

    await p.until(answers, timeout=60, interval=0.002)
    res["daemon_answers_s"] = round(time.monotonic() - t0, 3)
    res["unanswered_s"] = round(time.monotonic() - t_signal, 3)  # from the signal to the new hodeid's first answer
    if d.docker:
        run.note_instance(d)

    async def reconnected(c: Client) -> Any:
        workers: Any = await c.workers()  # (typed list[...] inside Client, where `list` is its method)
        return next((w for w in workers if w.job_id == jid and w.last_heartbeat is not None), None)

    w = await p.until(reconnected, timeout=60, interval=0.005)
    res["agent_back_s"] = round(time.monotonic() - t0, 3) if w else None
    state = (await p.call(lambda c: c.get(jid))).state
    res["state_after_restart"] = str(state)
    cli_workers = json.loads(d.ctl("workers", "--json").stdout or b"[]")
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
    logs = d.ctl("logs", str(jid))
    written = (share / out).read_bytes()
    res["compare_logs"] = compare(written, logs.stdout)
    res["logs_exit"] = logs.returncode
    # The follower attached after the first ~1.5 s of output: compare it with the file's tail.
    fol = (d.root / "follower.out").read_bytes()
    res["follower_bytes"] = len(fol)
    res["follower_is_suffix_of_file"] = bool(fol) and written.endswith(fol)
    res["follower_equals_file"] = fol == written
    await p.close()
    d.term()
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
        sees += f"; `hodeictl show` while down exits {r['cli_while_down']['exit']}: \"{r['cli_while_down']['stderr'][:90]}...\""
    lost = ("nothing: " if ok else "DIFFERENT: ") + (
        f"{cmp['file_bytes']} bytes compared, identical" if cmp["identical"]
        else f"file {cmp['file_bytes']} B vs logs {cmp['log_bytes']} B, first difference at byte {cmp.get('first_difference_at')}")
    fig = (f"agent back with its job {secs(r['agent_back_s'])} after the new hodeid's start (which answers at"
           f" {secs(r['daemon_answers_s'])}); no answer for {secs(r['unanswered_s'])} from the signal")
    run.row(label, sees, lost, fig)


# ---- 4: a worker dies or freezes mid-job ----------------------------------------------------------


async def worker_fault_case(run: Run, provider: str, fault: str, flags: list[str]) -> dict[str, Any]:
    tag = {"kill -9": "k", "SIGSTOP": "s", "docker kill": "k", "docker pause": "p"}[fault]
    name = f"w-{provider[0]}{tag}{'f' if flags else 'd'}"
    args = ["--max-workers", "1", *flags]
    if provider == "docker":
        args += ["--provider", "docker", "--image", IMAGE, "--network", "none", "--provision-timeout", "90"]
    d = Daemon(run, name, args)
    await d.start()
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
    cli = json.loads(d.ctl("show", str(jid), "--json").stdout or b"{}")
    res["cli_show_state"], res["attempt"] = cli.get("state"), cli.get("attempt")
    res["output_kept"] = d.ctl("logs", str(jid)).stdout.decode(errors="replace")
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
    d.term()
    return res


def worker_fault_row(run: Run, r: dict[str, Any]) -> None:
    label = f"4. {r['fault']} of the worker{' agent' if r['provider'] == 'local' else ' container'} mid-job ({r['provider']}; heartbeat {r['flags']})"
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


# ---- 5: garbage connections -----------------------------------------------------------------------


def garbage_connections(path: str, n: int, role: Role = Role.CTL, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    kinds: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    hello = encode_frame(Hello(version=PROTOCOL_VERSION, role=role, client="garbage", worker_id="wgarbage",
                               token="not-a-token"))
    decoder = msgspec.msgpack.Decoder(CtlReply)
    slowest = 0.0
    for i in range(n):
        r = rng.random()
        if r < 0.10:
            kind, payload = "nothing", b""
        elif r < 0.60:
            kind, payload = "random bytes", rng.randbytes(rng.randint(1, 4096))
        elif r < 0.75:
            body = rng.randbytes(rng.randint(0, 2048))
            kind, payload = "frame of random msgpack", len(body).to_bytes(4, "big") + body
        elif r < 0.85:
            kind, payload = "oversized length prefix", rng.randint(MAX_FRAME + 1, 2**32 - 1).to_bytes(4, "big") + rng.randbytes(64)
        else:
            kind, payload = "hello, then random bytes", hello + rng.randbytes(rng.randint(1, 4096))
        kinds[kind] += 1
        t0 = time.monotonic()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        try:
            s.connect(path)
            if payload:
                try:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    outcomes["closed by hodeid while sending"] += 1
                    continue
                data = b""
                try:
                    while chunk := s.recv(65536):
                        data += chunk
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    outcomes["no answer within 15 s (hung)"] += 1
                    continue
                frames = []
                pos = 0
                while pos + 4 <= len(data):
                    size = int.from_bytes(data[pos:pos + 4], "big")
                    frames.append(data[pos + 4: pos + 4 + size])
                    pos += 4 + size
                last = None
                for f in frames:
                    try:
                        last = decoder.decode(f)
                    except Exception:
                        last = "undecodable"
                if isinstance(last, Error):
                    outcomes[f"answered Error({last.code})"] += 1
                elif last is None:
                    outcomes["closed without an answer"] += 1
                else:
                    outcomes[f"answered {type(last).__name__}"] += 1
            else:
                outcomes["connected and closed at once"] += 1
        except OSError as e:
            outcomes[f"connect failed: {e.__class__.__name__}"] += 1
        finally:
            s.close()
            slowest = max(slowest, time.monotonic() - t0)
    return {"kinds": dict(kinds), "outcomes": dict(outcomes), "slowest_connection_s": round(slowest, 3)}


async def garbage_case(run: Run) -> dict[str, Any]:
    n = 2000 if run.quick else 10_000
    d = Daemon(run, "garbage", ["--max-workers", "1"])
    await d.start()
    p = Poller(d)
    first = await p.call(lambda c: c.submit(spec_from_cli(["echo warm"])))
    await p.call(lambda c: c.wait([first.id]))
    await p.close()
    await asyncio.sleep(0.5)
    res: dict[str, Any] = {"connections": n, "rss_before_kb": rss_kb(d.pid), "fds_before": fd_count(d.pid)}
    t0 = time.monotonic()
    res.update(await asyncio.to_thread(garbage_connections, str(d.socket), n))
    res["took_s"] = round(time.monotonic() - t0, 2)
    # The agent socket too: in the docker provider a job can reach it (its directory is mounted in the container).
    res["agent_socket"] = await asyncio.to_thread(garbage_connections, str(d.agent_socket), n // 5, Role.AGENT, 2)
    await asyncio.sleep(0.5)
    res["rss_after_kb"], res["fds_after"] = rss_kb(d.pid), fd_count(d.pid)
    res["daemon_alive"] = d.proc is not None and d.proc.poll() is None
    t1 = time.monotonic()
    sub = d.ctl("submit", "-f", "echo still serving")
    res["job_after"] = {"exit": sub.returncode, "stdout": sub.stdout.decode(errors="replace"),
                        "took_s": round(time.monotonic() - t1, 3)}
    log = d.log()
    res["daemon_log_lines"] = log.count("\n")
    res["internal_errors_in_log"] = log.count("internal error") + log.count("Traceback")
    d.term()
    return res


# ---- 6: 1 GiB of output -----------------------------------------------------------------------------


async def big_output_case(run: Run, follow: bool) -> dict[str, Any]:
    size = (256 if run.quick else 1024) * MiB
    d = Daemon(run, f"big{'f' if follow else ''}", ["--max-workers", "1"])
    await d.start()
    p = Poller(d)
    warm = await p.call(lambda c: c.submit(spec_from_cli(["true"])))
    await p.call(lambda c: c.wait([warm.id]))
    await asyncio.sleep(0.3)
    agents = d.agents()
    follower_pid: list[int] = []
    sampler = Sampler(lambda: {"hodeid": [d.pid], "agent": agents, "follower": follower_pid})
    res: dict[str, Any] = {"bytes": size, "follow": follow, "rss_idle_kb": rss_kb(d.pid)}
    sampler.start()
    t0 = time.monotonic()
    job = await p.call(lambda c: c.submit(spec_from_cli([f"head -c {size} /dev/zero"])))
    follower = None
    if follow:
        follower = subprocess.Popen([str(BIN / "hodeictl"), "logs", "-f", str(job.id)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env=d.env)
        follower_pid.append(follower.pid)
    fin = await p.call(lambda c: c.wait([job.id]), timeout=600)
    res["job_s"] = round(time.monotonic() - t0, 2)
    if follower is not None:
        try:
            follower.wait(timeout=600)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()
        res["follower_s"] = round(time.monotonic() - t0, 2)
        res["follower_exit"] = follower.returncode
        assert follower.stderr is not None
        res["follower_stderr"] = follower.stderr.read().decode(errors="replace")[-300:]
        follower.stderr.close()
    await asyncio.sleep(0.6)
    sampler.stop()
    res["state"], res["log_bytes"], res["reason"] = str(fin[0].state), fin[0].log_bytes, fin[0].reason
    res["peak_hodeid_kb"] = sampler.peak("hodeid")
    res["peak_agent_kb"] = sampler.peak("agent")
    res["peak_follower_kb"] = sampler.peak("follower")
    res["samples"] = len(sampler.samples)
    res["rss_after_kb"] = rss_kb(d.pid)
    await p.close()
    d.term()
    res.update(log_file_census(d.state_dir / "logs" / f"{job.id}.{fin[0].attempt}.log"))
    shutil.rmtree(d.state_dir / "logs", ignore_errors=True)
    return res


async def log_cap_case(run: Run) -> dict[str, Any]:
    """--max-log-bytes 1000 and a job whose whole output is 320 bytes, written as 40 separate lines."""
    d = Daemon(run, "cap", ["--max-workers", "1", "--max-log-bytes", "1000"])
    await d.start()
    r = d.ctl("submit", "-f", "for i in $(seq 10 49); do echo line $i; sleep 0.05; done")
    res: dict[str, Any] = {"cap": 1000, "job_stdout_bytes": 320, "exit": r.returncode, "stdout_bytes": len(r.stdout),
                           "stderr": r.stderr.decode(errors="replace").strip()}
    res["log_bytes"] = json.loads(d.ctl("show", "1", "--json").stdout)["log_bytes"]
    d.term()
    res.update(log_file_census(d.state_dir / "logs" / "1.1.log"))
    return res


def log_file_census(path: Path) -> dict[str, Any]:
    """What hodeid's log file of a job holds: records, output bytes per stream code, its own notes."""
    header = struct.Struct(">QBdI")  # as hodeid/logstore.py writes them
    by_stream: collections.Counter[int] = collections.Counter()
    records, notes = 0, []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = 0
            while pos + header.size <= size:
                f.seek(pos)
                _seq, stream, _ts, length = header.unpack(f.read(header.size))
                records += 1
                by_stream[stream] += length
                if stream not in (1, 2):
                    notes.append(f.read(min(length, 300)).decode(errors="replace").strip())
                pos += header.size + length
    except FileNotFoundError:
        return {"log_file": "missing"}
    return {"log_file_bytes": size, "log_records": records, "stored_stdout_bytes": by_stream[1],
            "stored_stderr_bytes": by_stream[2], "hodeid_notes": notes}


# ---- 7: 10,000 queued jobs ------------------------------------------------------------------------------


def cli_times(d: Daemon, args: list[str], n: int = 10) -> tuple[float, int, int]:
    """(median seconds, last exit code, last stdout size) of n runs of hodeictl."""
    times, code, size = [], 0, 0
    for _ in range(n):
        t0 = time.monotonic()
        r = d.ctl(*args)
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
    d = Daemon(run, "queue", ["--max-workers", "1"])
    await d.start()
    gate = d.root / "gate"
    res: dict[str, Any] = {"queued": n}
    async with d.client() as c:
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
            subprocess.run([str(BIN / "python"), "-c", "pass"], check=False)
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
    over = d.ctl("list", "--limit", "0", "--json")
    res["overflow_cli_exit"] = over.returncode
    res["overflow_cli_stderr"] = over.stderr.decode(errors="replace").strip()[-300:]
    res["overflow_cli_default_list_exit"] = d.ctl("list").returncode
    gate.touch()
    d.term()
    return res


# ---- 8: kill -9 while jobs are being assigned ---------------------------------------------------------


async def assignment_crash_case(run: Run) -> dict[str, Any]:
    rounds = 3 if run.quick else 8
    batch = 100
    d = Daemon(run, "assign", ["--max-workers", "2", *FAST_HB])
    await d.start()
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
        d.kill9()
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
    d.term()
    counts = collections.Counter(int(x) for x in shared.read_text().split()) if shared.exists() else collections.Counter()
    by_state = collections.Counter(str(j.state) for j in jobs)
    state_of = {j.id: str(j.state) for j in jobs}
    res: dict[str, Any] = {
        "rounds": rounds, "jobs": len(ids), "settled": bool(ok), "settle_after_last_restart_s": settle_s,
        "final_states": dict(by_state),
        "ran_twice_or_more": sorted(i for i in ids if counts[i] > 1),
        "succeeded_but_never_ran": sorted(i for i in ids if state_of.get(i) == "succeeded" and counts[i] == 0),
        "ran_but_not_succeeded": sorted((i, state_of.get(i)) for i in ids if counts[i] >= 1 and state_of.get(i) != "succeeded"),
        "left_unfinished": sorted((i, state_of.get(i)) for i in ids if state_of.get(i) not in FINAL),
    }
    # Which jobs were caught mid-assignment: their state in the database at each kill instant.
    events = d.events()
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
    d = Daemon(run, f"acc{k}", ["--max-workers", "1", *FAST_HB])
    await d.start()
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
    d.term()
    return r


# ---- the machine, the report --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    distro = ""
    try:
        with open("/etc/os-release") as f:
            distro = next((line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME")), "")
    except OSError:
        pass
    dv = "none"
    image = "n/a"
    if shutil.which("docker"):
        dv = subprocess.run(["docker", "version", "--format", "client {{.Client.Version}}, engine {{.Server.Version}}"],
                            capture_output=True, text=True, check=False).stdout.strip() or "engine not answering"
        found = subprocess.run(["docker", "image", "inspect", IMAGE, "--format", "{{.Id}} {{.Created}}"],
                               capture_output=True, text=True, check=False).stdout.split()
        image = f"{found[0].removeprefix('sha256:')[:12]}, built {found[1][:19]}" if len(found) == 2 else "missing"
    git = ["git", "-C", str(REPO)]
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{os.cpu_count()} cores, {model}",
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": distro,
        "python": platform.python_version(),
        "docker": dv,
        "commit": subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 check=False).stdout.strip(),
        "code": "snapshot of the working tree taken at start; uncommitted files in the product packages: "
                + (", ".join(line[3:] for line in subprocess.run(
                    [*git, "status", "--porcelain", "--", "hodei", "hodeid", "hodeictl", "hodei_agent"],
                    capture_output=True, text=True, check=False).stdout.splitlines()) or "none"),
        "worker_image": f"{IMAGE} {image}",
        "loadavg_at_start": open("/proc/loadavg").read().split(" ", 3)[:3],
    }


async def main(run: Run, only: set[int]) -> None:
    def want(n: int) -> bool:
        return not only or n in only

    why_no_docker = docker_ready() if want(3) or want(4) else None
    run.details["docker"] = why_no_docker or "available"

    async def case(key: str, coro: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
        say(f"== {key}")
        t0 = time.monotonic()
        try:
            r = await coro
        except Exception as e:
            say(traceback.format_exc())
            run.details[key] = {"crashed": f"{type(e).__name__}: {e}"}
            return None
        r["case_took_s"] = round(time.monotonic() - t0, 1)
        r["loadavg_after"] = open("/proc/loadavg").read().split(" ", 3)[:3]
        run.details[key] = r
        say(json.dumps(r, default=str)[:2000])
        return r

    if want(1):
        if r := await case("1 graceful restart, local", restart_case(run, "local", "graceful")):
            restart_row(run, "1. graceful restart of hodeid (SIGTERM, start), job running, local", r)
    if want(2):
        if r := await case("2 kill -9 restart, local", restart_case(run, "local", "kill -9")):
            restart_row(run, "2. kill -9 of hodeid, start at once, job running, local", r)
        if r := await case("2b kill -9, down 5 s, local", restart_case(run, "local", "kill -9", down=5.0)):
            restart_row(run, "2b. kill -9 of hodeid, down 5 s, job running, local", r)
            if "cli_while_down" in r:
                run.details["2b kill -9, down 5 s, local"]["note"] = "cli_while_down: `hodeictl show` while hodeid was down"
    if want(3):
        if why_no_docker:
            run.row("3. restarts on the docker provider", f"not measured: {why_no_docker}", "n/a", "n/a")
        else:
            if r := await case("3 graceful restart, docker", restart_case_docker(run, "graceful")):
                restart_row(run, "3. graceful restart of hodeid, job running, docker --network none", r)
            if r := await case("3b kill -9 restart, docker", restart_case_docker(run, "kill -9")):
                restart_row(run, "3b. kill -9 of hodeid, start at once, job running, docker --network none", r)
    if want(4):
        for fault, flags in (("kill -9", FAST_HB), ("kill -9", []), ("SIGSTOP", FAST_HB), ("SIGSTOP", [])):
            if fault == "SIGSTOP" and not flags and run.quick:
                continue
            if r := await case(f"4 {fault} agent, local, {flags or 'defaults'}", worker_fault_case(run, "local", fault, flags)):
                worker_fault_row(run, r)
        if why_no_docker:
            run.row("4. docker kill of the worker container", f"not measured: {why_no_docker}", "n/a", "n/a")
        else:
            for fault, flags in (("docker kill", FAST_HB), ("docker kill", []), ("docker pause", FAST_HB)):
                if r := await case(f"4 {fault}, {flags or 'defaults'}", worker_fault_case(run, "docker", fault, flags)):
                    worker_fault_row(run, r)
    if want(5):
        if r := await case("5 garbage connections", garbage_case(run)):
            hung = sum(v for k, v in r["outcomes"].items() if "hung" in k)
            hung += sum(v for k, v in r["agent_socket"]["outcomes"].items() if "hung" in k)
            run.row(f"5. {r['connections']:,} garbage connections in a row on the control socket"
                    f" (and {r['connections'] // 5:,} on the agent socket)",
                    f"each gets an Error or a close ({hung} hung); then `submit -f` exits {r['job_after']['exit']}"
                    f" printing {r['job_after']['stdout'].strip()!r}",
                    "nothing" if r["daemon_alive"] and r["job_after"]["exit"] == 0 else "DAEMON DOWN",
                    f"RSS {mb(r['rss_before_kb'])} before, {mb(r['rss_after_kb'])} after; fds {r['fds_before']} -> {r['fds_after']}"
                    f"; {r['took_s']} s for all")
    if want(6):
        for follow in (False, True):
            if r := await case(f"6 big output, follow={follow}", big_output_case(run, follow)):
                gib = r["bytes"] / 1024 ** 3
                run.row(f"6{'b' if follow else ''}. a job prints {gib:g} GiB to stdout"
                        + (" with a `logs -f` follower to /dev/null" if follow else ""),
                        f"job `{r['state']}` in {r['job_s']} s" + (f"; follower exits {r['follower_exit']} at {r['follower_s']} s" if follow else ""),
                        f"stdout kept: {r.get('stored_stdout_bytes', 0):,} of {r['bytes']:,} bytes"
                        + (f"; hodeid's note: \"{r['hodeid_notes'][0]}\"" if r.get("hodeid_notes") else "")
                        + f"; `show` says log_bytes {r['log_bytes']:,}",
                        f"hodeid peak RSS {mb(r['peak_hodeid_kb'])} (idle {mb(r['rss_idle_kb'])}; target <= 100 MB); agent peak {mb(r['peak_agent_kb'])}"
                        + (f"; follower peak {mb(r['peak_follower_kb'])}" if follow else ""))
    hodeid_help = subprocess.run([str(BIN / "hodeid"), "--help"], capture_output=True, check=False).stdout
    if want(6) and b"--max-log-bytes" in hodeid_help:
        if r := await case("6c log cap", log_cap_case(run)):
            run.row("6c. `--max-log-bytes 1000`, a job writes 320 bytes as 40 lines 50 ms apart",
                    f"`submit -f` prints {r['stdout_bytes']} of 320 bytes, then on stderr: \"{r['stderr'][:80]}...\"",
                    f"{320 - r['stdout_bytes']} bytes of output under the cap are dropped",
                    f"{r.get('log_records')} records in a {r.get('log_file_bytes')}-byte log file: the cap counts the 21-byte"
                    f" record headers; `show` log_bytes {r['log_bytes']} (marker included)")
    if want(7):
        if r := await case("7 queued jobs", queued_case(run)):
            run.row(f"7. {r['queued']:,} queued jobs (--max-workers 1, first job holds the worker)",
                    f"`hodeictl list` median {ms(r['cli_list_s'])} (with 1 job: {ms(r['cli_list_1_job_s'])};"
                    f" `hodeictl --help`: {ms(r['cli_help_s'])});"
                    f" `list --limit 0 --json` {ms(r['cli_list_all_json_s'])}; ListJobs round trip: 50 jobs {ms(r['client_list50_s'])},"
                    f" all {ms(r['client_list_all_s'])}",
                    f"nothing; but with {r['overflow_extra_jobs']:,} more jobs of a 32 kB command `list --limit 0` exits {r['overflow_cli_exit']}",
                    f"hodeid RSS {mb(r['rss_after_submit_kb'])} after the submits (1 job: {mb(r['rss_one_job_kb'])}), peak {mb(r['rss_peak_during_lists_kb'])} during the lists;"
                    f" submits on one connection: first 1,000 in {r['submit_s_per_1000'][0]} s, last 1,000 in {r['submit_s_per_1000'][-1]} s")
    if want(8):
        if r := await case("8 kill -9 during assignment", assignment_crash_case(run)):
            dup, never = r["ran_twice_or_more"], r["succeeded_but_never_ran"]
            run.row(f"8. kill -9 of hodeid {r['rounds']}x while {r['jobs']:,} short jobs stream through 2 workers",
                    f"final states {r['final_states']}; {r['requeued_after_reconnect']} jobs requeued on reconnect",
                    f"{len(dup)} ran twice, {len(never)} succeeded without running, {len(r['left_unfinished'])} left unfinished",
                    f"{r['states_at_kill_instants'].get('assigned', 0)} jobs caught `assigned` at a kill, {r['states_at_kill_instants'].get('running', 0)} `running`;"
                    f" settled {r['settle_after_last_restart_s']} s after the last restart")
        if r := await case("8b accept lost, then agent killed", accept_lost_case(run)):
            run.row(f"8b. the job kill -9s hodeid as it starts ({r['tries']}x); after the restart its agent is killed",
                    f"job back to `running` after the restart, then `lost`; in {r['pid_unknown']} of {r['tries']} runs"
                    " hodeid had not stored the Accept: no pid, and started_at is the submit time",
                    f"the job's `sleep 300` is LEFT RUNNING in {r['orphaned_when_pid_unknown']} of those {r['pid_unknown']}"
                    f" runs ({r['orphaned_when_pid_known']} of the other {r['tries'] - r['pid_unknown']})",
                    f"{r['orphaned_when_pid_unknown'] + r['orphaned_when_pid_known']} orphaned processes in {r['tries']} runs")


def entry() -> None:
    try:
        _entry()
    finally:
        shutil.rmtree(ROOT, ignore_errors=True)  # already gone after a run; not after --help or a bad flag


def _entry() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        asyncio.run(main(run, only))
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
    finally:
        cleanup = run.cleanup()
    total = time.monotonic() - t0
    print("## Machine\n")
    for k, v in info.items():
        print(f"- {k}: {v}")
    print(f"- command: `.venv/bin/python bench/reliability.py{' --quick' if args.quick else ''}"
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


if __name__ == "__main__":
    entry()

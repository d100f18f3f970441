"""What the benchmarks share beyond the harness (hodei_testing): the machine, percentiles, the CPU probe,
the markdown table of bench/run, and the command line of a measurement run on its own.

Importing it re-execs the script with the venv's python first (bench/_venv.py).

A new measurement, in the shape of bench/cancel.py: a docstring that says what is measured, next to
which floor or peer, and how to run it; `async def measure(h, main, quick, res)` that adds its rows
(`res.row`, `res.note`) using `main`, bench/run's warm daemon, or daemons of its own from
`h.daemon(name, flags, start=True)` (hodei_testing: real socket, `d.client()`, `d.ctl(...)`, cleanup
of agents and marked processes); and `common.run_alone(prog, __doc__, measure)` under __main__.
A script with its own report needs only the harness: `with Harness(prefix=..., mark=MARK) as h:`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _venv  # first: the venv's python, the repo on sys.path

from hodei_testing import BIN, Daemon, Harness, wait_for, wait_for_async

PY = str(BIN / "python")
MARK = "HODEI_BENCH_RUN"  # every process a run starts inherits MARK=<token>: that is how cleanup finds them
MB = 1024 * 1024


def say(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def verdict(ok: bool, how: str) -> str:
    return f"yes ({how})" if ok else f"**no** ({how})"


def _whole_line(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    """The text of `path` once it ends with a newline (a job wrote its whole line)."""
    return wait_for(lambda: _whole_line(path), timeout, 0.0005, what=str(path))


async def await_file(path: Path, timeout: float = 20.0) -> str:
    async def line() -> str | None:
        return _whole_line(path)

    return await wait_for_async(line, timeout, 0.0005, what=str(path))


# ---- the machine ----------------------------------------------------------------------------------


def hypervisor() -> bool:
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " hypervisor" in line for line in f)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")


def ram() -> str:
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return f"{mem_kb / 1024 / 1024:.1f} GiB"


def distro() -> str:
    try:
        with open("/etc/os-release") as f:
            return next((line.split("=", 1)[1].strip().strip('"') for line in f if line.startswith("PRETTY_NAME")), "")
    except OSError:
        return ""


def now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


REPO = _venv.REPO


def commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()


def dirty_files() -> list[str]:
    """Uncommitted files in the product packages: what is measured besides the commit."""
    out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "hodei", "hodeid", "hodeictl",
                          "hodei_agent"], capture_output=True, text=True, check=False).stdout
    return [line[3:] for line in out.splitlines()]


def tsp_version() -> str:
    tsp = shutil.which("tsp")
    if not tsp:
        return "task-spooler not installed"
    out = subprocess.run([tsp, "-V"], capture_output=True, text=True, check=False)
    return ((out.stdout or out.stderr).splitlines() or ["task-spooler"])[0].split(" - ")[0] or "task-spooler"


def machine() -> dict[str, str]:
    return {
        "date": now(),
        "cpu": f"{os.cpu_count()} cores, {cpu_model()}" + (" (virtual machine)" if hypervisor() else ""),
        "ram": ram(),
        "kernel": platform.release(),
        "os": distro(),
        "python": platform.python_version() + f" ({sys.executable})",
        "commit": commit(),
        "tsp": tsp_version(),
        "dirty": str(len(dirty_files())),
    }


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


PROBE = (
    "import time, sys\n"
    "w0, c0 = time.perf_counter(), time.process_time()\n"
    "while time.process_time() - c0 < float(sys.argv[1]): sum(range(1000))\n"
    "print((time.process_time() - c0) / (time.perf_counter() - w0))"
)


def free_cpu(cpu_seconds: float = 0.2) -> float:
    """Share of the machine's CPU left to us: one CPU-bound loop per core, each reports CPU time over wall
    time. 1.0 when nothing else ran; 0.5 when others took half of the cores' time."""
    procs = [subprocess.Popen([sys.executable, "-S", "-c", PROBE, str(cpu_seconds)], stdout=subprocess.PIPE, text=True)
             for _ in range(os.cpu_count() or 1)]
    shares = [float(p.communicate()[0]) for p in procs]
    return min(1.0, statistics.fmean(shares))


# ---- the warm local hodeid of bench/run -------------------------------------------------------------


MAIN_FLAGS = ["--max-workers", "2", "--min-idle", "1", "--idle-timeout", "3600"]


def warm(d: Daemon, workers: int) -> None:
    """Bring up `workers` agents and run a few jobs on each, so nothing measured pays a start-up."""
    from hodeictl.client import spec_from_cli

    with d.client() as c:
        ids = [(c.submit(spec_from_cli(["sleep 0.3"]))).id for _ in range(workers)]
        c.wait(ids)
        for _ in range(3):
            ids = [(c.submit(spec_from_cli(["true"]))).id for _ in range(workers * 2)]
            c.wait(ids)
        deadline = time.monotonic() + 20
        while sum(1 for w in c.workers() if w.state == "idle") < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not become idle: {c.workers()}")
            time.sleep(0.05)


def warm_daemon(h: Harness, name: str, args: list[str], workers: int) -> Daemon:
    d = h.daemon(name, args, start=True)
    warm(d, workers)
    return d


def main_daemon(h: Harness) -> Daemon:
    """bench/run's hodeid for dispatch, cancel, logs and CLI: two warm workers, one kept idle."""
    return warm_daemon(h, "main", MAIN_FLAGS, 2)


# ---- bench/run's table ------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    hodei: str
    compare: str
    target: str
    met: str


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    probes: list[tuple[str, float]] = field(default_factory=list)

    def phase(self, name: str) -> None:
        """Log the phase and probe, while nothing of ours runs, how much CPU others leave us."""
        say(name)
        self.probes.append((name.split(".")[0], free_cpu()))

    def row(self, *a: str) -> None:
        self.rows.append(Row(*a))

    def note(self, text: str) -> None:
        self.details.append(text)


def render(res: Results, info: dict[str, str], argv: list[str], elapsed: float, load: tuple[str, str],
           probe: tuple[float, float]) -> str:
    dirty = f" plus uncommitted changes in {info['dirty']} product file(s)" if info["dirty"] != "0" else ""
    out = [
        (f"Machine: {info['cpu']}; {info['ram']} RAM; kernel {info['kernel']}; {info['os']};"
        f" Python {info['python']}; {info['tsp']}."),
        "",
        (f"Run: {info['date']}, commit {info['commit']}{dirty}, `{' '.join(argv)}`, {elapsed:.0f} s."
        f" Load average before: {load[0]}; after (the run's own load included): {load[1]}."),
        "",
        "CPU left to the run, probed with one busy loop per core while none of the run's processes were busy"
        f" (100%: nothing else ran): before {probe[0]:.0%}, "
        + ", ".join(f"phase {name} {share:.0%}" for name, share in res.probes) + f", after {probe[1]:.0%}.",
        "",
        "| Measurement | hodei | floor / peer, same run | target | met |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {r.what} | {r.hodei} | {r.compare} | {r.target} | {r.met} |" for r in res.rows]
    out += ["", *[f"- {d}" for d in res.details]]
    return "\n".join(out)


# ---- a run: the command line, the harness, the cleanup, the table -----------------------------------


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs, job logs) for a look")
    p.add_argument("--venv", metavar="DIR", help="measure the hodei installed in this venv (default: the repo's .venv)")
    return p


def run_table(prog: str, args: argparse.Namespace, body: Callable[[Harness, Results], Awaitable[None]]) -> None:
    """Run `body` in a fresh Harness (marked with MARK), clean up whatever happens, print bench/run's table."""
    os.environ.pop("HODEI_STATE_DIR", None)
    h = Harness(prefix="hodei-bench-", mark=MARK)
    res = Results()
    info = machine()
    t0 = time.monotonic()
    load0, probe0 = loadavg(), free_cpu()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        asyncio.run(body(h, res))
    except BaseException:
        say(h.log_tails())
        raise
    finally:
        say(h.cleanup(keep=args.keep))
    elapsed = time.monotonic() - t0
    print(render(res, info, [".venv/bin/python", prog, *sys.argv[1:]], elapsed, (load0, loadavg()),
                 (probe0, free_cpu())))


def run_alone(prog: str, doc: str | None, measure: Callable[..., Awaitable[None]], shared_daemon: bool = True) -> None:
    """A measurement file run on its own: `measure(h, [main daemon,] quick, res)`, then the table."""
    args = parser(prog, doc).parse_args()

    async def body(h: Harness, res: Results) -> None:
        if shared_daemon:
            await measure(h, main_daemon(h), args.quick, res)
        else:
            await measure(h, args.quick, res)

    run_table(prog, args, body)

#!/usr/bin/env python3
"""hodeictl's wall time, command by command, beside the interpreter's own start-up.

    .venv/bin/python bench/cli.py                   # 30 runs of each, about a minute
    .venv/bin/python bench/cli.py -n 10             # fewer
    .venv/bin/python bench/cli.py --against DIR     # also the hodeictl of another source tree

Starts a private hodeid (local provider) in a temp dir, queues one job (`echo hi`) and waits for it,
then times each command as a whole process: `subprocess.run` between two `time.perf_counter()`
readings, output to a pipe (as in a script), and the CPU time it used (user + system, from
getrusage of the children: less moved than wall time by other processes on a busy machine). Every
case runs twice to warm up, then N times interleaved, one run of each case in turn, so that the
machine's drift hits all of them alike. The table gives the median wall time, with the minimum and
90th percentile beside it, and the median CPU time.

Bytecode is cached as on a usual install, under a private PYTHONPYCACHEPREFIX in the temp dir
(nothing is written into the repo; PYTHONDONTWRITEBYTECODE is dropped for the runs).

--against DIR runs the same commands with another source tree of hodei first on PYTHONPATH (say a
`git worktree add --detach /tmp/old COMMIT`), with this venv's interpreter and packages, in the same
interleaved rounds: before and after a change, on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PY = str(BIN / "python")
CTL = str(BIN / "hodeictl")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    ram = next((int(line.split()[1]) // 1024 // 1024 for line in meminfo if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores, {cpu}; {ram} GiB RAM; kernel {platform.release()};"
            f" Python {platform.python_version()} ({sys.executable})")


def start_hodeid(tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(tmp / "hodeid.log", "wb")  # noqa: SIM115  (kept open for hodeid's life)
    argv = [str(BIN / "hodeid"), "--state-dir", str(tmp / "state"), "--socket", env["HODEI_SOCKET"]]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while subprocess.run([CTL, "list"], env=env, capture_output=True, check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench/cli.py: hodeid did not start:\n{(tmp / 'hodeid.log').read_text()}")
        time.sleep(0.1)
    return proc


def cases(job: str) -> dict[str, list[str]]:
    return {
        "python -c pass": [PY, "-c", "pass"],
        "python -c 'import msgspec'": [PY, "-c", "import msgspec"],
        "hodeictl submit true": [CTL, "submit", "true"],
        "hodeictl list": [CTL, "list"],
        f"hodeictl show {job}": [CTL, "show", job],
        "hodeictl workers": [CTL, "workers"],
        f"hodeictl wait {job}": [CTL, "wait", job],
        f"hodeictl cancel {job} (finished)": [CTL, "cancel", job],
        f"hodeictl logs {job} (finished)": [CTL, "logs", job],
        "hodeictl list --help (typer)": [CTL, "list", "--help"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=30, help="timed runs of each case (default 30)")
    ap.add_argument("--against", metavar="DIR", help="also time the hodei sources in DIR (same venv)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hodei-bench-cli-"))
    env = {**os.environ, "HODEI_SOCKET": str(tmp / "hodei.sock"), "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    envs = {"": env}
    if args.against:
        old = str(Path(args.against).resolve())
        envs["old: "] = {**env, "PYTHONPATH": old}
        probe = subprocess.run([PY, "-c", "import hodeictl; print(hodeictl.__file__)"], cwd="/",
                               env=envs["old: "], capture_output=True, text=True, check=True).stdout.strip()
        if not probe.startswith(old):
            raise SystemExit(f"bench/cli.py: --against {old}: python still imports hodeictl from {probe}")
    load_before = os.getloadavg()
    proc = start_hodeid(tmp, env)
    try:
        queued = subprocess.run([CTL, "submit", "echo hi"], env=env, capture_output=True, check=True)
        job = queued.stdout.decode().strip()
        subprocess.run([CTL, "wait", job], env=env, capture_output=True, check=True)
        runs = {(label, name): (argv, e) for label, e in envs.items() for name, argv in cases(job).items()
                if not (label and name.startswith("python"))}
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for _ in range(2):
            for argv, e in runs.values():
                subprocess.run(argv, env=e, capture_output=True, check=True)
        for i in range(args.n):
            print(f"\rround {i + 1}/{args.n}", end="", file=sys.stderr, flush=True)
            for key, (argv, e) in runs.items():
                r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                subprocess.run(argv, env=e, capture_output=True, check=True)
                times[key].append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[key].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        print(file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    floor = statistics.median(times[("", "python -c 'import msgspec'")])
    print(f"Machine: {machine()}.")
    print(f"Load average (1 min) before: {load_before[0]:.2f}, after: {load_after[0]:.2f}."
          f" n={args.n} each, interleaved.")
    print()
    print("| command | wall ms, median | min | p90 | median minus `import msgspec` | CPU ms, median |")
    print("|---|---|---|---|---|---|")
    for (label, name), values in times.items():
        med = statistics.median(values)
        print(f"| {label}`{name}` | {ms(med)} | {ms(min(values))} | {ms(p90(values))} | {ms(med - floor)}"
              f" | {ms(statistics.median(cpu[(label, name)]))} |")


if __name__ == "__main__":
    main()

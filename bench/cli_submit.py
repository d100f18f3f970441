#!/usr/bin/env python3
"""6. `hodeictl submit true` wall time, next to `python -c pass`, the bare imports and smaller clients.

    .venv/bin/python bench/cli_submit.py            # 30 runs of each
    .venv/bin/python bench/cli_submit.py --quick    # 6

On bench/run's warm hodeid. Each case runs twice to warm the page cache and the .pyc cache (under a
private PYTHONPYCACHEPREFIX in the temp dir, so nothing is written into the repo), then N times,
interleaved so that drift hits every case alike; medians are reported. Also run by bench/run
(phase `cli`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import common
from common import PY, Results, ms, pct, verdict

from hodei_testing import Daemon, Harness

RUNS = {"quick": 6, "full": 30}


LEAN_SUBMIT = (
    "from hodeictl.client import Client, spec_from_cli\n"
    "with Client() as c: print(c.submit(spec_from_cli(['true'])).id)"
)


# The smallest Python client that does the same: one blocking socket, msgspec, hodei.protocol; no asyncio.
BLOCKING_SUBMIT = (
    "import os, socket, struct, msgspec\n"
    "from hodei.protocol import PROTOCOL_VERSION, CtlReply, HandshakeReply, Hello, JobSpec, Role, Submit\n"
    "s = socket.socket(socket.AF_UNIX); s.connect(os.environ['HODEI_SOCKET']); f = s.makefile('rb')\n"
    "def send(m): b = msgspec.msgpack.encode(m); s.sendall(struct.pack('>I', len(b)) + b)\n"
    "def recv(t): return msgspec.msgpack.decode(f.read(struct.unpack('>I', f.read(4))[0]), type=t)\n"
    "send(Hello(version=PROTOCOL_VERSION, role=Role.CTL, client='bench')); recv(HandshakeReply)\n"
    "send(Submit(spec=JobSpec(command=['true'], shell=True, client_env=dict(os.environ), client_cwd=os.getcwd())))\n"
    "print(recv(CtlReply).job.id)"
)
BLOCKING = "python: blocking-socket submit (msgspec + hodei.protocol only)"
IMPORTS = "python -c 'import msgspec, socket'"
TYPER = "hodeictl's typer CLI: python -m hodeictl.cli submit true"
LEAN = "python: hodeictl.client submit, no typer"
CLI = "hodeictl submit true"


def bench_cli(d: Daemon, tmp: Path, n: int, res: Results) -> None:
    # Bytecode as on a usual install: cached .pyc files, here under a private prefix so that nothing is
    # written into the repo (an editable install keeps hodei's own modules there).
    env = {**d.env, "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cases = {
        CLI: [str(d.bin / "hodeictl"), "submit", "true"],
        "python -c pass": [PY, "-c", "pass"],
        IMPORTS: [PY, "-c", "import msgspec, socket"],
        TYPER: [PY, "-m", "hodeictl.cli", "submit", "true"],
        LEAN: [PY, "-c", LEAN_SUBMIT],
        BLOCKING: [PY, "-c", BLOCKING_SUBMIT],
    }
    envs = {k: env for k in cases}
    as_is = f"{CLI}, environment as given (PYTHONDONTWRITEBYTECODE=1)"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):  # how this box runs it: hodei's own modules compiled every time
        cases[as_is] = cases[CLI]
        envs[as_is] = d.env
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(2):  # warm the page cache and fill the .pyc cache
        for name, argv in cases.items():
            subprocess.run(argv, env=envs[name], check=True, capture_output=True)
    for _ in range(n):  # interleaved, so drift hits every case alike
        for name, argv in cases.items():
            t0 = time.perf_counter()
            subprocess.run(argv, env=envs[name], check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    cli = med[CLI]
    res.row(f"6. `hodeictl submit true` wall time (median, n={n})", ms(cli),
            f"`python -c pass` {ms(med['python -c pass'])}; `python -c 'import msgspec, socket'`"
            f" {ms(med[IMPORTS])}; the smallest blocking-socket submit {ms(med[BLOCKING])}; the typer CLI"
            f" {ms(med[TYPER])}",
            "≤ 100 ms", verdict(cli <= 0.100, f"{'under' if cli <= 0.1 else 'over'} by {abs(cli - 0.1) * 1000:.0f} ms"))
    res.note(f"**CLI wall time** (n={n} each, interleaved, .pyc cached; median / p95): " + "; ".join(
        f"{k}: {ms(med[k])} / {ms(pct(v, 95))}" for k, v in times.items()) + ".")


async def measure(h: Harness, main: Daemon, quick: bool, res: Results) -> None:
    n = RUNS["quick" if quick else "full"]
    res.phase(f"6. CLI wall time, {n} runs of each")
    bench_cli(main, h.root, n, res)


if __name__ == "__main__":
    common.run_alone("bench/cli_submit.py", __doc__, measure)

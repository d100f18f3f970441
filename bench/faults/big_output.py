#!/usr/bin/env python3
# A benchmark, not library code: it reports whatever a case raises, and its async cases call blocking
# subprocesses on purpose (the real CLI, timed one at a time).
"""Case 6: a job writes 1 GiB to stdout: hodeid's peak RSS, without and with a `logs -f` follower.

    .venv/bin/python bench/faults/big_output.py [--quick]    # --quick: 256 MiB

RSS of hodeid, the agent and the follower are sampled every 0.2 s; the log file is read back record
by record to count what was stored. 6c: --max-log-bytes 1000 and a job whose whole output (320
bytes, 40 lines 50 ms apart) is under it. Part of bench/reliability.py.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import case  # noqa: F401  (first: the venv's python, and the snapshot of the code first on sys.path)
from case import (
    MiB,
    Poller,
    Run,
    Sampler,
    ctl,
    entry,
    mb,
)

from hodei_testing import BIN, rss_kb
from hodeictl.client import spec_from_cli


async def big_output_case(run: Run, follow: bool) -> dict[str, Any]:
    size = (256 if run.quick else 1024) * MiB
    d = run.daemon(f"big{'f' if follow else ''}", ["--max-workers", "1"])
    await d.astart()
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
        follower = subprocess.Popen([str(d.bin / "hodeictl"), "logs", "-f", str(job.id)], stdout=subprocess.DEVNULL,
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
    d.stop(30)
    res.update(log_file_census(d.state_dir / "logs" / f"{job.id}.{fin[0].attempt}.log"))
    shutil.rmtree(d.state_dir / "logs", ignore_errors=True)
    return res


async def log_cap_case(run: Run) -> dict[str, Any]:
    """--max-log-bytes 1000 and a job whose whole output is 320 bytes, written as 40 separate lines."""
    d = run.daemon("cap", ["--max-workers", "1", "--max-log-bytes", "1000"])
    await d.astart()
    r = ctl(d, "submit", "-f", "for i in $(seq 10 49); do echo line $i; sleep 0.05; done")
    res: dict[str, Any] = {"cap": 1000, "job_stdout_bytes": 320, "exit": r.returncode, "stdout_bytes": len(r.stdout),
                           "stderr": r.stderr.decode(errors="replace").strip()}
    res["log_bytes"] = json.loads(ctl(d, "show", "1", "--json").stdout)["log_bytes"]
    d.stop(30)
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


async def cases(run: Run, want: Callable[[int], bool]) -> None:
    if want(6):
        for follow in (False, True):
            if r := await run.case(f"6 big output, follow={follow}", big_output_case(run, follow)):
                gib = r["bytes"] / 1024 ** 3
                run.row(f"6{'b' if follow else ''}. a job prints {gib:g} GiB to stdout"
                        + (" with a `logs -f` follower to /dev/null" if follow else ""),
                        f"job `{r['state']}` in {r['job_s']} s"
                        + (f"; follower exits {r['follower_exit']} at {r['follower_s']} s" if follow else ""),
                        f"stdout kept: {r.get('stored_stdout_bytes', 0):,} of {r['bytes']:,} bytes"
                        + (f"; hodeid's note: \"{r['hodeid_notes'][0]}\"" if r.get("hodeid_notes") else "")
                        + f"; `show` says log_bytes {r['log_bytes']:,}",
                        f"hodeid peak RSS {mb(r['peak_hodeid_kb'])} (idle {mb(r['rss_idle_kb'])}; target <= 100 MB);"
                        f" agent peak {mb(r['peak_agent_kb'])}"
                        + (f"; follower peak {mb(r['peak_follower_kb'])}" if follow else ""))
    hodeid_help = subprocess.run([str(BIN / "hodeid"), "--help"], capture_output=True, check=False).stdout
    if want(6) and b"--max-log-bytes" in hodeid_help:
        if r := await run.case("6c log cap", log_cap_case(run)):
            run.row("6c. `--max-log-bytes 1000`, a job writes 320 bytes as 40 lines 50 ms apart",
                    f"`submit -f` prints {r['stdout_bytes']} of 320 bytes, then on stderr: \"{r['stderr'][:80]}...\"",
                    f"{320 - r['stdout_bytes']} bytes of output under the cap are dropped",
                    f"{r.get('log_records')} records in a {r.get('log_file_bytes')}-byte log file:"
                    " the cap counts the 21-byte"
                    f" record headers; `show` log_bytes {r['log_bytes']} (marker included)")


if __name__ == "__main__":
    entry("bench/faults/big_output.py", __doc__, [cases])

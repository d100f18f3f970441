#!/usr/bin/env python3
"""`hodeictl cancel` of many queued jobs at once: exit status, seconds, and hodeictl's and hodeid's peak RSS.

    .venv/bin/python bench/cancel_many.py                     # 100,000 jobs, the code of this tree
    .venv/bin/python bench/cancel_many.py --tree /tmp/old     # the same against another checkout's code

It starts hodeid with --max-workers 1 in a temp dir, holds the only worker with `sleep 600`, queues
N jobs (--command) through the Client API, then runs `/usr/bin/time -v hodeictl cancel ID...` for all
N and reports what time(1) says. hodeid and hodeictl both run from --tree (PYTHONPATH, and a temp
dir as the working directory, since `python -m` looks there first), so a
before/after comparison needs only a copy of the old code (`git archive COMMIT | tar -x -C DIR`).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tree", type=Path, default=REPO)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--command", default="sleep 600; echo a job that is cancelled before it starts",
                   help="each job's shell line: its length sets the size of the reply")
    args = p.parse_args()
    sys.path.insert(0, str(args.tree))  # the Client too comes from --tree
    sys.path.insert(1, str(REPO))  # the harness from here
    from hodei_testing import Harness
    from hodeictl.client import spec_from_cli

    with Harness(prefix="hcm") as h:
        d = h.daemon("d", ["--max-workers", "1"], log_level="warning", hodeid=[sys.executable, "-m", "hodeid"],
                     env={"PYTHONPATH": str(args.tree)})
        d.start()
        gate = None
        try:
            with d.client() as c:
                gate = c.submit(spec_from_cli(["sleep 600"]))
                started = time.monotonic()
                spec = spec_from_cli([args.command])
                ids = [j.id for j in c.submit_many(spec for _ in range(args.jobs))]
                queued_s = time.monotonic() - started
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "hodeictl", "cancel", *map(str, ids)]
            started = time.monotonic()
            res = subprocess.run(cmd, env=d.env, cwd=d.root, capture_output=True, text=True, check=False)
            took = time.monotonic() - started
            with open(f"/proc/{d.pid}/status") as f:
                hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))  # type: ignore[union-attr]
            lines = res.stdout.splitlines()
            print(json.dumps({
                "tree": str(args.tree), "jobs": args.jobs, "gate": gate.id, "queued_s": round(queued_s, 1),
                "exit": res.returncode, "seconds": round(took, 1), "hodeictl_peak_rss_mib": round(rss / 1024, 1),
                "hodeid_peak_rss_mib": round(hwm / 1024, 1), "lines_printed": len(lines),
                "cancelled_lines": sum(1 for line in lines if "\tcancelled" in line),
                "stderr": [line for line in res.stderr.splitlines() if line.startswith("hodeictl")],
            }, indent=1))
        finally:
            try:  # its worker then idles, and a stopping hodeid stops idle workers: nothing is left behind
                if gate is not None:
                    with d.client() as c:
                        c.cancel([gate.id], grace=0)
            except Exception as e:  # report, and stop the daemon anyway
                print(f"could not cancel the gate job: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()

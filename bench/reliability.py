#!/usr/bin/env python3
"""hodei fault injection: start real hodeid daemons in temp dirs, break things, measure what survives.

    .venv/bin/python bench/reliability.py            # full run, 7-9 minutes on 2 cores
    .venv/bin/python bench/reliability.py --quick    # smaller counts, about 3 minutes: a smoke test
    .venv/bin/python bench/reliability.py --only 1,4 # some cases only (numbers as in docs/reliability.md)

Prints the machine, then one markdown row per fault (fault | what the user sees | what is lost |
measured figure), then the details of every case as JSON (also written to --json PATH).

Cases, each in a file of bench/faults/ that also runs alone with the same flags:
  1 graceful restart (SIGTERM, start again) with a job writing a numbered line    restart.py
    every 10 ms, local
  2 the same with kill -9 of hodeid (and once with hodeid down for 5 s)           restart.py
  3 both on the docker provider (--network none)                                  restart.py
  4 agent killed with kill -9 / frozen with SIGSTOP mid-job (local),              worker_fault.py
    docker kill / docker pause
  5 10,000 garbage connections in a row on the control socket (2,000 on the       garbage.py
    agent socket), then a job
  6 hodeid RSS while a job writes 1 GiB to stdout, without and with a `logs -f`   big_output.py
    follower; 6c: --max-log-bytes 1000 and a job whose output is under it
  7 10,000 queued jobs: hodeid RSS, `hodeictl list` latency, ListJobs round       queued.py
    trip, an 8 MiB reply
  8 kill -9 of hodeid while short jobs stream through it: does every job run      assignment_crash.py
    exactly once? 8b: the job kills hodeid as it starts (its Accept may be
    lost), then its agent is killed
What they share (the run, its report, a client that rides out restarts, Docker helpers) is in
bench/faults/case.py; the daemons come from hodei_testing.

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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "faults"))
import assignment_crash
import big_output
import case
import garbage
import queued
import restart
import worker_fault

if __name__ == "__main__":
    case.entry("bench/reliability.py", __doc__, [restart.cases, worker_fault.cases, garbage.cases,
                                                 big_output.cases, queued.cases, assignment_crash.cases])

#!/usr/bin/env python3
"""hodei on the Docker provider: cold start, warm dispatch, twenty at once; each next to its Docker floor.

    .venv/bin/python bench/docker_bench.py            # full run: about 2-3 minutes on a 2-core VM
    .venv/bin/python bench/docker_bench.py --quick    # fewer samples: about 1 minute

Starts its own hodeid daemons (``--provider docker --network none``) in a temp dir and measures, in
this order, each in a file of its own that also runs alone (same flags) and says how it measures:

2. bench/docker_warm.py: ``--min-idle 1``: submit returned -> ``date +%s.%N`` ran inside the container,
   ~100 times, next to the host's fork/exec floor and ``docker exec`` into a running container.
1. bench/docker_cold.py: zero workers: ``submit`` -> first log line received by a follower, next to a
   bare ``docker run --rm --network none --entrypoint /bin/true IMAGE``, the same container cycle
   through aiodocker and ``docker run ... python -c 'import hodei_agent...'``, interleaved.
3. bench/docker_twenty.py: twenty ``sleep 2`` jobs at once with ``--max-workers 20`` from zero
   workers, next to one such job from zero, the serial sum, and twenty parallel ``docker run``.

What they share (events stream, waits, tables, cleanup) is in bench/docker_common.py.
"""

from __future__ import annotations

import _venv  # noqa: F401  (first: the venv's python)
import aiodocker
import docker_cold
import docker_twenty
import docker_warm
from docker_common import Events, Results, run_alone

from hodei_testing import Harness


async def measure(h: Harness, docker: aiodocker.Docker, events: Events, res: Results, quick: bool) -> None:
    await docker_warm.measure(h, docker, events, res, quick)
    await docker_cold.measure(h, docker, events, res, quick)
    await docker_twenty.measure(h, docker, events, res, quick)


if __name__ == "__main__":
    run_alone("bench/docker_bench.py", __doc__, measure)

"""Under systemd, each local worker runs in a scope unit of its own, outside hodeid's service.

Agents left in hodeid's cgroup would be the service's processes: a stop or restart of hodeid.service
would log "left-over process ... unclean termination" for each one, and only KillMode=process would
keep systemd from killing them with hodeid. In a scope (`systemd-run --scope`, which registers its
own pid and then execs the agent, so the agent is still hodeid's child) they belong to no service,
outlive any restart of hodeid as before, and `systemctl status hodei-workers.slice` shows them all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil

log = logging.getLogger("hodeid")
SLICE = "hodei-workers.slice"


class Scopes:
    def __init__(self) -> None:
        self._usable: asyncio.Task[str | None] | None = None  # checked once, by the first worker's start

    async def prefix(self, worker_id: str) -> list[str]:
        """What to put before the agent's command line: systemd-run, when it works here; else nothing."""
        if self._usable is None:
            self._usable = asyncio.ensure_future(_usable())
        run = await self._usable
        if run is None:
            return []
        return [run, "--scope", "--quiet", "--collect", f"--slice={SLICE}",
                f"--unit=hodei-worker-{worker_id}", f"--description=hodei worker {worker_id}", "--"]


async def _usable() -> str | None:
    """systemd-run's path, if systemd runs this box and lets hodeid (root) make a scope; else None."""
    run = shutil.which("systemd-run")
    if os.geteuid() != 0 or run is None or not os.path.isdir("/run/systemd/system"):
        return None
    try:
        probe = await asyncio.create_subprocess_exec(
            run, "--scope", "--quiet", "--collect", f"--slice={SLICE}", f"--unit=hodei-probe-{secrets.token_hex(4)}",
            "--", "true", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(probe.communicate(), 30)
    except (OSError, TimeoutError) as e:
        err, probe = str(e).encode(), None
    if probe is not None and probe.returncode == 0:
        return run
    log.warning("local workers stay in hodeid's own cgroup: systemd-run --scope failed (%s)",
                err.decode(errors="replace").strip() or f"exit {probe and probe.returncode}")
    return None

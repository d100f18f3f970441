"""Hands queued jobs to idle workers the moment either appears, and asks the pool for more workers.

Event-driven: a submit, a worker becoming idle or a worker leaving wakes the loop; there is no
polling interval. Order: higher priority first, then first come first served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from hodeid.notify import Wakeup
from hodeid.store import DatabaseDamaged, StoredJob
from hodeid.worker import REMOTE, Worker
from hodeid.workers import Pool

if TYPE_CHECKING:
    from hodeid.lifecycle import Lifecycle

log = logging.getLogger("hodeid.scheduler")


class Scheduler:
    def __init__(self, jobs: Lifecycle, pool: Pool, wakeup: Wakeup) -> None:
        self.jobs = jobs
        self.pool = pool
        self.wakeup = wakeup  # set by whoever may have made work: a submit, a worker idle or gone, a retry due
        self.paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._no_retries_at = -1  # Lifecycle.retries_scheduled when no backoff was found pending

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            if self.paused:
                continue
            try:
                await self.dispatch()
                if self.pool.can_scale():  # at --max-workers with none idle, counting the queue would change nothing
                    limit = 2 * self.pool.config.max_workers + self.pool.config.min_idle + 64
                    self.pool.scale(await self.jobs.store.count_queued_by_image(limit))
                await self._wake_for_retries()
            except DatabaseDamaged:
                pass  # logged once by the store; nothing can be scheduled until it is restored
            except Exception:
                log.exception("scheduling pass failed; retrying on the next event")
                await asyncio.sleep(0.5)
                self.wakeup.set()

    async def _wake_for_retries(self) -> None:
        """Jobs waiting out a retry backoff need a wake-up when it ends: nothing else will come."""
        generation = self.jobs.retries_scheduled
        if generation == self._no_retries_at:
            return  # none pending since the last look: spare the query
        when = await self.jobs.store.next_run_after()
        if when is None:
            self._no_retries_at = generation
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.wakeup.later(when - time.time() + 0.01)

    def images_for(self, worker: Worker) -> tuple[str, ...]:
        """A worker runs jobs of its image; one of the default image (and a remote agent) also runs
        those that name none."""
        return ("", worker.image) if worker.image in ("", self.pool.default_image) else (worker.image,)

    async def take_for(self, worker: Worker) -> StoredJob | None:
        """The next job for a worker that is just finishing one (the lifecycle hands it over), if it may take one."""
        if self.paused or not worker.takes_work:
            return None
        return await self.jobs.take_next(worker, self.images_for(worker))

    async def dispatch(self) -> None:
        """Give each idle worker the next job it can run. Remote agents, which take only jobs that name
        no image, come last, so that the pool's own workers get those jobs first."""
        for worker in sorted(self.pool.idle(), key=lambda w: w.provider == REMOTE):
            if not worker.available:  # retired, lost or gone while an earlier one was served
                continue
            job = await self.jobs.take_next(worker, self.images_for(worker))
            if job is not None:
                await self.jobs.hand_over(job, worker)

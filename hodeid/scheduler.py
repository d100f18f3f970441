"""Hands queued jobs to idle workers the moment either appears, and asks the pool for more workers.

Event-driven: a submit, a worker becoming idle or a worker leaving wakes the loop; there is no
polling interval. Order: higher priority first, then first come first served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from hodei.protocol import Assign, Assignment, Cancel, WorkerState
from hodeid.jobs import Jobs
from hodeid.store import DatabaseDamaged, StoredJob
from hodeid.worker import REMOTE, Worker
from hodeid.workers import Pool

log = logging.getLogger("hodeid.scheduler")


def assignment(job: StoredJob, local: bool) -> Assignment:
    spec = job.spec
    env = dict(spec.client_env) if local and spec.client_env else {}
    env.update(spec.env)
    cwd = spec.cwd or (spec.client_cwd if local else "")
    return Assignment(
        job_id=job.info.id,
        command=spec.command,
        shell=spec.shell,
        env=env,
        replace_env=True,
        cwd=cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        # A root hodeid runs each local job as the user who submitted it.
        uid=job.owner_uid if local and job.owner_uid and os.geteuid() == 0 else None,
        umask=spec.umask,
        nofile=spec.nofile,
    )


class Scheduler:
    def __init__(self, jobs: Jobs, pool: Pool) -> None:
        self.jobs = jobs
        self.pool = pool
        self._wake = asyncio.Event()
        self.paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._no_retries_at = -1  # Jobs.retries_scheduled when no backoff was found pending
        jobs.on_queued = self.wake
        pool.on_idle = self.wake

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
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
                self.wake()

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
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, when - time.time()) + 0.01, self.wake)

    def images_for(self, worker: Worker) -> tuple[str, ...]:
        """A worker runs jobs of its image; one of the default image (and a remote agent) also runs
        those that name none."""
        return ("", worker.image) if worker.image in ("", self.pool.default_image) else (worker.image,)

    async def take_for(self, worker: Worker) -> StoredJob | None:
        """The next job for a worker that is just finishing one (the caller assigns it), if it may take one."""
        if self.paused or not worker.takes_work:
            return None
        return await self.jobs.take_next(worker.id, self.images_for(worker))

    async def dispatch(self) -> None:
        """Give each idle worker the next job it can run. Remote agents, which take only jobs that name
        no image, come last, so that the pool's own workers get those jobs first."""
        for worker in sorted(self.pool.idle(), key=lambda w: w.provider == REMOTE):
            if not worker.available:  # retired, lost or gone while an earlier one was served
                continue
            job = await self.jobs.take_next(worker.id, self.images_for(worker))
            if job is not None:
                await self.assign(job, worker)

    async def assign(self, job: StoredJob, worker: Worker) -> None:
        job_id = job.info.id
        if not worker.available or not worker.send(Assign(job=assignment(job, local=worker.provider == "local"))):
            await self.jobs.requeue(job_id, "the worker went away before taking the job")
            return
        worker.hold(job)
        await self.pool.set_state(worker, WorkerState.BUSY)
        if job_id in self.jobs.cancel_reasons:  # cancelled while it was being taken: the agent stops it
            worker.send(Cancel(job_id=job_id, grace=job.spec.grace, reason=self.jobs.cancel_reasons[job_id]))

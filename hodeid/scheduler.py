"""Hands queued jobs to idle workers the moment either appears, and asks the pool for more workers.

Event-driven: a submit, a worker becoming idle or a worker leaving wakes the loop; there is no
polling interval. Order: higher priority first, then first come first served.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from hodei.protocol import Assign, Assignment, JobState, WorkerState
from hodeid.jobs import Jobs
from hodeid.store import StoredJob
from hodeid.worker import Worker
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
        replace_env=local and bool(spec.client_env),
        cwd=cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        # A root hodeid runs each local job as the user who submitted it.
        uid=job.owner_uid if local and job.owner_uid and os.geteuid() == 0 else None,
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
                limit = 2 * self.pool.config.max_workers + self.pool.config.min_idle + 64
                self.pool.scale(await self.jobs.store.count_queued_by_image(limit))
                await self._wake_for_retries()
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

    async def dispatch(self) -> None:
        idle = self.pool.idle()
        if not idle:
            return
        default = self.pool.default_image
        by_image: dict[str, list[Worker]] = {}
        for worker in idle:
            by_image.setdefault(worker.image, []).append(worker)
        for job in await self.jobs.store.queued(len(idle) + 16):
            free = by_image.get(job.spec.image or default) or (None if job.spec.image else by_image.get(""))
            if not free:  # ("" is the pool of remote agents that take jobs naming no image)
                continue
            worker = free.pop()
            await self.assign(job, worker)
            if not any(by_image.values()):
                break

    async def assign(self, job: StoredJob, worker: Worker) -> None:
        if not worker.available:  # retired, lost or gone while we read the queue
            self.wake()
            return
        moved = await self.jobs.try_move(job.info.id, (JobState.QUEUED,), JobState.ASSIGNED, worker_id=worker.id)
        if moved is None:
            return
        worker.job_id = job.info.id
        worker.job_pid = None
        worker.job_attempt = moved.info.attempt
        if not worker.send(Assign(job=assignment(moved, local=worker.provider == "local"))):
            worker.job_id = None
            await self.jobs.requeue(job.info.id, "the worker disconnected before taking the job")
            return
        await self.pool.set_state(worker, WorkerState.BUSY)

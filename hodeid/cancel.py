"""Cancelling a job for real: the agent signals the job's process group, and if the agent does not
answer in time the daemon kills the job's processes itself, so a cancelled job never keeps running."""

from __future__ import annotations

import asyncio
import logging

from hodei.protocol import Cancel, JobState
from hodeid.app import App
from hodeid.store import StoredJob

log = logging.getLogger("hodeid.cancel")
AGENT_SLACK = 5.0  # seconds past the grace before the daemon stops trusting the agent
ACTIVE = (JobState.ASSIGNED, JobState.RUNNING)


async def cancel(app: App, job_id: int, grace: float | None, reason: str) -> StoredJob:
    job = await app.jobs.get(job_id)
    if job.info.state is JobState.QUEUED:
        moved = await app.jobs.cancel_queued(job_id, reason)
        if moved is not None:
            return moved
        job = await app.jobs.get(job_id)  # it was assigned in the meantime
    if job.info.state not in ACTIVE:
        return job
    grace = job.spec.grace if grace is None else grace
    first = job_id not in app.jobs.cancel_reasons
    app.jobs.cancel_reasons[job_id] = reason
    worker = app.pool.workers.get(job.info.worker_id or "")
    if worker is not None:
        worker.send(Cancel(job_id=job_id, grace=grace, reason=reason))
    if first:
        app.tasks.spawn(_watchdog(app, job_id, grace, reason), name=f"cancel-watchdog-{job_id}")
    return job


async def _watchdog(app: App, job_id: int, grace: float, reason: str) -> None:
    try:
        await asyncio.wait_for(app.jobs.wait_final(job_id), grace + AGENT_SLACK)
        return
    except TimeoutError:
        pass
    job = await app.jobs.get(job_id)
    if job.info.state not in ACTIVE:
        return
    worker = app.pool.workers.get(job.info.worker_id or "")
    log.warning("the agent of job %s did not stop it within %.0fs; killing its worker", job_id, grace + AGENT_SLACK)
    if worker is not None:  # kill first, then say cancelled: never the other way round
        if worker.job_pid is not None and worker.provider == app.provider.name:  # never a remote host's pid here
            await app.provider.kill_job(worker.handle, worker.job_pid, worker.job_pid_start)
        worker.release()
        await app.pool.lose(worker, "it did not answer a cancel")
    await app.jobs.try_move(
        job_id, ACTIVE, JobState.CANCELLED, reason=f"{reason}; the agent did not answer, so its worker was killed"
    )

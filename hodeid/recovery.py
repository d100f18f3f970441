"""What hodeid does at start with what the last run left: workers to wait for, jobs lost, strays."""

from __future__ import annotations

import logging

from hodei.protocol import WorkerState
from hodeid.app import App
from hodeid.lifecycle import ACTIVE
from hodeid.worker import REMOTE, Worker
from hodeid.workers import ALLOWED_FROM, stored_from

log = logging.getLogger("hodeid.recovery")


async def recover(app: App) -> None:
    store, pool, provider = app.store, app.pool, app.provider
    known = await store.list_workers(live_only=True)
    handles = await store.worker_handles()
    active = await store.jobs_in(ACTIVE)
    by_worker = {job.info.worker_id: job for job in active}
    pool.remote_pools = {image for provider_name, _, _, image in handles.values() if provider_name == REMOTE}
    for info in known:
        provider_name, state, handle, _ = handles[info.id]
        if provider_name == REMOTE and info.id not in by_worker:
            continue  # registered remote agents come back when they connect
        if provider_name not in (provider.name, REMOTE) or state in (WorkerState.STARTING, WorkerState.STOPPING):
            await store.move_worker(info.id, stored_from(ALLOWED_FROM[WorkerState.GONE]), str(WorkerState.GONE))
            if provider_name == provider.name and handle:
                await provider.stop(handle, force=True)
            continue
        # A worker from the last run: give its agent the heartbeat timeout to reconnect.
        token_hash = await store.worker_token_hash(info.id) or ""
        worker = Worker(info.id, provider_name, info.image, token_hash)
        worker.handle = handle
        worker.node = info.node
        pool.adopt(worker, by_worker.get(info.id))
        log.info("waiting for worker %s (%s) to reconnect", info.id, worker.state)
    live = set(pool.workers)
    for job in active:
        if job.info.worker_id not in live:
            await app.jobs.lost(job.info.id, "hodeid restarted and the job's worker is gone")
    await pool.remove_strays()

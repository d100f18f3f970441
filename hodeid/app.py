"""The parts of a running hodeid, wired together once and handed to every connection handler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from hodeid.config import Config
from hodeid.lifecycle import Lifecycle
from hodeid.logstore import LogStore
from hodeid.notify import Notifier, Wakeup
from hodeid.providers.base import Provider
from hodeid.scheduler import Scheduler
from hodeid.store import Store
from hodeid.workers import Pool

log = logging.getLogger("hodeid")


@dataclass
class App:
    config: Config
    store: Store
    logs: LogStore
    changes: Notifier
    jobs: Lifecycle  # the one owner of every job's life
    pool: Pool
    scheduler: Scheduler
    provider: Provider

    @classmethod
    async def build(cls, config: Config, provider: Provider) -> App:
        changes = Notifier()
        logs = LogStore(config.log_dir, changes, config.max_log_bytes)
        top = logs.highest_job_id()
        store = await Store.open(config.db_path, logs_up_to=top)
        await keep_ids_above(store, logs, top)
        wakeup = Wakeup()
        pool = Pool(config, store, provider, wakeup)
        jobs = Lifecycle(store, logs, changes, pool, wakeup)
        scheduler = Scheduler(jobs, pool, wakeup)
        return cls(config, store, logs, changes, jobs, pool, scheduler, provider)


    @asynccontextmanager
    async def running(self) -> AsyncIterator[App]:
        """The parts' life. Their background tasks run inside; leaving ends the lifecycle's first, then
        the pool's (pending worker removals finish, within a bound), then closes the logs, the database
        and the provider in a shielded scope: not even a forced stop cuts the final writes short."""
        try:
            async with self.pool.running(), self.jobs.running():
                yield self
        finally:
            with anyio.CancelScope(shield=True):
                self.logs.close_all()
                await self.store.close()
                await self.provider.close()


async def keep_ids_above(store: Store, logs: LogStore, top: int) -> None:
    """No job id is handed out twice, even by a database recreated next to the logs of the old one."""
    known = await store.keep_job_ids_above(top)
    if known is not None:
        log.warning("the database knew jobs up to id %d, but %s holds logs of jobs up to id %d: new jobs get"
                    " ids from %d on", known, logs.dir, top, top + 1)

"""The parts of a running hodeid, wired together once and handed to every connection handler."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hodeid.config import Config
from hodeid.lifecycle import Lifecycle
from hodeid.logstore import LogStore
from hodeid.notify import Notifier, Wakeup
from hodeid.providers.base import Provider
from hodeid.scheduler import Scheduler
from hodeid.store import Store
from hodeid.tasks import Tasks
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
    tasks: Tasks

    @classmethod
    async def build(cls, config: Config, provider: Provider) -> App:
        changes = Notifier()
        logs = LogStore(config.log_dir, changes, config.max_log_bytes)
        top = logs.highest_job_id()
        store = await Store.open(config.db_path, logs_up_to=top)
        await keep_ids_above(store, logs, top)
        tasks = Tasks()
        wakeup = Wakeup()
        pool = Pool(config, store, provider, tasks, wakeup)
        jobs = Lifecycle(store, logs, changes, pool, wakeup, tasks)
        scheduler = Scheduler(jobs, pool, wakeup)
        return cls(config, store, logs, changes, jobs, pool, scheduler, provider, tasks)


async def keep_ids_above(store: Store, logs: LogStore, top: int) -> None:
    """No job id is handed out twice, even by a database recreated next to the logs of the old one."""
    known = await store.keep_job_ids_above(top)
    if known is not None:
        log.warning("the database knew jobs up to id %d, but %s holds logs of jobs up to id %d: new jobs get"
                    " ids from %d on", known, logs.dir, top, top + 1)

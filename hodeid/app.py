"""The parts of a running hodeid, wired together once and handed to every connection handler."""

from __future__ import annotations

from dataclasses import dataclass

from hodeid.config import Config
from hodeid.jobs import Jobs
from hodeid.logstore import LogStore
from hodeid.notify import Notifier
from hodeid.providers.base import Provider
from hodeid.scheduler import Scheduler
from hodeid.store import Store
from hodeid.tasks import Tasks
from hodeid.workers import Pool


@dataclass
class App:
    config: Config
    store: Store
    logs: LogStore
    changes: Notifier
    jobs: Jobs
    pool: Pool
    scheduler: Scheduler
    provider: Provider
    tasks: Tasks

    @classmethod
    async def build(cls, config: Config, provider: Provider) -> App:
        store = await Store.open(config.db_path)
        changes = Notifier()
        logs = LogStore(config.log_dir, changes, config.max_log_bytes)
        jobs = Jobs(store, logs, changes)
        tasks = Tasks()
        pool = Pool(config, store, provider, jobs, tasks)
        scheduler = Scheduler(jobs, pool)
        return cls(config, store, logs, changes, jobs, pool, scheduler, provider, tasks)

"""The lifecycle owner, the pool and the scheduler in one process: real SQLite and log files, a fake
provider and fake agent links (hodeid.testing). The same behaviours are also covered end to end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from hodei.protocol import Ack, Assign, Cancel, Exited, JobSpec, JobState, Ready, WorkerState
from hodeid.config import Config
from hodeid.lifecycle import Lifecycle
from hodeid.logstore import LogStore
from hodeid.notify import Notifier, Wakeup
from hodeid.scheduler import Scheduler
from hodeid.store import Store
from hodeid.testing import FakeLink, FakeProvider
from hodeid.worker import Worker
from hodeid.workers import REMOVALS_BOUND, Pool


@dataclass
class Parts:
    store: Store
    provider: FakeProvider
    pool: Pool
    jobs: Lifecycle
    scheduler: Scheduler

    async def worker(self) -> tuple[Worker, FakeLink]:
        """A provisioned worker whose agent has registered, idle."""
        worker = await self.pool.provision("")
        assert worker is not None
        link = FakeLink()
        self.pool.attach(worker, link)  # type: ignore[arg-type]
        await self.jobs.reconnected(worker, Ready())
        return worker, link


@asynccontextmanager
async def parts(tmp: Path, removals_bound: float = REMOVALS_BOUND) -> AsyncIterator[Parts]:
    config = Config(state_dir=tmp, socket=tmp / "s.sock")
    store = await Store.open(config.db_path)
    changes = Notifier()
    logs = LogStore(config.log_dir, changes, config.max_log_bytes)
    wakeup, provider = Wakeup(), FakeProvider()
    pool = Pool(config, store, provider, wakeup)  # type: ignore[arg-type]
    jobs = Lifecycle(store, logs, changes, pool, wakeup)
    try:
        async with pool.running(removals_bound), jobs.running():
            yield Parts(store, provider, pool, jobs, Scheduler(jobs, pool, wakeup))
    finally:
        logs.close_all()
        await store.close()


def run(tmp_path: Path, body: Callable[[Parts], Awaitable[None]]) -> None:
    async def main() -> None:
        async with parts(tmp_path) as p:
            await body(p)

    asyncio.run(main())


def spec(command: str, **kw: object) -> JobSpec:
    return JobSpec(command=[command], shell=True, **kw)  # type: ignore[arg-type]


def exited(job_id: int, code: int = 0, outcome: str = "", reason: str = "") -> Exited:
    return Exited(job_id=job_id, exit_code=code, signal=None, last_seq=0, finished_at=time.time(), outcome=outcome,
                  reason=reason)


def test_dispatch_then_exit_acks_and_hands_over_the_next_job(tmp_path: Path) -> None:
    """An idle worker gets the highest-priority job; when it ends, the end is acknowledged and the
    worker gets the next job at once."""
    async def body(p: Parts) -> None:
        low = await p.jobs.submit(spec("low"), None)
        high = await p.jobs.submit(spec("high", priority=5), None)
        worker, link = await p.worker()
        await p.scheduler.dispatch()
        assert [m.job.job_id for m in link.of(Assign)] == [high.info.id]
        assert worker.state is WorkerState.BUSY
        await p.jobs.exited(worker, exited(high.info.id), p.scheduler.take_for)
        assert (await p.jobs.get(high.info.id)).info.state is JobState.SUCCEEDED
        assert [(a.job_id, a.done) for a in link.of(Ack)] == [(high.info.id, True)]
        assert [m.job.job_id for m in link.of(Assign)] == [high.info.id, low.info.id]
        assert worker.state is WorkerState.BUSY and worker.job_id == low.info.id
    run(tmp_path, body)


def test_a_cancel_is_stored_and_a_requeue_honours_it(tmp_path: Path) -> None:
    """A cancel asked for while the job is assigned is stored and sent; if the agent then refuses the
    job, it is not queued again but ends cancelled with the reason given."""
    async def body(p: Parts) -> None:
        job = await p.jobs.submit(spec("x"), None)
        worker, link = await p.worker()
        await p.scheduler.dispatch()
        await p.jobs.cancel(job.info.id, 3.0, "not now")
        stored = await p.jobs.get(job.info.id)
        assert (stored.cancel_reason, stored.cancel_grace) == ("not now", 3.0)
        assert [(c.job_id, c.grace, c.reason) for c in link.of(Cancel)] == [(job.info.id, 3.0, "not now")]
        await p.jobs.rejected(worker, job.info.id, "busy")
        after = await p.jobs.get(job.info.id)
        assert (after.info.state, after.info.reason) == (JobState.CANCELLED, "not now")
    run(tmp_path, body)


def test_a_cancelled_job_is_never_retried(tmp_path: Path) -> None:
    """A job with retries left whose cancel was asked for ends when its worker is lost; it is not retried."""
    async def body(p: Parts) -> None:
        job = await p.jobs.submit(spec("x", retries=3), None)
        worker, _ = await p.worker()
        await p.scheduler.dispatch()
        await p.jobs.cancel(job.info.id, None, "stop it")
        await p.jobs.worker_lost(worker, "it vanished")
        after = await p.jobs.get(job.info.id)
        assert after.info.state is JobState.LOST and after.info.attempt == 1
    run(tmp_path, body)


def test_supervision_never_loses_a_worker_removed_while_it_looked(tmp_path: Path) -> None:
    """The pool checks each worker again after waiting on the engine: a worker that left meanwhile is
    not marked lost (a second time) and is removed once."""
    async def body(p: Parts) -> None:
        worker, _ = await p.worker()
        p.provider.gone[worker.handle] = "the container is gone"
        p.provider.exited_gate = asyncio.Event()
        check = asyncio.ensure_future(p.jobs.supervise())
        await asyncio.sleep(0)  # the pass is now waiting on the engine for this worker
        await p.pool.retire(worker, "idle")
        await p.pool.detach(worker, worker.writer)  # type: ignore[arg-type]  # it said goodbye and left
        assert worker.state is WorkerState.GONE
        p.provider.exited_gate.set()
        await check
        assert worker.state is WorkerState.GONE
        assert p.provider.stopped == [(worker.handle, False)]
        assert await p.pool.move(worker, WorkerState.LOST) is False  # and gone is final
    run(tmp_path, body)

"""The one owner of a job's life.

Every change of a job's state goes through ``Lifecycle``, and only here are its consequences decided:
the log closed and sized, waiters woken, a retry or the final state, the worker freed or retired, the
scheduler told, a cancel delivered and, if the agent does not answer, enforced. The scheduler, agent
sessions, control requests, worker supervision and recovery ask it; it tells the others what happened
by direct calls (the pool, the worker's connection) and by setting the scheduler's ``Wakeup``.

A cancel request is data, not memory: it is stored with the job (``cancel_reason``), so a cancel that
could not be delivered yet survives a restart of hodeid and reaches the agent when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from hodei.errors import InvalidTransition
from hodei.pools import pool_key
from hodei.protocol import FINAL_STATES, Ack, Assign, Cancel, Exited, JobSpec, JobState, Ready, WorkerState
from hodeid.assignment import assignment
from hodeid.background import Background
from hodeid.jobs import (
    MAX_BATCH,
    MAX_BATCH_BYTES,
    InvalidSpec,
    check_found,
    no_job,
    outcome_state,
    spec_size,
    validate,
)
from hodeid.logstore import LogStore
from hodeid.mounts import docker_pool
from hodeid.notify import Notifier, Wakeup
from hodeid.store import Store, StoredJob
from hodeid.worker import Worker
from hodeid.workers import Pool

log = logging.getLogger("hodeid.lifecycle")

Q, A, R = JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING
ACTIVE = (A, R)
W = WorkerState
MAX_VANISHED = 3  # requeues of a job whose worker reconnects without it, before it is lost
RETRY_BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
RETRY_BACKOFF_MAX = 60.0
AGENT_SLACK = 5.0  # seconds past a cancel's grace before hodeid stops trusting the agent


class Lifecycle:
    def __init__(self, store: Store, logs: LogStore, changes: Notifier, pool: Pool, wakeup: Wakeup) -> None:
        self.store = store
        self.logs = logs
        self.changes = changes  # output or state: what log followers wait on
        self.finals = Notifier()  # a job reached its final state: what waiters wait on
        self.pool = pool
        self.wakeup = wakeup  # the scheduler's: set when there may be work to hand out
        self.tasks = Background("the job lifecycle")  # cancel watchdogs; entered by ``running``
        self._vanished: dict[int, int] = {}  # job id -> times its worker came back without it
        self._watched: set[int] = set()  # jobs whose cancel is being enforced
        self.retries_scheduled = 0  # counts requeues with a backoff, so the scheduler knows when to look
        self.moves = 0  # state changes of any job so far: a follower that saw none since its last read skips the next

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Lifecycle]:
        """The lifecycle's life: cancel watchdogs run inside; leaving cancels them (a job whose cancel
        was not enforced keeps its stored request, delivered again when its agent reconnects)."""
        async with self.tasks:
            yield self
            self.tasks.cancel()

    # ---- reading --------------------------------------------------------------------------------

    async def get(self, job_id: int) -> StoredJob:
        job = await self.store.get_job(job_id)
        if job is None:
            raise no_job(job_id)
        return job

    async def get_many(self, job_ids: list[int]) -> dict[int, StoredJob]:
        jobs = await self.store.get_jobs(job_ids)
        check_found(job_ids, jobs)
        return jobs

    async def wait_final(self, job_id: int) -> StoredJob:
        return (await self.wait_all([job_id]))[job_id]

    async def wait_all(self, job_ids: list[int]) -> dict[int, StoredJob]:
        """Wait until every one of these jobs has reached a final state; return them all.

        A handful of batched reads whatever the number of jobs: one to find those still going, one
        after taking their wake-ups (so an end in between is not missed), one for the answer.
        """
        states = await self.store.states(job_ids)
        check_found(job_ids, states)
        pending = [i for i, state in states.items() if state not in FINAL_STATES]
        if pending:
            ends = {i: self.finals.event(i) for i in pending}
            now = await self.store.states(pending)
            for job_id in pending:
                if now[job_id] not in FINAL_STATES:
                    await ends[job_id].wait()
        return await self.get_many(job_ids)

    # ---- queueing -------------------------------------------------------------------------------

    async def _pool_of(self, spec: JobSpec, owner_uid: int | None) -> str:
        """The pool a job waits for: on the docker provider, one of the submitter's that mounts its directories
        (unless its --image names a pool of remote agents, which run it as they always did)."""
        remote = bool(spec.image) and spec.image in self.pool.remote_pools
        if self.pool.provider.name == "docker" and owner_uid is not None and not remote:
            return await docker_pool(spec, owner_uid, self.pool.default_image)
        if spec.volumes and remote:
            raise InvalidSpec(f"--volume needs a worker hodeid starts in Docker; pool {spec.image} is remote agents")
        if spec.volumes:
            raise InvalidSpec(f"--volume needs hodeid --provider docker; this hodeid's is {self.pool.provider.name}")
        return pool_key(spec.image, spec.constraints)

    async def submit(self, spec: JobSpec, owner_uid: int | None) -> StoredJob:
        validate(spec)
        job = await self.store.insert_job(spec, owner_uid, await self._pool_of(spec, owner_uid))
        self.logs.start_empty(job.info.id)
        self.wakeup.set()
        return job

    async def submit_many(self, specs: list[JobSpec], owner_uid: int | None) -> list[StoredJob]:
        if not 0 < len(specs) <= MAX_BATCH:
            raise InvalidSpec(f"a batch holds 1 to {MAX_BATCH} jobs, not {len(specs)}")
        for n, spec in enumerate(specs, 1):
            try:
                validate(spec)
            except InvalidSpec as e:
                raise InvalidSpec(f"job {n} of {len(specs)}: {e}; none of them was queued") from None
        size = sum(spec_size(spec) for spec in specs)
        if size > MAX_BATCH_BYTES:  # the reply repeats each command: it must fit in a frame too
            raise InvalidSpec(f"the batch's commands and environments take {size} bytes; at most"
                              f" {MAX_BATCH_BYTES} fit in one request; none of them was queued")
        pools = []
        for n, spec in enumerate(specs, 1):
            try:
                pools.append(await self._pool_of(spec, owner_uid))
            except InvalidSpec as e:
                raise InvalidSpec(f"job {n} of {len(specs)}: {e}; none of them was queued") from None
        jobs = await self.store.insert_jobs(specs, owner_uid, pools)
        for job in jobs:
            self.logs.start_empty(job.info.id)
        self.wakeup.set()
        return jobs

    # ---- the guarded change ---------------------------------------------------------------------

    async def _move(self, job_id: int, allowed: Iterable[JobState], to: JobState, **fields: Any) -> StoredJob | None:
        """The one way a job changes state: a guarded update, then whoever watches it is woken. None
        (logged) when the job was not in an allowed state. A final state without a ``finished_at``
        (lost, or ended by hodeid itself) ends now, by hodeid's clock."""
        if to in FINAL_STATES:
            fields.setdefault("finished_at", time.time())
        try:
            job = await self.store.transition(job_id, allowed, to, **fields)
        except InvalidTransition as e:
            log.info("%s", e)
            return None
        self._changed(job_id, to)
        return job

    def _changed(self, job_id: int, to: JobState) -> None:
        self.moves += 1
        if to in FINAL_STATES:
            self._vanished.pop(job_id, None)
            self.finals.notify(job_id)
        elif to is Q:
            self.wakeup.set()
        self.changes.notify(job_id)

    # ---- handing jobs to workers ----------------------------------------------------------------

    async def take_next(self, worker: Worker, images: tuple[str, ...]) -> StoredJob | None:
        """The next queued job this worker can run, now assigned to it; None when there is none."""
        job = await self.store.take_next(worker.id, images)
        if job is not None:
            self._changed(job.info.id, A)
        return job

    async def hand_over(self, job: StoredJob, worker: Worker) -> None:
        """Send an assigned job to its worker; back to the queue if the worker is gone meanwhile."""
        job_as_told = assignment(job, worker.provider == "local", worker.image)
        if not worker.available or not worker.send(Assign(job=job_as_told)):
            await self.requeue(job.info.id, "the worker went away before taking the job")
            return
        worker.hold(job)
        await self.pool.move(worker, W.BUSY)
        self._deliver_cancel(job, worker)  # asked for while it was being taken: the agent stops it at once

    async def requeue(self, job_id: int, reason: str) -> StoredJob | None:
        """Back to the queue from an assignment the worker never started; cancelled if that was asked."""
        requeued = await self._move(job_id, (A,), Q, unless_cancel_requested=True, worker_id=None, reason=reason)
        if requeued is None:
            return await self._move(job_id, (A,), JobState.CANCELLED, cancel_requested=True,
                                    reason_from_cancel=True)
        return requeued

    # ---- what an agent reports ------------------------------------------------------------------

    async def started(self, worker: Worker, job_id: int, started_at: float, pid: int | None, pid_start: str) -> None:
        worker.job_pid, worker.job_pid_start = pid, pid_start
        await self._move(job_id, (A,), R, started_at=started_at, pid=pid, pid_start=pid_start)

    async def rejected(self, worker: Worker, job_id: int, reason: str) -> None:
        worker.release()
        await self.requeue(job_id, f"worker {worker.id} refused it: {reason}")
        await self.pool.move(worker, W.IDLE)

    async def reconnected(self, worker: Worker, ready: Ready) -> None:
        """An agent said Ready (first registration, or after a reconnect) holding ``ready.job_id``."""
        job_id, held = ready.job_id, worker.job_id
        log.info("worker %s %s%s", worker.id, "registered" if worker.state is W.STARTING else "reconnected",
                 f" holding job {job_id}" if job_id is not None else "")
        if worker.state is W.STARTING:
            self.pool.registered(worker)
        worker.ready = True
        if held is not None and held != job_id:  # the assignment never reached the agent, or its process is gone
            worker.release()
            await self._vanished_job(held, f"worker {worker.id} reconnected without the job")
        if job_id is None:
            await self.pool.move(worker, W.IDLE)
            self.wakeup.set()
            return
        job = await self.store.get_job(job_id)
        if job is None or job.info.worker_id != worker.id or job.info.state not in ACTIVE:
            # Its job was given up on (lost, retried elsewhere, cancelled): stop it, and take nothing it
            # reports as the job's, which may be running on another worker by now.
            log.warning("worker %s holds job %s, which is not its to run; stopping it", worker.id, job_id)
            worker.foreign_job = job_id
            worker.send(Cancel(job_id=job_id, grace=0, reason="the job is no longer assigned to this worker"))
            await self.pool.move(worker, W.BUSY)
            return
        worker.hold(job)
        if ready.pid:
            worker.job_pid, worker.job_pid_start = ready.pid, ready.pid_start
        await self.pool.move(worker, W.BUSY)
        # Tell the agent what is stored, so it resends the rest and nothing twice.
        worker.send(Ack(job_id=job_id, seq=self.logs.last_seq(job_id, job.info.attempt)))
        if job.info.state is A and (ready.running or ready.started_at):
            await self._move(job_id, (A,), R, started_at=ready.started_at or time.time(), pid=worker.job_pid,
                             pid_start=worker.job_pid_start)
        self._deliver_cancel(job, worker)  # a cancel stored while it was away (or before hodeid restarted)

    async def exited(self, worker: Worker, msg: Exited,
                     take_next: Callable[[Worker], Awaitable[StoredJob | None]]) -> None:
        """The worker's job ended as its agent reports: store the end, acknowledge it, and give the
        worker its next job (``take_next``: the scheduler's pick for it) or retire it."""
        if msg.job_id == worker.foreign_job:  # it has stopped the job it should not have had
            worker.foreign_job = None
            worker.send(Ack(job_id=msg.job_id, seq=msg.last_seq, done=True))
            await self.pool.move(worker, W.IDLE)
            return
        job = worker.job  # the attempt as assigned (or recovered): its spec and attempt are what finishing needs
        assert job is not None and job.info.id == msg.job_id
        start = ({"started_at": msg.started_at, "pid": msg.pid, "pid_start": msg.pid_start}
                 if msg.started_at is not None else {})  # no Accept came
        state, default_reason = outcome_state(msg.exit_code, msg.signal, msg.outcome)
        limit = self.pool.config.max_jobs_per_worker
        last = bool(limit) and worker.jobs_run + 1 >= limit
        # Finish this job and take the worker's next one together: the two statements run back to back
        # in the database thread instead of one round trip after the other.
        finished: StoredJob | BaseException | None
        taken: StoredJob | BaseException | None
        finished, taken = await asyncio.gather(
            self._end(job, state, msg.reason or default_reason, exit_code=msg.exit_code, signal=msg.signal,
                      finished_at=msg.finished_at, **start),
            _nothing() if last else take_next(worker),
            return_exceptions=True,
        )
        if isinstance(taken, BaseException):
            log.error("worker %s: taking its next job failed: %r", worker.id, taken)
            taken = None
        stored = not isinstance(finished, BaseException)
        if stored:
            worker.send(Ack(job_id=msg.job_id, seq=msg.last_seq, done=True))  # only now that the end is stored
        if not stored or worker.state is not W.BUSY or worker.job_id != msg.job_id:
            # Not stored (no Ack: the agent keeps the result), or the worker was lost or retired meanwhile.
            if taken is not None:
                await self.requeue(taken.info.id, f"worker {worker.id} could not take it after its last job")
            if isinstance(finished, BaseException):
                raise finished
            return
        worker.release()
        worker.jobs_run += 1
        await self.pool.move(worker, W.IDLE)
        if last:
            await self.pool.retire(worker, f"ran its {limit} job(s)")
        if taken is not None:
            await self.hand_over(taken, worker)

    # ---- ends hodeid decides --------------------------------------------------------------------

    async def worker_lost(self, worker: Worker, reason: str) -> None:
        """The worker is gone without saying so: its job's processes are stopped (when they can be
        proved to be its), the worker forgotten, and the job lost (or retried)."""
        if self.pool.workers.get(worker.id) is not worker or worker.state in (W.GONE, W.LOST):
            return  # someone got there first: lose a worker once
        log.warning("worker %s lost: %s", worker.id, reason)
        job_id = worker.job_id
        await self.pool.lose(worker)
        if job_id is not None:
            await self.lost(job_id, f"worker {worker.id} lost: {reason}")

    async def lost(self, job_id: int, reason: str) -> StoredJob | None:
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        return await self._end(job, JobState.LOST, reason)

    async def _vanished_job(self, job_id: int, reason: str) -> StoredJob | None:
        """Its worker came back without it: the assignment may never have arrived, so it goes back to the
        queue; but a job that keeps vanishing (one that brings its agent down at once) ends lost."""
        times = self._vanished[job_id] = self._vanished.get(job_id, 0) + 1
        if times <= MAX_VANISHED:
            requeued = await self.requeue(job_id, reason)
            if requeued is not None:
                return requeued
        return await self.lost(job_id, reason if times <= MAX_VANISHED else f"{reason}, {times} times")

    async def _end(self, job: StoredJob, state: JobState, reason: str, **fields: Any) -> StoredJob | None:
        """Finish an attempt: its log closed and sized, then the job's final state, or back to the queue
        when it has retries left and no cancel was asked for."""
        info, spec = job.info, job.spec
        log_bytes, truncated = self.logs.close(info.id, info.attempt)
        if truncated and not reason:
            reason = f"output truncated past {self.logs.max_bytes} bytes (--max-log-bytes)"
        retry = state is JobState.LOST or (state is JobState.FAILED and spec.retry_on_failure)
        if retry and info.attempt <= spec.retries:
            delay = min(RETRY_BACKOFF * 2 ** (info.attempt - 1), RETRY_BACKOFF_MAX)
            self.logs.start_empty(info.id, info.attempt + 1)
            requeued = await self._move(
                info.id, ACTIVE, Q, unless_cancel_requested=True, attempt=info.attempt + 1, worker_id=None, pid=None,
                pid_start="", started_at=None, exit_code=None, signal=None, log_bytes=0, run_after=time.time() + delay,
                reason=f"attempt {info.attempt} {state}: {reason}; retry {info.attempt}/{spec.retries}",
            )
            if requeued is not None:
                log.info("job %s attempt %d %s (%s); retrying in %gs", info.id, info.attempt, state, reason, delay)
                self.retries_scheduled += 1  # after the commit, before the scheduler runs again: it will look
                return requeued
        if state is JobState.CANCELLED:  # the reason the user gave, as stored with the request
            fields["reason_from_cancel"] = True
        return await self._move(info.id, ACTIVE, state, reason=reason, log_bytes=log_bytes, **fields)

    # ---- cancel ---------------------------------------------------------------------------------

    async def cancel(self, job_id: int, grace: float | None, reason: str) -> StoredJob:
        """Cancel for real: a queued job ends at once; a running one is asked to stop (the request is
        stored first), SIGTERM then SIGKILL after the grace; if its agent does not answer, hodeid kills
        the job's processes itself before it calls the job cancelled."""
        moved = await self._move(job_id, (Q,), JobState.CANCELLED, reason=reason)
        if moved is not None:
            return moved
        job = await self.store.request_cancel(job_id, reason, grace)
        if job is None:  # not running (any more), or unknown: as it is
            return await self.get(job_id)
        worker = self.pool.workers.get(job.info.worker_id or "")
        if worker is not None and worker.job_id == job_id:
            worker.hold(job)  # the worker's copy carries the request now
            self._deliver_cancel(job, worker)
        return job

    def _deliver_cancel(self, job: StoredJob, worker: Worker) -> None:
        """Send a stored cancel request to the worker's agent, and make sure it is obeyed."""
        if job.cancel_reason is None:
            return
        grace = job.spec.grace if job.cancel_grace is None else job.cancel_grace
        worker.send(Cancel(job_id=job.info.id, grace=grace, reason=job.cancel_reason))
        if job.info.id not in self._watched:
            self._watched.add(job.info.id)
            self.tasks.spawn(f"cancel-watchdog-{job.info.id}", self._enforce_cancel, job.info.id, grace)

    async def _enforce_cancel(self, job_id: int, grace: float) -> None:
        try:
            await asyncio.wait_for(self.wait_final(job_id), grace + AGENT_SLACK)
            return
        except TimeoutError:
            pass
        finally:
            self._watched.discard(job_id)
        job = await self.get(job_id)
        if job.info.state not in ACTIVE:
            return
        log.warning("the agent of job %s did not stop it within %.0fs; killing its worker", job_id, grace + AGENT_SLACK)
        worker = self.pool.workers.get(job.info.worker_id or "")
        if worker is not None and worker.job_id == job_id:  # kill first, then say cancelled: never the other way
            await self.pool.lose(worker)
        await self._end(job, JobState.CANCELLED, "",
                        reason_suffix="; the agent did not answer, so its worker was killed")

    async def remove_agent(self, worker_id: str) -> bool:
        """Revoke a remote agent's registration; a job it runs is stopped and lost."""
        registered, worker = await self.pool.unregister_remote(worker_id)
        if not registered:
            return False
        if worker is not None and worker.job_id is not None:
            job_id = worker.job_id
            worker.send(Cancel(job_id=job_id, grace=0, reason="the agent's registration was removed"))
            await self.pool.lose(worker)
            await self.lost(job_id, f"worker {worker_id} lost: its registration was removed")
        return True

    # ---- supervision ----------------------------------------------------------------------------

    async def supervise(self) -> None:
        """One pass: the pool says which workers are gone or silent; their jobs' ends are decided here."""
        for worker, reason in await self.pool.check():
            await self.worker_lost(worker, reason)



async def _nothing() -> None:
    return None


__all__ = ["ACTIVE", "Lifecycle"]

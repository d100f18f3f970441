"""Job lifecycle: submit, start, finish, cancel. Every state change goes through ``Jobs.move``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable
from typing import Any

from hodei.errors import HodeiError, InvalidTransition
from hodei.protocol import FINAL_STATES, JobSpec, JobState
from hodeid.logstore import LogStore
from hodeid.notify import Notifier
from hodeid.store import Store, StoredJob

log = logging.getLogger("hodeid.jobs")

Q, A, R = JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING
ACTIVE = (A, R)


MAX_SPEC_BYTES = 1 << 20  # command, env and labels together: replies stay far under the frame limit
MAX_BATCH = 1000  # jobs in one SubmitMany: one INSERT (6 parameters a job, SQLite allows 32,766)
MAX_BATCH_BYTES = 4 << 20  # of spec_size in one SubmitMany: its reply, which repeats the commands, fits a frame
MAX_VANISHED = 3  # requeues of a job whose worker reconnects without it, before it is lost
RETRY_BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
RETRY_BACKOFF_MAX = 60.0


class JobNotFound(HodeiError):
    """No such job: `hodeictl list` shows the jobs there are."""


def no_job(job_id: int) -> JobNotFound:
    return JobNotFound(f"no job {job_id}: `hodeictl list` shows the jobs there are")


def check_found(job_ids: Iterable[int], found: Container[int]) -> None:
    """Raise JobNotFound for the first of these ids not found (among them, or to this caller)."""
    missing = next((i for i in job_ids if i not in found), None)
    if missing is not None:
        raise no_job(missing)


class InvalidSpec(HodeiError):
    """The job is not valid."""


def spec_size(spec: JobSpec) -> int:
    """The bytes of a job's command, environment and labels."""
    return sum(map(len, spec.command)) + sum(len(k) + len(v) for d in (spec.env, spec.labels, spec.client_env)
                                             for k, v in d.items())


def validate(spec: JobSpec) -> None:
    if not spec.command or (spec.shell and not spec.command[0].strip()):
        raise InvalidSpec("the command is empty: give a shell line, or an argv after --")
    if spec.shell and len(spec.command) != 1:
        raise InvalidSpec("a shell job takes exactly one command line")
    if any("\0" in part for part in spec.command):
        raise InvalidSpec("the command contains a NUL byte, which no process can receive")
    if spec.timeout is not None and not spec.timeout > 0:
        raise InvalidSpec("--timeout must be a positive number of seconds")
    if spec.retries < 0:
        raise InvalidSpec("--retries must be zero or more")
    if spec.umask is not None and not 0 <= spec.umask <= 0o777:
        raise InvalidSpec(f"umask {spec.umask:o} is not a file mode mask (0 to 777, octal)")
    if spec.nofile is not None and not 0 < spec.nofile < 2**63:
        raise InvalidSpec(f"an open-file limit of {spec.nofile} is not a positive number")
    if not spec.grace >= 0:
        raise InvalidSpec("--grace must be zero or a positive number of seconds")
    size = spec_size(spec)
    if size > MAX_SPEC_BYTES:
        raise InvalidSpec(f"the command and its environment take {size} bytes; at most {MAX_SPEC_BYTES} are accepted")
    for key in spec.env:
        if not key or "=" in key or "\0" in key:
            raise InvalidSpec(f"environment variable name {key!r} is not valid")


def outcome_state(exit_code: int | None, signal: int | None, outcome: str) -> tuple[JobState, str]:
    """The final state and reason of a job from what its agent reported."""
    if outcome == "cancelled":
        return JobState.CANCELLED, ""
    if outcome == "timed_out":
        return JobState.TIMED_OUT, ""
    if outcome == "spawn_failed":
        return JobState.FAILED, ""
    if signal is not None:
        return JobState.FAILED, f"killed by signal {signal}"
    if exit_code == 0:
        return JobState.SUCCEEDED, ""
    return JobState.FAILED, f"exited with code {exit_code}"


class Jobs:
    def __init__(self, store: Store, logs: LogStore, changes: Notifier) -> None:
        self.store = store
        self.logs = logs
        self.changes = changes  # output or state: what log followers wait on
        self.finals = Notifier()  # a job reached its final state: what waiters wait on
        self.on_queued: Callable[[], None] = lambda: None  # the scheduler's wake-up
        self.cancel_reasons: dict[int, str] = {}
        self._vanished: dict[int, int] = {}  # job id -> times its worker came back without it
        self.retries_scheduled = 0  # counts requeues with a backoff, so the scheduler knows when to look

    async def submit(self, spec: JobSpec, owner_uid: int | None) -> StoredJob:
        validate(spec)
        job = await self.store.insert_job(spec, owner_uid)
        self.logs.start_empty(job.info.id)
        self.on_queued()
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
        jobs = await self.store.insert_jobs(specs, owner_uid)
        for job in jobs:
            self.logs.start_empty(job.info.id)
        self.on_queued()
        return jobs

    async def get(self, job_id: int) -> StoredJob:
        job = await self.store.get_job(job_id)
        if job is None:
            raise no_job(job_id)
        return job

    async def get_many(self, job_ids: list[int]) -> dict[int, StoredJob]:
        jobs = await self.store.get_jobs(job_ids)
        check_found(job_ids, jobs)
        return jobs

    async def take_next(self, worker_id: str, images: tuple[str, ...]) -> StoredJob | None:
        """The next queued job this worker can run, now assigned to it; None when there is none."""
        job = await self.store.take_next(worker_id, images)
        if job is not None:
            self._changed(job.info.id, A)
        return job

    async def move(self, job_id: int, allowed: Iterable[JobState], to: JobState, **fields: Any) -> StoredJob:
        """The one way a job changes state: a guarded update, then wake whoever watches the job. A final
        state without a ``finished_at`` (lost, or cancelled by hodeid itself) ends now, by hodeid's clock."""
        if to in FINAL_STATES:
            fields.setdefault("finished_at", time.time())
        job = await self.store.transition(job_id, allowed, to, **fields)
        self._changed(job_id, to)
        return job

    def _changed(self, job_id: int, to: JobState) -> None:
        if to in FINAL_STATES:
            self.cancel_reasons.pop(job_id, None)
            self._vanished.pop(job_id, None)
            self.finals.notify(job_id)
        elif to is Q:
            self.on_queued()
        self.changes.notify(job_id)

    async def try_move(self, job_id: int, allowed: Iterable[JobState], to: JobState, **fields: Any) -> StoredJob | None:
        try:
            return await self.move(job_id, allowed, to, **fields)
        except InvalidTransition as e:
            log.info("%s", e)
            return None

    async def started(self, job_id: int, started_at: float, pid: int | None, pid_start: str = "") -> StoredJob | None:
        return await self.try_move(job_id, (A,), R, started_at=started_at, pid=pid, pid_start=pid_start)

    async def finished(
        self, job: StoredJob, exit_code: int | None, signal: int | None, outcome: str, reason: str,
        finished_at: float, **start: Any,
    ) -> StoredJob | None:
        """The attempt ended as its agent reports, at ``finished_at`` by the agent's clock (not when the
        report is stored, which a busy database or a restart may delay); ``start`` (started_at, pid,
        pid_start) if not stored yet."""
        state, default_reason = outcome_state(exit_code, signal, outcome)
        if state is JobState.CANCELLED:
            default_reason = self.cancel_reasons.get(job.info.id, "cancelled")
        return await self._end(job, state, reason or default_reason, exit_code=exit_code, signal=signal,
                               finished_at=finished_at, **start)

    async def lost(self, job_id: int, reason: str) -> StoredJob | None:
        job = await self.store.get_job(job_id)
        if job is None:
            return None
        return await self._end(job, JobState.LOST, reason)

    async def _end(self, job: StoredJob, state: JobState, reason: str, **fields: Any) -> StoredJob | None:
        """Finish an attempt: the job's final state, or back to the queue when it has retries left."""
        info, spec = job.info, job.spec
        log_bytes, truncated = self.logs.close(info.id, info.attempt)
        if truncated and not reason:
            reason = f"output truncated past {self.logs.max_bytes} bytes (--max-log-bytes)"
        retry = state is JobState.LOST or (state is JobState.FAILED and spec.retry_on_failure)
        if retry and info.attempt <= spec.retries and info.id not in self.cancel_reasons:
            delay = min(RETRY_BACKOFF * 2 ** (info.attempt - 1), RETRY_BACKOFF_MAX)
            log.info("job %s attempt %d %s (%s); retrying in %gs", info.id, info.attempt, state, reason, delay)
            self.logs.start_empty(info.id, info.attempt + 1)
            requeued = await self.try_move(
                info.id, ACTIVE, Q, attempt=info.attempt + 1, worker_id=None, pid=None, pid_start="", started_at=None,
                exit_code=None, signal=None, log_bytes=0, run_after=time.time() + delay,
                reason=f"attempt {info.attempt} {state}: {reason}; retry {info.attempt}/{spec.retries}",
            )
            self.retries_scheduled += 1  # after the commit, before the scheduler runs again: it will look
            return requeued
        return await self.try_move(info.id, ACTIVE, state, reason=reason, log_bytes=log_bytes, **fields)

    async def vanished(self, job_id: int, reason: str) -> StoredJob | None:
        """Its worker came back without it: the assignment may never have arrived, so it goes back to the
        queue; but a job that keeps vanishing (one that brings its agent down at once) ends lost."""
        times = self._vanished[job_id] = self._vanished.get(job_id, 0) + 1
        if times <= MAX_VANISHED:
            requeued = await self.requeue(job_id, reason)
            if requeued is not None:
                return requeued
        return await self.lost(job_id, reason if times <= MAX_VANISHED else f"{reason}, {times} times")

    async def requeue(self, job_id: int, reason: str) -> StoredJob | None:
        """Back to the queue, from an assignment the worker never started (cancelled, if that was asked)."""
        if job_id in self.cancel_reasons:
            return await self.try_move(job_id, (A,), JobState.CANCELLED, reason=self.cancel_reasons[job_id])
        return await self.try_move(job_id, (A,), Q, worker_id=None, reason=reason)

    async def cancel_queued(self, job_id: int, reason: str) -> StoredJob | None:
        return await self.try_move(job_id, (Q,), JobState.CANCELLED, reason=reason)

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

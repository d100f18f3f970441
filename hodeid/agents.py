"""One agent connection: registration, then the agent's reports, each checked against its worker."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NoReturn

from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    Accept,
    Ack,
    AgentToDaemon,
    Cancel,
    Exited,
    Heartbeat,
    Hello,
    JobState,
    Output,
    Ready,
    Reject,
    Welcome,
    WorkerState,
    PROTOCOL_VERSION,
)
from hodeid.app import App
from hodeid.logstore import DiskFull
from hodeid.worker import Worker

log = logging.getLogger("hodeid.agents")
DISK_FULL_RETRY = 1.0  # seconds before hanging up on an agent whose output has no room
ACTIVE = (JobState.ASSIGNED, JobState.RUNNING)


class AgentSession:
    def __init__(self, app: App, worker: Worker, reader: FrameReader[AgentToDaemon], writer: FrameWriter) -> None:
        self.app = app
        self.worker = worker
        self.reader = reader
        self.writer = writer
        self._acks: dict[int, int] = {}
        self._ack_scheduled = False

    async def run(self) -> None:
        pool = self.app.pool
        await self.writer.send(Welcome(version=PROTOCOL_VERSION, daemon="hodeid"))
        pool.attach(self.worker, self.writer)
        try:
            while (msg := await self.reader.read()) is not None:
                pool.seen(self.worker)
                await self.handle(msg)
        finally:
            await pool.detach(self.worker, self.writer)

    def _owns(self, job_id: int, what: str) -> bool:
        if self.worker.job_id == job_id:
            return True
        log.warning("worker %s reported %s for job %s, which is not assigned to it; ignored", self.worker.id, what, job_id)
        return False

    async def handle(self, msg: AgentToDaemon) -> None:
        app, worker = self.app, self.worker
        match msg:
            case Heartbeat():
                pass
            case Output(job_id=job_id, seq=seq, stream=stream, ts=ts, data=data):
                if job_id == worker.foreign_job:
                    self._ack(job_id, seq)  # not kept: the job is not this worker's any more
                elif self._owns(job_id, "output"):
                    try:
                        app.logs.append(job_id, worker.job_attempt, seq, stream, ts, data)
                    except DiskFull as e:
                        await self._disk_full(job_id, e)
                    self._ack(job_id, seq)
            case Ready() as ready:
                await self._ready(ready)
            case Accept(job_id=job_id, pid=pid, started_at=started_at):
                if self._owns(job_id, "a start"):
                    worker.job_pid = pid
                    await app.jobs.started(job_id, started_at, pid)
            case Reject(job_id=job_id, reason=reason):
                if self._owns(job_id, "a rejection"):
                    worker.release()
                    await app.jobs.requeue(job_id, f"worker {worker.id} refused it: {reason}")
                    await app.pool.set_state(worker, WorkerState.IDLE)
            case Exited() as exited:
                await self._exited(exited)

    async def _disk_full(self, job_id: int, error: DiskFull) -> NoReturn:
        """Say so on the job, then hang up: the agent keeps the output and resends it when space returns."""
        log.error("job %s: %s; its output waits in the worker until there is space", job_id, error.strerror)
        try:
            await self.app.store.note_job(job_id, f"disk full: {error.strerror}; output held by the worker meanwhile")
        except Exception as e:
            log.error("cannot record that either: %s", e)
        await asyncio.sleep(DISK_FULL_RETRY)
        raise ConnectionResetError("disk full")

    async def _ready(self, ready: Ready) -> None:
        app, worker = self.app, self.worker
        job_id = ready.job_id
        held = worker.job_id
        log.info("worker %s %s%s", worker.id, "registered" if worker.state is WorkerState.STARTING else "reconnected",
                 f" holding job {job_id}" if job_id is not None else "")
        if worker.state is WorkerState.STARTING:
            app.pool.registered(worker)
        worker.ready = True
        if held is not None and held != job_id:  # the assignment never reached the agent, or its process is gone
            worker.release()
            await app.jobs.vanished(held, f"worker {worker.id} reconnected without the job")
        if job_id is None:
            await app.pool.set_state(worker, WorkerState.IDLE)
            app.scheduler.wake()
            return
        job = await app.store.get_job(job_id)
        if job is None or job.info.worker_id != worker.id or job.info.state not in ACTIVE:
            # Its job was given up on (lost, retried elsewhere, cancelled): stop it, and take nothing it
            # reports as the job's, which may be running on another worker by now.
            log.warning("worker %s holds job %s, which is not its to run; stopping it", worker.id, job_id)
            worker.foreign_job = job_id
            worker.send(Cancel(job_id=job_id, grace=0, reason="the job is no longer assigned to this worker"))
            await app.pool.set_state(worker, WorkerState.BUSY)
            return
        worker.hold(job)
        worker.job_pid = ready.pid or job.pid
        await app.pool.set_state(worker, WorkerState.BUSY)
        # Tell the agent what is stored, so it resends the rest and nothing twice.
        worker.send(Ack(job_id=job_id, seq=app.logs.last_seq(job_id, worker.job_attempt)))
        if job.info.state is JobState.ASSIGNED and (ready.running or ready.started_at):
            await app.jobs.started(job_id, ready.started_at or time.time(), worker.job_pid)
        if job_id in app.jobs.cancel_reasons:
            worker.send(Cancel(job_id=job_id, grace=job.info.grace, reason=app.jobs.cancel_reasons[job_id]))

    async def _exited(self, msg: Exited) -> None:
        app, worker = self.app, self.worker
        if msg.job_id == worker.foreign_job:  # it has stopped the job it should not have had
            worker.foreign_job = None
            worker.send(Ack(job_id=msg.job_id, seq=msg.last_seq, done=True))
            await app.pool.set_state(worker, WorkerState.IDLE)
            return
        if not self._owns(msg.job_id, "an exit"):
            return
        job = worker.job  # the attempt as assigned (or recovered): its spec and attempt are what finishing needs
        assert job is not None  # _owns: it holds this job
        start = {"started_at": msg.started_at, "pid": msg.pid} if msg.started_at is not None else {}  # no Accept
        limit = app.config.max_jobs_per_worker
        last = bool(limit) and worker.jobs_run + 1 >= limit
        # Finish this job and take the worker's next one together: the two statements run back to back
        # in the database thread instead of one round trip after the other.
        finished, taken = await asyncio.gather(
            app.jobs.finished(job, msg.exit_code, msg.signal, msg.outcome, msg.reason, **start),
            asyncio.sleep(0) if last else app.scheduler.take_for(worker),
            return_exceptions=True,
        )
        if isinstance(taken, BaseException):
            log.error("worker %s: taking its next job failed: %r", worker.id, taken)
            taken = None
        stored = not isinstance(finished, BaseException)
        if stored:
            self._acks.pop(msg.job_id, None)
            worker.send(Ack(job_id=msg.job_id, seq=msg.last_seq, done=True))  # only now that the end is stored
        if not stored or worker.state is not WorkerState.BUSY or worker.job_id != msg.job_id:
            # Not stored (no Ack: the agent keeps the result), or the worker was lost or retired meanwhile.
            if taken is not None:
                await app.jobs.requeue(taken.info.id, f"worker {worker.id} could not take it after its last job")
            if isinstance(finished, BaseException):
                raise finished
            return
        worker.release()
        worker.jobs_run += 1
        await app.pool.set_state(worker, WorkerState.IDLE)
        if last:
            app.pool.retire(worker, f"ran its {limit} job(s)")
        if taken is not None:
            await app.scheduler.assign(taken, worker)

    def _ack(self, job_id: int, seq: int) -> None:
        """Acknowledge stored output once the agent's current burst has been read."""
        self._acks[job_id] = seq
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_scheduled = False
        for job_id, seq in self._acks.items():
            self.worker.send(Ack(job_id=job_id, seq=seq))
        self._acks.clear()


async def serve_agent(app: App, hello: Hello, reader: FrameReader[AgentToDaemon], writer: FrameWriter) -> None:
    worker = await app.pool.authenticate(hello.worker_id, hello.token)
    await AgentSession(app, worker, reader, writer).run()

"""One agent connection: registration, then the agent's reports, each checked against its worker."""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    PROTOCOL_VERSION,
    Accept,
    Ack,
    AgentToDaemon,
    Exited,
    Heartbeat,
    Hello,
    Output,
    Ready,
    Reject,
    Welcome,
)
from hodeid.app import App
from hodeid.logstore import DiskFull
from hodeid.store import DatabaseDamaged
from hodeid.worker import Worker

log = logging.getLogger("hodeid.agents")
DISK_FULL_RETRY = 1.0  # seconds before hanging up on an agent whose output has no room


class AgentSession:
    def __init__(self, app: App, worker: Worker, reader: FrameReader[AgentToDaemon], writer: FrameWriter,
                 token: str = "") -> None:
        self.app = app
        self.worker = worker
        self.token = token  # the worker's next token, for the Welcome
        self.reader = reader
        self.writer = writer
        self._acks: dict[int, int] = {}
        self._ack_scheduled = False

    async def run(self) -> None:
        pool = self.app.pool
        await self.writer.send(Welcome(version=PROTOCOL_VERSION, daemon="hodeid", token=self.token))
        pool.attach(self.worker, self.writer)
        try:
            while (msg := await self.reader.read()) is not None:
                pool.seen(self.worker)
                try:
                    await self.handle(msg)
                except DatabaseDamaged:
                    pass  # logged once by the store; unacknowledged, the agent keeps it for a restarted hodeid
        finally:
            await pool.detach(self.worker, self.writer)

    def _owns(self, job_id: int, what: str) -> bool:
        if self.worker.job_id == job_id:
            return True
        log.warning("worker %s reported %s for job %s, which is not assigned to it; ignored",
                    self.worker.id, what, job_id)
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
                await app.jobs.reconnected(worker, ready)
            case Accept(job_id=job_id, pid=pid, started_at=started_at, pid_start=pid_start):
                if self._owns(job_id, "a start"):
                    await app.jobs.started(worker, job_id, started_at, pid, pid_start)
            case Reject(job_id=job_id, reason=reason):
                if self._owns(job_id, "a rejection"):
                    await app.jobs.rejected(worker, job_id, reason)
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

    async def _exited(self, msg: Exited) -> None:
        if msg.job_id != self.worker.foreign_job and not self._owns(msg.job_id, "an exit"):
            return
        self._acks.pop(msg.job_id, None)
        await self.app.jobs.exited(self.worker, msg, self.app.scheduler.take_for)

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
    worker, token = await app.pool.authenticate(hello.worker_id, hello.token, hello.rotates_token)
    await AgentSession(app, worker, reader, writer, token).run()

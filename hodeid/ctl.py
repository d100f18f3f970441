"""One control connection: each request is routed by a single ``match`` to a small handler that returns
its reply, or an async iterator of replies (job lists in pages, a job's log); ``run`` writes them, and
maps a request's error to its Error reply, in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import TypeVar, cast

import msgspec

from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    PROTOCOL_VERSION,
    AddAgent,
    AgentAdded,
    CancelJobs,
    CtlRequest,
    GetJob,
    JobInfo,
    JobReply,
    JobsReply,
    JobState,
    ListJobs,
    ListWorkers,
    Message,
    Ping,
    Pong,
    ReadLogs,
    RemoveAgent,
    Submit,
    SubmitMany,
    WaitJobs,
    Welcome,
    WorkersReply,
)
from hodeid.access import Caller
from hodeid.app import App
from hodeid.follow import follow
from hodeid.jobs import JobNotFound
from hodeid.pages import chunks, paged
from hodeid.replies import REQUEST_ERRORS, error_reply

T = TypeVar("T")
Reply = Message | AsyncGenerator[Message, None]  # one reply, or a run of them written as they come


class ClientGone(Exception):
    pass


class CtlSession:
    def __init__(self, app: App, reader: FrameReader[CtlRequest], writer: FrameWriter, uid: int | None) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.caller = Caller.of(app.config.admin_group, uid)

    async def run(self) -> None:
        await self.writer.send(Welcome(version=PROTOCOL_VERSION, daemon="hodeid"))
        # drain() waits until the kernel has taken every byte, so a client that reads slowly (or not at all)
        # costs hodeid one reply (one block of a log's records) at most, not all it has not read yet.
        cast(asyncio.WriteTransport, self.writer.transport).set_write_buffer_limits(high=0)
        while (req := await self.reader.read()) is not None:
            try:
                reply = await self.handle(req)
                if isinstance(reply, Message):
                    await self.writer.send(reply)
                else:
                    await self._until_gone(self._write_all(reply))
            except ClientGone:
                return
            except REQUEST_ERRORS as e:
                await self.writer.send(error_reply(e, self.app.config.db_path))

    async def _write_all(self, replies: AsyncGenerator[Message, None]) -> None:
        async with contextlib.aclosing(replies):  # its clean-up runs now, even if the client hangs up
            async for reply in replies:
                self.writer.write(reply)
                del reply  # while the client drains, the frame queued is the only copy of a log's bytes
                await self.writer.drain()

    async def handle(self, req: CtlRequest) -> Reply:
        match req:
            case Submit(spec=spec):
                self.caller.check_submit()
                return JobReply(job=(await self.app.jobs.submit(spec, self.caller.uid)).info)
            case SubmitMany(specs=specs):
                self.caller.check_submit()
                return JobsReply(jobs=[j.info for j in await self.app.jobs.submit_many(specs, self.caller.uid)])
            case GetJob(job_id=job_id, history=history):
                return await self._get(job_id, history)
            case ListJobs(states=states, limit=limit, name=name, labels=labels, mine=mine):
                return paged(self._listed(states, limit, name, labels, mine))
            case CancelJobs(job_ids=ids, grace=grace, wait=wait):
                await self._check_all(ids)  # unknown (or others') ids fail before anything is cancelled
                for job_id in ids:
                    await self.app.jobs.cancel(job_id, grace, "cancelled by user")
                return paged(self._answer(ids, wait))
            case WaitJobs(job_ids=ids):
                await self._check_all(ids)
                return paged(self._answer(ids, wait=True))
            case ReadLogs():
                return follow(self.app, self.caller, req)
            case ListWorkers():
                return WorkersReply(workers=self.app.pool.infos(self.caller.owner))
            case AddAgent(pool=pool):
                self.caller.check_admin("register agents")
                worker_id, token = await self.app.pool.add_remote(pool)
                return AgentAdded(worker_id=worker_id, token=token)
            case RemoveAgent(worker_id=worker_id):
                self.caller.check_admin("remove agents")
                if not await self.app.jobs.remove_agent(worker_id):
                    raise JobNotFound(f"no remote agent {worker_id}: `hodeictl workers` lists the connected ones")
                return Pong()
            case Ping():
                return Pong()

    async def _get(self, job_id: int, history: bool) -> JobReply:
        job = await self.caller.job(self.app.jobs, job_id)
        events = await self.app.store.job_events(job_id) if history else []
        node = await self.app.store.worker_node(job.info.worker_id)
        return JobReply(job=msgspec.structs.replace(job.info, node=node), history=events)

    async def _listed(self, states: list[JobState], limit: int, name: str, labels: dict[str, str],
                      mine: bool) -> AsyncIterator[JobInfo]:
        """The caller's jobs (or everyone's, for an admin not asking for ``mine``), filtered."""
        owner = self.caller.own if mine else self.caller.owner
        async for page in self.app.store.list_jobs(states, limit, owner_uid=owner, name=name, labels=labels):
            for job in page:
                yield job.info

    async def _check_all(self, job_ids: list[int]) -> None:
        """Raise unless this caller may see every one of these jobs; a chunk of them in memory at a time."""
        for part in chunks(job_ids):
            await self.caller.jobs(self.app.jobs, part)

    async def _answer(self, job_ids: list[int], wait: bool) -> AsyncIterator[JobInfo]:
        """These jobs in the order asked; with ``wait``, each once it has ended."""
        for part in chunks(job_ids):
            jobs = await (self.app.jobs.wait_all(part) if wait else self.app.jobs.get_many(part))
            for job_id in part:
                yield jobs[job_id].info

    async def _until_gone(self, work: Awaitable[T]) -> T:
        """Run a long request, but stop it if the client hangs up (clients send nothing meanwhile)."""
        task = asyncio.ensure_future(work)
        hangup = asyncio.ensure_future(self.reader.wait_eof())
        try:
            done, _ = await asyncio.wait({task, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            await asyncio.gather(hangup, return_exceptions=True)  # it must stop reading before we read again
        if task not in done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ClientGone()
        return task.result()


async def serve_ctl(app: App, reader: FrameReader[CtlRequest], writer: FrameWriter, uid: int | None) -> None:
    await CtlSession(app, reader, writer, uid).run()

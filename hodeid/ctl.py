"""One control connection: each request is routed by a single ``match`` to a small handler that returns
its reply, or an async iterator of replies (job lists in pages, a job's log); ``run`` writes them, and
maps a request's error to its Error reply, in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar, cast

import msgspec

from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    FINAL_STATES,
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
    LogData,
    LogEnd,
    Message,
    Ping,
    Pong,
    ReadLogs,
    RemoveAgent,
    Stream,
    Submit,
    SubmitMany,
    WaitJobs,
    Welcome,
    WorkersReply,
)
from hodeid import memory
from hodeid.access import Caller
from hodeid.app import App
from hodeid.jobs import JobNotFound
from hodeid.logstore import Record
from hodeid.pages import chunks, paged
from hodeid.replies import REQUEST_ERRORS, error_reply

T = TypeVar("T")
Reply = Message | AsyncIterator[Message]  # one reply, or a run of them written as they come


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

    async def _write_all(self, replies: AsyncIterator[Message]) -> None:
        async with contextlib.aclosing(replies):  # type: ignore[type-var]  # its clean-up runs now, even if cut
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
            case ListJobs(states=states, limit=limit):
                return paged(self._listed(states, limit))
            case CancelJobs(job_ids=ids, grace=grace, wait=wait):
                await self._check_all(ids)  # unknown (or others') ids fail before anything is cancelled
                for job_id in ids:
                    await self.app.jobs.cancel(job_id, grace, "cancelled by user")
                return paged(self._answer(ids, wait))
            case WaitJobs(job_ids=ids):
                await self._check_all(ids)
                return paged(self._answer(ids, wait=True))
            case ReadLogs():
                return self._logs(req)
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

    async def _listed(self, states: list[JobState], limit: int) -> AsyncIterator[JobInfo]:
        async for page in self.app.store.list_jobs(states, limit, owner_uid=self.caller.owner):
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

    async def _logs(self, req: ReadLogs) -> AsyncIterator[Message]:
        """One attempt's output (the latest by default); a follower moves on to a retry's."""
        try:
            app = self.app
            seen = app.jobs.moves  # taken before each read of the job: a move in between is seen next time
            job = await self.caller.job(app.jobs, req.job_id)
            attempt = req.attempt or job.info.attempt
            if not 1 <= attempt <= job.info.attempt:
                raise JobNotFound(f"job {req.job_id} has no attempt {attempt}: it has had {job.info.attempt}")
            follow = req.follow and attempt == job.info.attempt
            offset, skip, from_seq = 0, 0, req.from_seq
            if req.tail is not None:
                offset, skip = app.logs.tail_offset(req.job_id, attempt, req.tail)
            while True:
                changed = app.changes.event(req.job_id)
                records, offset = app.logs.read_from(req.job_id, attempt, offset)
                if not records and app.jobs.moves != seen:  # caught up, and some job moved: look at its state
                    seen = app.jobs.moves
                    job = await app.jobs.get(req.job_id)  # a final state here means all its output is in the file
                    records, offset = app.logs.read_from(req.job_id, attempt, offset)  # then once more at the log
                if records:  # each record is taken out as its frame goes: while the client drains, the frame
                    records.reverse()  # is the only copy of its bytes (no name here holds on to one)
                    while records:
                        if records[-1].seq <= from_seq:
                            records.pop()
                            continue
                        yield _frame(records.pop(), skip)
                        skip = 0
                    continue
                if follow and job.info.attempt > attempt:  # that attempt ended and a retry is queued: follow it
                    attempt, offset, from_seq = job.info.attempt, 0, 0
                    continue
                if not follow or job.info.state in FINAL_STATES:
                    break
                await changed.wait()
            yield LogEnd(job=job.info)
        finally:
            memory.trim_soon()  # what this follower's blocks took goes back once it is done

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


def _frame(rec: Record, skip: int) -> LogData:
    """The LogData of one record, less its first ``skip`` bytes (where a tail starts in it)."""
    stream = Stream.STDOUT if rec.stream == Stream.STDOUT else Stream.STDERR  # notes go to stderr
    return LogData(seq=rec.seq, stream=stream, ts=rec.ts, data=rec.data[skip:] if skip else rec.data)


async def serve_ctl(app: App, reader: FrameReader[CtlRequest], writer: FrameWriter, uid: int | None) -> None:
    await CtlSession(app, reader, writer, uid).run()

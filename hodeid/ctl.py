"""One control connection: each request is routed by a single ``match`` to a small handler."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import sqlite3
from collections.abc import Awaitable
from typing import TypeVar, cast

import msgspec

from hodei.errors import HodeiError, InvalidTransition
from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    FINAL_STATES,
    PROTOCOL_VERSION,
    AddAgent,
    AgentAdded,
    CancelJobs,
    CtlRequest,
    Error,
    ErrorCode,
    GetJob,
    JobReply,
    JobsReply,
    ListJobs,
    ListWorkers,
    LogData,
    LogEnd,
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
from hodeid.app import App
from hodeid.jobs import InvalidSpec, JobNotFound, check_found
from hodeid.logstore import Record
from hodeid.pages import JobPages, chunks
from hodeid.store import StoredJob

T = TypeVar("T")


class ClientGone(Exception):
    pass


class CtlSession:
    def __init__(self, app: App, reader: FrameReader[CtlRequest], writer: FrameWriter, uid: int | None) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.uid = uid
        self.sees_all = sees_all(app, uid)

    async def run(self) -> None:
        await self.writer.send(Welcome(version=PROTOCOL_VERSION, daemon="hodeid"))
        while (req := await self.reader.read()) is not None:
            try:
                await self.handle(req)
            except JobNotFound as e:
                await self.writer.send(Error(code=ErrorCode.NOT_FOUND, message=str(e)))
            except (InvalidSpec, InvalidTransition) as e:
                await self.writer.send(Error(code=ErrorCode.INVALID, message=str(e)))
            except ClientGone:
                return
            except HodeiError as e:
                await self.writer.send(Error(code=ErrorCode.BAD_REQUEST, message=str(e)))
            except OverflowError:
                await self.writer.send(Error(code=ErrorCode.INVALID, message="a number in the request is out of range"))
            except sqlite3.OperationalError as e:  # say what went wrong, keep the connection
                await self.writer.send(Error(code=ErrorCode.INTERNAL, message=database_trouble(e, self.app)))

    async def handle(self, req: CtlRequest) -> None:
        app, send = self.app, self.writer.send
        match req:
            case Submit(spec=spec):
                self._may_submit()
                job = await app.jobs.submit(spec, self.uid)
                await send(JobReply(job=job.info))
            case SubmitMany(specs=specs):
                self._may_submit()
                queued = await app.jobs.submit_many(specs, self.uid)
                await send(JobsReply(jobs=[j.info for j in queued]))
            case GetJob(job_id=job_id, history=history):
                job = await self._job(job_id)
                events = await app.store.job_events(job_id) if history else []
                node = await app.store.worker_node(job.info.worker_id)
                await send(JobReply(job=msgspec.structs.replace(job.info, node=node), history=events))
            case ListJobs(states=states, limit=limit, name=name, labels=labels, mine=mine):
                owner = None if self.sees_all and not mine else self.uid
                pages = JobPages(self.writer)
                async for page in app.store.list_jobs(states, limit, owner_uid=owner, name=name, labels=labels):
                    for job in page:
                        await pages.add(job.info)
                await pages.end()
            case CancelJobs(job_ids=ids, grace=grace, wait=wait):
                await self._check_all(ids)  # unknown (or others') ids fail before anything is cancelled
                for job_id in ids:
                    await app.jobs.cancel(job_id, grace, "cancelled by user")
                await self._until_gone(self._answer(ids, wait))
            case WaitJobs(job_ids=ids):
                await self._check_all(ids)
                await self._until_gone(self._answer(ids, wait=True))
            case ReadLogs():
                try:
                    await self._until_gone(self._logs(req))
                finally:
                    memory.trim_soon()  # what this follower's blocks took goes back once it is done
            case ListWorkers():
                await send(WorkersReply(workers=app.pool.infos(None if self.sees_all else self.uid)))
            case AddAgent(pool=pool):
                self._admin_only("register agents")
                worker_id, token = await app.pool.add_remote(pool)
                await send(AgentAdded(worker_id=worker_id, token=token))
            case RemoveAgent(worker_id=worker_id):
                self._admin_only("remove agents")
                if not await app.jobs.remove_agent(worker_id):
                    raise JobNotFound(f"no remote agent {worker_id}: `hodeictl workers` lists the connected ones")
                await send(Pong())
            case Ping():
                await send(Pong())

    def _may_submit(self) -> None:
        if self.uid is None:  # who is asking is unknown: nothing may run on their behalf
            raise InvalidSpec("hodeid cannot tell which user is asking (no peer credentials on the socket)")
        if os.geteuid() not in (0, self.uid):
            raise InvalidSpec(f"hodeid runs as uid {os.geteuid()} and cannot run jobs as uid {self.uid};"
                              " start your own hodeid, or ask for a hodeid that runs as root")

    def _admin_only(self, what: str) -> None:
        if not self.sees_all:
            raise InvalidSpec(f"only root or members of hodeid's --admin-group may {what}")

    async def _job(self, job_id: int) -> StoredJob:
        return (await self._jobs([job_id]))[job_id]

    async def _jobs(self, job_ids: list[int]) -> dict[int, StoredJob]:
        """The jobs, if this caller may see them all: their own, or any for root and the admin group."""
        jobs = await self.app.jobs.get_many(job_ids)
        if not self.sees_all:
            check_found(job_ids, {i for i, job in jobs.items() if job.owner_uid == self.uid})
        return jobs

    async def _check_all(self, job_ids: list[int]) -> None:
        """Raise unless this caller may see every one of these jobs; a chunk of them in memory at a time."""
        for part in chunks(job_ids):
            await self._jobs(part)

    async def _answer(self, job_ids: list[int], wait: bool) -> None:
        """These jobs in the order asked, in pages that fit a frame; with ``wait``, each once it has ended."""
        pages = JobPages(self.writer)
        for part in chunks(job_ids):
            jobs = await (self.app.jobs.wait_all(part) if wait else self.app.jobs.get_many(part))
            for job_id in part:
                await pages.add(jobs[job_id].info)
        await pages.end()

    async def _logs(self, req: ReadLogs) -> None:
        """Stream one attempt's output (the latest by default); a follower moves on to a retry's."""
        app, writer = self.app, self.writer
        seen = app.jobs.moves  # taken before each read of the job: a move in between is seen next time
        job = await self._job(req.job_id)
        attempt = req.attempt or job.info.attempt
        if not 1 <= attempt <= job.info.attempt:
            raise JobNotFound(f"job {req.job_id} has no attempt {attempt}: it has had {job.info.attempt}")
        follow = req.follow and attempt == job.info.attempt
        offset, skip, from_seq = 0, 0, req.from_seq
        if req.tail is not None:
            offset, skip = app.logs.tail_offset(req.job_id, attempt, req.tail)
        # drain() waits until the kernel has taken every byte, so a follower that reads slowly (or not at all)
        # costs hodeid one block of records at most, not all it has not read yet.
        cast(asyncio.WriteTransport, writer.transport).set_write_buffer_limits(high=0)
        while True:
            changed = app.changes.event(req.job_id)
            records, offset = app.logs.read_from(req.job_id, attempt, offset)
            if not records and app.jobs.moves != seen:  # caught up, and some job moved: look at this one's state
                seen = app.jobs.moves
                job = await app.jobs.get(req.job_id)  # a final state here means all its output is in the file
                records, offset = app.logs.read_from(req.job_id, attempt, offset)  # then once more at the log
            if records:
                skip = self._queue_log(records, from_seq, skip)
                await writer.drain()
                continue
            if follow and job.info.attempt > attempt:  # that attempt ended and a retry is queued: follow it
                attempt, offset, from_seq = job.info.attempt, 0, 0
                continue
            if not follow or job.info.state in FINAL_STATES:
                break
            await changed.wait()
        await writer.send(LogEnd(job=job.info))

    def _queue_log(self, records: list[Record], from_seq: int, skip: int) -> int:
        """Queue a LogData frame for each record after ``from_seq``, and empty ``records``: while the follower
        drains, the frames are the only copy of the bytes. Returns what is left of ``skip``."""
        for rec in records:
            if rec.seq <= from_seq:
                continue
            data = rec.data[skip:] if skip else rec.data
            skip = 0
            stream = Stream.STDOUT if rec.stream == Stream.STDOUT else Stream.STDERR  # notes go to stderr
            self.writer.write(LogData(seq=rec.seq, stream=stream, ts=rec.ts, data=data))
        records.clear()
        return skip

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


def database_trouble(e: sqlite3.OperationalError, app: App) -> str:
    """What a client is told when its request hit a database error: locked, full, or else."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (f"hodeid's database {app.config.db_path} is locked by another process ({e}): close whatever"
                " holds it open (an sqlite3 shell, a backup tool) and retry")
    if code == sqlite3.SQLITE_FULL:
        return f"hodeid cannot write its database ({e}): the disk is full; free some space and retry"
    return f"hodeid cannot use its database ({e}); see its log"


def sees_all(app: App, uid: int | None) -> bool:
    """Whether this caller sees every user's jobs. A caller whose uid is unknown sees none: fail closed."""
    if uid is None:
        return False
    if uid == 0 or uid == os.geteuid():
        return True
    group = app.config.admin_group
    if not group:
        return False
    try:
        gid = grp.getgrnam(group).gr_gid
        name = pwd.getpwuid(uid).pw_name
        return gid in os.getgrouplist(name, pwd.getpwuid(uid).pw_gid)
    except KeyError:
        return False


async def serve_ctl(app: App, reader: FrameReader[CtlRequest], writer: FrameWriter, uid: int | None) -> None:
    await CtlSession(app, reader, writer, uid).run()

"""Reading and following one job's log for a client: its records as LogData frames, then LogEnd.

A ``LogReader`` reads one attempt's log a block at a time (``LogStore.read_from``). The reads of a large
log (more than FAR_BEHIND bytes still ahead of the reader) and the tail scan of ``--tail`` (which may read
the whole file) run in a worker thread, so while one client reads a 1 GiB log every other connection
keeps its answers coming. The rest (a follower that has caught up, reading what was just appended; a
short log) is read on the event loop: a trip to a thread costs more than such a read, and 1,000
followers make many of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from hodei.protocol import FINAL_STATES, LogData, LogEnd, Message, ReadLogs, Stream
from hodeid import memory
from hodeid.access import Caller
from hodeid.app import App
from hodeid.jobs import JobNotFound
from hodeid.logstore import LogStore, Record

FAR_BEHIND = 4 << 20  # bytes ahead of a reader past which its reads go to a thread


class LogReader:
    """One attempt's log, read from ``offset`` on; ``attempt`` may move on to a retry's (from its start)."""

    def __init__(self, logs: LogStore, job_id: int, attempt: int) -> None:
        self._logs = logs
        self.job_id = job_id
        self.attempt = attempt
        self.offset = 0

    async def tail(self, lines: int) -> int:
        """Start at the last ``lines`` lines; returns the bytes to skip in the first record read."""
        self.offset, skip = await asyncio.to_thread(self._logs.tail_offset, self.job_id, self.attempt, lines)
        return skip

    def next_attempt(self, attempt: int) -> None:
        self.attempt, self.offset = attempt, 0

    async def read(self) -> list[Record]:
        """The next whole records (a block, or one larger record); none when the reader has caught up."""
        if self._logs.size(self.job_id, self.attempt) - self.offset > FAR_BEHIND:
            records, self.offset = await asyncio.to_thread(self._logs.read_from, self.job_id, self.attempt,
                                                           self.offset)
        else:
            records, self.offset = self._logs.read_from(self.job_id, self.attempt, self.offset)
        return records


async def follow(app: App, caller: Caller, req: ReadLogs) -> AsyncGenerator[Message, None]:
    """One attempt's output (the latest by default), and LogEnd; a follower moves on to a retry's."""
    try:
        seen = app.jobs.moves  # taken before each read of the job: a move in between is seen next time
        job = await caller.job(app.jobs, req.job_id)
        attempt = req.attempt or job.info.attempt
        if not 1 <= attempt <= job.info.attempt:
            raise JobNotFound(f"job {req.job_id} has no attempt {attempt}: it has had {job.info.attempt}")
        following = req.follow and attempt == job.info.attempt
        log = LogReader(app.logs, req.job_id, attempt)
        skip, from_seq = 0, req.from_seq
        if req.tail is not None:
            skip = await log.tail(req.tail)
        while True:
            changed = app.changes.event(req.job_id)
            records = await log.read()
            if not records and app.jobs.moves != seen:  # caught up, and some job moved: look at this one's state
                seen = app.jobs.moves
                job = await app.jobs.get(req.job_id)  # a final state here means all its output is in the file
                records = await log.read()  # then once more at the log
            if records:  # each record is taken out as its frame goes: while the client drains, the frame
                records.reverse()  # is the only copy of its bytes (no name here holds on to one)
                while records:
                    if records[-1].seq <= from_seq:
                        records.pop()
                        continue
                    yield _frame(records.pop(), skip)
                    skip = 0
                continue
            if following and job.info.attempt > attempt:  # that attempt ended and a retry is queued: follow it
                attempt, from_seq = job.info.attempt, 0
                log.next_attempt(attempt)
                continue
            if not following or job.info.state in FINAL_STATES:
                break
            await changed.wait()
        yield LogEnd(job=job.info)
    finally:
        memory.trim_soon()  # what this follower's blocks took goes back once it is done


def _frame(rec: Record, skip: int) -> LogData:
    """The LogData of one record, less its first ``skip`` bytes (where a tail starts in it)."""
    stream = Stream.STDOUT if rec.stream == Stream.STDOUT else Stream.STDERR  # notes go to stderr
    return LogData(seq=rec.seq, stream=stream, ts=rec.ts, data=rec.data[skip:] if skip else rec.data)

"""Replies that list jobs, sent in pages that each fit a frame, and job ids taken a chunk at a time.

A reply listing jobs (ListJobs, CancelJobs, WaitJobs) is a run of ``JobsReply(more=True)`` and a
last one with ``more=False``; a short one is a single reply, as before. Pages are cut by encoded
size, not by row count: one job can carry a command of up to a megabyte (``MAX_SPEC_BYTES``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterator
from typing import Any

import msgspec

from hodei.protocol import MAX_FRAME, JobInfo, JobsReply

PAGE_BYTES = MAX_FRAME // 2  # a page's jobs; with one job over the budget it is still under the limit
ID_CHUNK = 1000  # job ids a CancelJobs or WaitJobs handles at a time: hodeid's memory stays flat

_encoder = msgspec.msgpack.Encoder()


def chunks(ids: list[int], size: int = ID_CHUNK) -> Iterator[list[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


class JobPages:
    """Cuts jobs into JobsReply pages of at most PAGE_BYTES of encoded jobs; ``end`` gives the last."""

    def __init__(self) -> None:
        self._jobs: list[Any] = []  # each job encoded once, as msgspec.Raw
        self._size = 0

    def add(self, job: JobInfo) -> JobsReply | None:
        """Take one more job; a full page is returned when this job does not fit in it."""
        raw = msgspec.Raw(_encoder.encode(job))
        page = self._page(more=True) if self._jobs and self._size + len(raw) > PAGE_BYTES else None
        self._jobs.append(raw)
        self._size += len(raw)
        return page

    def end(self) -> JobsReply:
        return self._page(more=False)

    def _page(self, more: bool) -> JobsReply:
        page = JobsReply(jobs=self._jobs, more=more)
        self._jobs, self._size = [], 0
        return page


async def paged(jobs: AsyncIterable[JobInfo]) -> AsyncGenerator[JobsReply, None]:
    """These jobs as a reply in pages: full pages as they fill, then the last (perhaps empty) one."""
    pages = JobPages()
    async for job in jobs:
        if (page := pages.add(job)) is not None:
            yield page
    yield pages.end()

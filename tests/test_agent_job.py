"""The agent's side of a job, with a real process: what it reports when its output cannot be kept."""

from __future__ import annotations

import asyncio

from hodei.protocol import Assignment, Stream
from hodei_agent.job import JobProcess


def test_output_that_cannot_be_kept_is_named_in_the_end_reason() -> None:
    """Never a silent gap: when a chunk cannot be kept at all, the job's end says how much was lost."""

    async def emit(stream: Stream, data: bytes) -> None:
        raise RuntimeError("no room anywhere")

    async def run() -> tuple[int | None, str]:
        job = JobProcess(Assignment(job_id=1, command=["echo hi; echo oops >&2"], shell=True), emit)
        await job.start()
        result = await job.run()
        return result.exit_code, result.reason

    assert asyncio.run(run()) == (0, "8 bytes of output were lost: no room anywhere")

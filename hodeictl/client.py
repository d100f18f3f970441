"""An async client for hodeid's control socket: what the CLI is built on, and what scripts can use.

    async with Client() as c:
        job = await c.submit(JobSpec(command=["make -j8"], shell=True))
        async for chunk in c.follow(job.id):
            ...
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from hodei.errors import DaemonNotRunning, ProtocolError, RemoteError
from hodei.framing import FrameReader, FrameWriter
from hodei.paths import default_socket
from hodei.protocol import (
    PROTOCOL_VERSION,
    AddAgent,
    AgentAdded,
    RemoveAgent,
    CancelJobs,
    CtlReply,
    Error,
    GetJob,
    HandshakeReply,
    Hello,
    JobEvent,
    JobInfo,
    JobReply,
    JobSpec,
    JobsReply,
    JobState,
    ListJobs,
    ListWorkers,
    LogData,
    LogEnd,
    ReadLogs,
    Role,
    Submit,
    WaitJobs,
    Welcome,
    WorkerInfo,
    WorkersReply,
)

RECONNECT_FOR = 60.0  # seconds a follower keeps trying to reach a restarting hodeid


class Client:
    def __init__(self, socket: str | Path | None = None) -> None:
        self.socket = Path(socket) if socket else default_socket()
        self._reader: FrameReader[Any] | None = None
        self._writer: FrameWriter | None = None

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            r, w = await asyncio.open_unix_connection(str(self.socket), limit=16 << 20)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise DaemonNotRunning(
                f"hodeid is not running (no daemon at {self.socket}): start it with `hodeid`"
                " or `systemctl start hodeid`, or point --socket / HODEI_SOCKET at it"
            ) from e
        except PermissionError as e:
            raise DaemonNotRunning(
                f"permission denied on {self.socket}: ask for the socket's group, or use your own hodeid"
            ) from e
        except OSError as e:
            raise DaemonNotRunning(f"cannot connect to hodeid at {self.socket}: {e.strerror or e}") from e
        self._writer = FrameWriter(w)
        self._reader = FrameReader(r, HandshakeReply)
        await self._writer.send(Hello(version=PROTOCOL_VERSION, role=Role.CTL, client="hodeictl"))
        reply = await self._read()
        if not isinstance(reply, Welcome):
            raise ProtocolError("hodeid did not answer the handshake")
        self._reader = FrameReader(r, CtlReply)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
            self._writer = None

    async def _read(self) -> Any:
        assert self._reader is not None
        try:
            reply = await self._reader.read()
        except (ConnectionError, OSError, ProtocolError) as e:  # a frame cut short: hodeid died mid-reply
            raise DaemonNotRunning(f"lost the connection to hodeid: {e}") from e
        if reply is None:
            raise DaemonNotRunning("hodeid closed the connection (is it stopping?)")
        if isinstance(reply, Error):
            raise RemoteError(reply.code, reply.message)
        return reply

    async def request(self, msg: Any) -> Any:
        await self._send(msg)
        return await self._read()

    # ---- requests -------------------------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> JobInfo:
        reply: JobReply = await self.request(Submit(spec=spec))
        return reply.job

    async def get(self, job_id: int) -> JobInfo:
        reply: JobReply = await self.request(GetJob(job_id=job_id))
        return reply.job

    async def history(self, job_id: int) -> tuple[JobInfo, list[JobEvent]]:
        """The job and its state changes, attempt by attempt."""
        reply: JobReply = await self.request(GetJob(job_id=job_id, history=True))
        return reply.job, reply.history

    async def list(self, states: list[JobState] | None = None, limit: int = 0) -> list[JobInfo]:
        reply: JobsReply = await self.request(ListJobs(states=states or [], limit=limit))
        jobs = list(reply.jobs)
        while reply.more:
            reply = await self._read()
            jobs.extend(reply.jobs)
        return jobs

    async def cancel(self, job_ids: list[int], grace: float | None = None, wait: bool = True) -> list[JobInfo]:
        reply: JobsReply = await self.request(CancelJobs(job_ids=job_ids, grace=grace, wait=wait))
        return reply.jobs

    async def wait(self, job_ids: list[int]) -> list[JobInfo]:
        reply: JobsReply = await self.request(WaitJobs(job_ids=job_ids))
        return reply.jobs

    async def add_agent(self, pool: str = "") -> AgentAdded:
        reply: AgentAdded = await self.request(AddAgent(pool=pool))
        return reply

    async def remove_agent(self, worker_id: str) -> None:
        await self.request(RemoveAgent(worker_id=worker_id))

    async def workers(self) -> list[WorkerInfo]:
        reply: WorkersReply = await self.request(ListWorkers())
        return reply.workers

    async def logs(
        self, job_id: int, follow: bool = False, tail: int | None = None, attempt: int = 0
    ) -> AsyncIterator[LogData | LogEnd]:
        """The job's output chunks, then LogEnd. A follower rides out a hodeid restart."""
        last_seq = 0
        first = True
        deadline = None
        while True:
            try:
                req = ReadLogs(job_id=job_id, follow=follow, tail=tail if first else None, from_seq=last_seq,
                               attempt=attempt)
                await self._send(req)
                while True:
                    msg = await self._read()
                    if isinstance(msg, LogEnd):
                        yield msg
                        return
                    first, deadline = False, None
                    last_seq = msg.seq
                    yield msg
            except DaemonNotRunning:
                if not follow:
                    raise
                loop = asyncio.get_running_loop()
                deadline = deadline or loop.time() + RECONNECT_FOR
                while True:
                    await self.close()
                    await asyncio.sleep(0.2)
                    try:
                        await self.connect()
                        break
                    except DaemonNotRunning:
                        if loop.time() > deadline:
                            raise

    async def _send(self, msg: Any) -> None:
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        try:
            await self._writer.send(msg)
        except (ConnectionError, OSError) as e:
            raise DaemonNotRunning(f"lost the connection to hodeid: {e}") from e


def spec_from_cli(
    command: list[str],
    name: str = "",
    env: dict[str, str] | None = None,
    cwd: str = "",
    timeout: float | None = None,
    grace: float = 10.0,
    priority: int = 0,
    labels: dict[str, str] | None = None,
    image: str = "",
    retries: int = 0,
    retry_on_failure: bool = False,
) -> JobSpec:
    """A spec as the CLI builds it: one argument is a shell line, several are an exact argv."""
    return JobSpec(
        command=list(command),
        shell=len(command) == 1,
        name=name,
        env=env or {},
        cwd=cwd,
        timeout=timeout,
        grace=grace,
        priority=priority,
        labels=labels or {},
        image=image,
        retries=retries,
        retry_on_failure=retry_on_failure,
        client_env=dict(os.environ),
        client_cwd=os.getcwd(),
    )

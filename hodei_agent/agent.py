"""The agent: registers with hodeid, heartbeats, runs one job at a time and streams its output.

Output is kept until hodeid acknowledges it, so after a lost connection the agent reconnects with
backoff and resends what is not acknowledged; hodeid skips what it already has. When too much is
unacknowledged the agent stops reading the job's pipes, and the job waits on its writes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from dataclasses import dataclass

import anyio
import anyio.abc
import msgspec

from hodei.errors import HodeiError, ProtocolError
from hodei.framing import FrameReader, FrameWriter
from hodei.protocol import (
    HANDSHAKE_TIMEOUT,
    PROTOCOL_VERSION,
    Accept,
    Ack,
    Assign,
    Cancel,
    DaemonToAgent,
    Error,
    Exited,
    HandshakeReply,
    Heartbeat,
    Hello,
    Output,
    Ready,
    Reject,
    Role,
    Shutdown,
    Stream,
    Welcome,
)
from hodei_agent.job import JobProcess, SpawnFailed
from hodei_agent.outbox import Outbox

log = logging.getLogger("hodei-agent")
ACCEPT_AFTER = 0.005  # seconds a job runs before its start is reported on its own (see _handle, Assign)
HOLD_RETRY = 1.0  # seconds between tries to keep output that found no room, if no Ack comes meanwhile
EXITED_FLUSH = 5.0  # seconds a job's Exited gets to leave for hodeid, whatever else is being cancelled


@dataclass
class AgentConfig:
    socket: str
    worker_id: str
    token: str
    heartbeat_interval: float = 2.0
    reconnect_timeout: float = 120.0  # give up when idle and hodeid stays away this long
    reconnect_timeout_busy: float = 3600.0  # ... or while holding a job's output
    tls_ca: str = ""  # CA file to check hodeid's certificate with, for tls:// addresses


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.cfg = config
        self.writer: FrameWriter | None = None
        self.job: JobProcess | None = None
        self.job_id: int | None = None
        self.seq = 0
        self.outbox = Outbox()
        self.room = asyncio.Event()
        self.room.set()
        self.exited: Exited | None = None
        self.stopping = False
        self.done = asyncio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None  # heartbeats and the job's supervisor; see ``run``
        self._welcomed = False
        self.started_at = 0.0
        self._accept_later: asyncio.TimerHandle | None = None

    # ---- connection -----------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            # The connection sessions run here, one after another; the heartbeats and the supervisor of
            # the job run beside them in the group, and none outlives the agent.
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._heartbeats, name="heartbeats")
                await self._sessions()
                tasks.cancel_scope.cancel()
        finally:
            self._tasks = None
            if self.job is not None:
                self.job.terminate(0, "cancelled", "the agent stopped")

    async def _sessions(self) -> None:
        """Stay connected to hodeid (reconnecting with backoff) until told to stop or it stays away too long."""
        away_since = time.monotonic()
        delay = 0.05
        while not self.done.is_set():
            try:
                await self._session()
            except (ConnectionError, FileNotFoundError, OSError, ProtocolError, TimeoutError, ssl.SSLError) as e:
                log.info("not connected to hodeid: %s", e)
            except AuthRefused as e:
                log.error("hodeid refused this agent: %s", e)
                if self.job is not None and self.exited is None:  # nobody will take its result: stop it
                    self.job.terminate(0, "cancelled", "hodeid no longer accepts this agent")
                return
            if self.done.is_set():
                break
            now = time.monotonic()
            if self._welcomed:  # we were connected until just now
                self._welcomed = False
                away_since, delay = now, 0.05
            limit = self.cfg.reconnect_timeout_busy if self.job_id is not None else self.cfg.reconnect_timeout
            if now - away_since > limit:
                log.error("hodeid has been unreachable for %.0fs; exiting", now - away_since)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _session(self) -> None:
        r, w = await connect(self.cfg.socket, self.cfg.tls_ca)
        writer = FrameWriter(w)
        try:
            await writer.send(Hello(version=PROTOCOL_VERSION, role=Role.AGENT, worker_id=self.cfg.worker_id,
                                    token=self.cfg.token, rotates_token=True))
            reply = await asyncio.wait_for(FrameReader[HandshakeReply](r, HandshakeReply).read(), HANDSHAKE_TIMEOUT)
            if isinstance(reply, Error):
                raise AuthRefused(reply.message)
            if not isinstance(reply, Welcome):
                raise ProtocolError("hodeid closed the connection during the handshake")
            if reply.token:  # the one we registered with is spent: this one is for the next connection
                self.cfg.token = reply.token
            job = self.job
            writer.write(Ready(job_id=self.job_id, running=job is not None and self.exited is None,
                               pid=job.pid if job is not None else None, started_at=self.started_at,
                               pid_start=job.pid_start if job is not None else ""))
            # Resend whatever hodeid may not have stored (it skips duplicates), including what the job
            # writes meanwhile; no await between the last check and taking the connection into use.
            sent = 0
            while pending := self.outbox.after(sent):
                for msg in pending:
                    writer.write(msg)
                    sent = msg.seq
                    await writer.drain()
            if self.exited is not None:
                writer.write(self.exited)
            self.writer = writer
            self._welcomed = True
            log.info("registered with hodeid as %s", self.cfg.worker_id)
            reader = FrameReader[DaemonToAgent](r, DaemonToAgent)
            while (incoming := await reader.read()) is not None:
                await self._handle(incoming)
                if self.done.is_set():
                    return
        finally:
            self.writer = None
            writer.close()

    async def _handle(self, msg: DaemonToAgent) -> None:
        match msg:
            case Assign(job=assignment):
                if self.job_id is not None:
                    self._send(Reject(job_id=assignment.job_id, reason=f"busy with job {self.job_id}"))
                    return
                self.job_id, self.seq = assignment.job_id, 0
                self.exited = None
                job = JobProcess(assignment, self._emit)
                try:
                    await job.start()
                except SpawnFailed as e:
                    self._finish(Exited(job_id=assignment.job_id, exit_code=e.exit_code, signal=None,
                                        last_seq=0, finished_at=time.time(), outcome="spawn_failed", reason=e.reason))
                    return
                self.job = job
                self.started_at = time.time()
                # Most jobs seen at a high rate end within milliseconds: for those the start travels
                # with the exit, one message and one database write instead of two of each.
                self._accept_later = asyncio.get_running_loop().call_later(
                    ACCEPT_AFTER, self._accept, assignment.job_id, job)
                assert self._tasks is not None  # messages are handled only while ``run`` holds the group
                self._tasks.start_soon(self._supervise, job, name=f"job-{assignment.job_id}")
            case Cancel(job_id=job_id, grace=grace, reason=reason):
                if self.job is not None and job_id == self.job_id:
                    self.job.terminate(grace, "cancelled", reason)
            case Ack(job_id=job_id, seq=seq, done=done):
                if job_id != self.job_id:
                    return
                self.outbox.ack(seq)
                if not self.outbox.full:
                    self.room.set()
                if done and self.exited is not None:
                    self.outbox.clear()
                    self.job_id, self.exited, self.job = None, None, None
                    if self.stopping:
                        self.done.set()
            case Shutdown(reason=reason):
                log.info("asked to stop: %s", reason)
                self.stopping = True
                if self.job_id is None:
                    self.done.set()
            case Error(message=message):
                log.error("hodeid: %s", message)

    # ---- the job --------------------------------------------------------------------------------

    async def _supervise(self, job: JobProcess) -> None:
        try:
            result = await job.run()
        except Exception as e:  # the job must still be reported, or hodeid would wait for it forever
            log.exception("running job %s failed", job.a.job_id)
            job.terminate(0, "", "")
            self._finish(Exited(job_id=job.a.job_id, exit_code=None, signal=None, last_seq=self.seq,
                                finished_at=time.time(), outcome="spawn_failed", reason=f"the agent failed: {e}"))
            return
        self._finish(Exited(job_id=job.a.job_id, exit_code=result.exit_code, signal=result.signal,
                            last_seq=self.seq, finished_at=time.time(), outcome=result.outcome, reason=result.reason))
        # The Exited is queued whole (no await between the job's end and the write); send it on its way
        # even if the agent is being stopped meanwhile. It is kept, and resent after a reconnect, until acked.
        writer = self.writer
        if writer is not None:
            with anyio.move_on_after(EXITED_FLUSH, shield=True):
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    pass

    def _accept(self, job_id: int, job: JobProcess) -> None:
        self._accept_later = None
        self._send(Accept(job_id=job_id, pid=job.pid, started_at=self.started_at, pid_start=job.pid_start))

    def _finish(self, exited: Exited) -> None:
        if self._accept_later is not None:  # ended before its Accept went out: the exit carries the start
            self._accept_later.cancel()
            self._accept_later = None
            if self.job is not None:
                exited = msgspec.structs.replace(exited, started_at=self.started_at, pid=self.job.pid,
                                                 pid_start=self.job.pid_start)
        self.exited = exited
        self._send(exited)

    async def _emit(self, stream: Stream, data: bytes) -> None:
        """Keep a chunk of the job's output, then send it. A chunk takes its sequence number only once
        it is kept; until it can be (the spool's filesystem is full), the job's pipes are not read."""
        held_since = None
        while True:
            await self.room.wait()
            assert self.job_id is not None
            msg = Output(job_id=self.job_id, seq=self.seq + 1, stream=stream, ts=time.time(), data=data)
            try:
                self.outbox.add(msg)
                break
            except OSError as e:
                if held_since is None:
                    held_since = time.monotonic()
                    log.warning("job %s: no room to keep its output (%s); holding it, and not reading the job's"
                                " pipes, until hodeid acknowledges some", self.job_id, e.strerror or e)
                self.room.clear()  # an Ack sets it again; so does the timeout, in case space returns otherwise
                try:
                    await asyncio.wait_for(self.room.wait(), HOLD_RETRY)
                except TimeoutError:
                    if not self.outbox.full:
                        self.room.set()
        if held_since is not None:
            log.info("job %s: its output is kept again, after %.1fs held", self.job_id, time.monotonic() - held_since)
        self.seq = msg.seq
        if self.outbox.full:
            self.room.clear()
        writer = self.writer
        if writer is not None:
            try:
                writer.write(msg)
                await writer.drain()
            except (ConnectionError, OSError):
                pass  # kept in the outbox; resent after reconnecting

    def _send(self, msg: object) -> None:
        if self.writer is not None:
            try:
                self.writer.write(msg)
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            self._send(Heartbeat(job_id=self.job_id))

    def _on_signal(self) -> None:
        if self.job is not None and self.exited is None:
            self.job.terminate(10.0, "cancelled", "the worker was stopped")
        self.stopping = True
        if self.job_id is None:
            self.done.set()


async def connect(address: str, tls_ca: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A Unix socket path, or tcp://HOST:PORT, or tls://HOST:PORT (checked against tls_ca, else the system CAs)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return await asyncio.open_unix_connection(address, limit=1 << 20)
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if scheme == "tcp":
        return await asyncio.open_connection(host, int(port), limit=1 << 20)
    if scheme == "tls":
        ctx = ssl.create_default_context(cafile=tls_ca or None)
        return await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=host, limit=1 << 20)
    raise ValueError(f"hodeid address {address!r}: use a socket path, tcp://HOST:PORT or tls://HOST:PORT")


class AuthRefused(HodeiError):
    """hodeid refused this agent's token."""

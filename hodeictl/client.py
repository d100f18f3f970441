"""A client for hodeid's control socket: what the CLI is built on, and what scripts can use.

    with Client() as c:
        job = c.submit(JobSpec(command=["make -j8"], shell=True))
        for msg in c.logs(job.id, follow=True):
            ...

It is blocking on purpose: a CLI call makes one or a few requests in a row, and a plain socket
spares it importing asyncio, which takes longer to load than the request takes to answer.
"""

from __future__ import annotations

import os
import socket as _socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from hodei.errors import DaemonNotRunning, HodeiError, NoAccess, ProtocolError, RemoteError
from hodei.frames import body_size, encode_frame
from hodei.paths import client_socket_paths
from hodei.protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    AddAgent,
    AgentAdded,
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
    RemoveAgent,
    Role,
    Submit,
    SubmitMany,
    WaitJobs,
    Welcome,
    WorkerInfo,
    WorkersReply,
)

RECONNECT_FOR = 60.0  # seconds a follower keeps trying to reach a restarting hodeid
BATCH_JOBS = 100  # jobs per SubmitMany request in submit_many
BATCH_BYTES = 4 << 20  # and at most this much spec in one, half the frame limit

_spec_encoder = msgspec.msgpack.Encoder()
_handshake = msgspec.msgpack.Decoder(HandshakeReply)
_reply = msgspec.msgpack.Decoder(CtlReply)
Page = list[JobInfo]  # one JobsReply's jobs (a name of its own: in Client, `list` is a method)
Ids = list[int]
Workers = list[WorkerInfo]
States = list[JobState]


class RequestTooLarge(HodeiError):
    """The request is larger than one message to hodeid may be; nothing of it was sent."""

    exit_code = 2  # the input is at fault, not the daemon


class Client:
    def __init__(self, socket: str | os.PathLike[str] | None = None, timeout: float | None = None) -> None:
        # None until connected: then the socket that answered (see hodei.paths.client_socket_paths)
        self.socket = os.fspath(socket) if socket else None
        self.timeout = timeout  # per send or read; None waits as long as the request takes (wait, logs -f)
        self._sock: _socket.socket | None = None
        self._in: Any = None  # buffered reader over the socket

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        tried = []
        for path in [self.socket] if self.socket else client_socket_paths():
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                tried.append(path)
            except PermissionError as e:
                sock.close()
                from hodeictl.access import denied  # only now: it loads the user and group databases

                raise NoAccess(denied(path)) from e
            except OSError as e:
                sock.close()
                raise DaemonNotRunning(f"cannot connect to hodeid at {path}: {e.strerror or e}") from e
        else:
            raise DaemonNotRunning(
                f"hodeid is not running (no daemon at {' or '.join(tried)}): start it with `hodeid`"
                " or `systemctl start hodeid`, or point --socket / HODEI_SOCKET at it"
            )
        self.socket = path  # reconnects (logs -f across a restart) go to the same hodeid
        self._sock, self._in = sock, sock.makefile("rb")
        self._send(Hello(version=PROTOCOL_VERSION, role=Role.CTL, client="hodeictl"))
        if not isinstance(self._read(_handshake), Welcome):
            raise ProtocolError("hodeid did not answer the handshake")

    def close(self) -> None:
        if self._sock is not None:
            self._in.close()
            self._sock.close()
            self._sock = self._in = None

    def _send(self, msg: Any) -> None:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        frame = encode_frame(msg)
        if len(frame) - 4 > MAX_FRAME:  # hodeid would hang up on it: say why instead of "lost the connection"
            raise RequestTooLarge(f"this request is {len(frame) - 4:,} bytes, over the {MAX_FRAME:,}-byte limit of"
                                  " one message to hodeid, so nothing was sent: send less at once (a shorter"
                                  " command, fewer job ids)")
        try:
            self._sock.sendall(frame)
        except OSError as e:
            raise DaemonNotRunning(f"lost the connection to hodeid: {e}") from e

    def _read(self, decoder: msgspec.msgpack.Decoder[Any] = _reply) -> Any:
        try:
            head = self._in.read(4)
            if not head:
                raise DaemonNotRunning("hodeid closed the connection (is it stopping?)")
            size = body_size(head) if len(head) == 4 else -1
            body = self._in.read(size) if size >= 0 else b""
            if size < 0 or len(body) < size:  # a frame cut short: hodeid died mid-reply
                raise DaemonNotRunning("lost the connection to hodeid in the middle of a reply")
            reply = decoder.decode(body)
        except OSError as e:
            raise DaemonNotRunning(f"lost the connection to hodeid: {e}") from e
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(f"hodeid sent a message this hodeictl does not understand: {e}") from None
        if isinstance(reply, Error):
            raise RemoteError(reply.code, reply.message)
        return reply

    def request(self, msg: Any) -> Any:
        self._send(msg)
        return self._read()

    # ---- requests -------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobInfo:
        reply: JobReply = self.request(Submit(spec=spec))
        return reply.job

    def submit_many(self, specs: Iterable[JobSpec], each: Callable[[JobInfo], object] | None = None) -> list[JobInfo]:
        """Submit jobs in order, in batches (each queued together or not at all); ``each`` is called
        with every job as its batch is queued. If a batch is refused, RemoteError is raised and the
        batches before it stay queued (``each`` has seen them)."""
        queued: list[JobInfo] = []
        batch: list[JobSpec] = []
        size = 0

        def send() -> None:
            for job in self._submit_batch(batch):
                queued.append(job)
                if each is not None:
                    each(job)

        for spec in specs:
            spec_size = len(_spec_encoder.encode(spec))
            if batch and (len(batch) == BATCH_JOBS or size + spec_size > BATCH_BYTES):
                send()
                batch, size = [], 0
            batch.append(spec)
            size += spec_size
        if batch:
            send()
        return queued

    def _submit_batch(self, specs: list[JobSpec]) -> list[JobInfo]:
        reply: JobsReply = self.request(SubmitMany(specs=specs))
        return reply.jobs

    def get(self, job_id: int) -> JobInfo:
        reply: JobReply = self.request(GetJob(job_id=job_id))
        return reply.job

    def history(self, job_id: int) -> tuple[JobInfo, list[JobEvent]]:
        """The job and its state changes, attempt by attempt."""
        reply: JobReply = self.request(GetJob(job_id=job_id, history=True))
        return reply.job, reply.history

    def list(self, states: States | None = None, limit: int = 0) -> Page:
        return [job for page in self.list_pages(states, limit) for job in page]

    def cancel(self, job_ids: Ids, grace: float | None = None, wait: bool = True) -> Page:
        return [job for page in self.cancel_pages(job_ids, grace, wait) for job in page]

    def wait(self, job_ids: Ids) -> Page:
        return [job for page in self.wait_pages(job_ids) for job in page]

    # The same answers a page at a time, as they arrive, for callers that print as they go. Read each
    # to its end before the next request: the rest of its pages would come first.

    def list_pages(self, states: States | None = None, limit: int = 0, name: str = "",
                   labels: dict[str, str] | None = None, mine: bool = False) -> Iterator[Page]:
        return self._pages(ListJobs(states=states or [], limit=limit, name=name, labels=labels or {}, mine=mine))

    def cancel_pages(self, job_ids: Ids, grace: float | None = None, wait: bool = True) -> Iterator[Page]:
        return self._pages(CancelJobs(job_ids=job_ids, grace=grace, wait=wait))

    def wait_pages(self, job_ids: Ids) -> Iterator[Page]:
        return self._pages(WaitJobs(job_ids=job_ids))

    def _pages(self, msg: Any) -> Iterator[Page]:
        """Send a request that JobsReply pages answer (the last has more=False); yield each page's jobs."""
        self._send(msg)
        while True:
            reply: JobsReply = self._read()
            yield reply.jobs
            if not reply.more:
                return

    def add_agent(self, pool: str = "") -> AgentAdded:
        reply: AgentAdded = self.request(AddAgent(pool=pool))
        return reply

    def remove_agent(self, worker_id: str) -> None:
        self.request(RemoveAgent(worker_id=worker_id))

    def workers(self) -> Workers:
        reply: WorkersReply = self.request(ListWorkers())
        return reply.workers

    def logs(self, job_id: int, follow: bool = False, tail: int | None = None, attempt: int = 0
             ) -> Iterator[LogData | LogEnd]:
        """The job's output chunks, then LogEnd. A follower rides out a hodeid restart."""
        last_seq = 0
        first = True
        deadline = None
        while True:
            try:
                self._send(ReadLogs(job_id=job_id, follow=follow, tail=tail if first else None, from_seq=last_seq,
                                    attempt=attempt))
                while True:
                    msg = self._read()
                    if isinstance(msg, LogEnd):
                        yield msg
                        return
                    first, deadline = False, None
                    last_seq = msg.seq
                    yield msg
            except DaemonNotRunning:
                if not follow:
                    raise
                deadline = deadline or time.monotonic() + RECONNECT_FOR
                while True:
                    self.close()
                    time.sleep(0.2)
                    try:
                        self.connect()
                        break
                    except DaemonNotRunning:
                        if time.monotonic() > deadline:
                            raise


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
    constraints: list[str] | None = None,
    tty: bool = False,
    volumes: list[str] | None = None,
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
        constraints=constraints or [],
        tty=tty,
        volumes=volumes or [],
        client_env=dict(os.environ),
        client_cwd=os.getcwd(),
        umask=current_umask(),
        nofile=os.sysconf("SC_OPEN_MAX"),  # the soft RLIMIT_NOFILE, without importing resource
    )


def current_umask() -> int:
    """This process's umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

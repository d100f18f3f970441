"""One worker as hodeid sees it: identity, state, current job, connection."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from hodei.errors import HodeiError
from hodei.framing import FrameWriter
from hodei.pools import shown_pool
from hodei.protocol import ErrorCode, WorkerInfo, WorkerState

if TYPE_CHECKING:
    from hodeid.store import StoredJob

REMOTE = "remote"  # provider name of agents on other machines, connected over TCP

S = WorkerState


class AuthError(HodeiError):
    """The agent's worker id or token is not valid; the connection is refused."""

    code = ErrorCode.AUTH


def handle_pid(handle: str) -> int | None:
    """The agent's pid in a local worker's handle ("PID:STAMP", or "PID" from before stamps)."""
    pid = handle.partition(":")[0]
    return int(pid) if pid.isdigit() else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Worker:
    def __init__(self, worker_id: str, provider: str, image: str, token_hash: str) -> None:
        now = time.monotonic()
        self.id = worker_id
        self.provider = provider
        self.image = image
        self.token_hash = token_hash
        self.handle = ""
        self.node = ""  # the machine it runs on, when its provider says (swarm)
        self.state = S.STARTING
        self.job: StoredJob | None = None  # the attempt it runs, as it was assigned (or recovered)
        self.job_pid: int | None = None
        self.job_pid_start = ""  # the stamp of job_pid (hodei.procs): only with it is the pid signalled
        self.foreign_job: int | None = None  # a job it still runs that is no longer its own
        self.ready = False  # said Ready on its current connection: only then can it be given work
        self.writer: FrameWriter | None = None
        self.created = time.time()
        self.started = now
        self.last_seen = now
        self.since = now  # when the state last changed
        self.jobs_run = 0
        self.retiring = False

    @property
    def job_id(self) -> int | None:
        return self.job.info.id if self.job is not None else None

    @property
    def job_attempt(self) -> int:
        return self.job.info.attempt if self.job is not None else 1

    @property
    def takes_work(self) -> bool:
        """Connected, said Ready, not retiring, running nothing it should not: it may be given a job
        once it is idle (or, finishing one, its next)."""
        return self.writer is not None and self.ready and not self.retiring and self.foreign_job is None

    @property
    def available(self) -> bool:
        """Can be given a job now: idle and takes work."""
        return self.state is S.IDLE and self.takes_work

    def hold(self, job: StoredJob) -> None:
        """Now running this job (this attempt of it)."""
        self.job = job
        self.job_pid, self.job_pid_start = job.pid, job.pid_start

    def release(self) -> None:
        """Holding no job any more."""
        self.job = None
        self.job_pid, self.job_pid_start = None, ""

    def info(self, viewer: int | None = None) -> WorkerInfo:
        """As ``workers`` shows it; the job's id only to its owner when a ``viewer`` uid is given."""
        lag = time.monotonic() - self.last_seen
        job_id = self.job_id
        if viewer is not None and self.job is not None and self.job.owner_uid != viewer:
            job_id = None
        return WorkerInfo(
            id=self.id,
            provider=self.provider,
            state=self.state,
            job_id=job_id,
            image=shown_pool(self.image),
            pid=handle_pid(self.handle),
            created_at=self.created,
            last_heartbeat=time.time() - lag if self.writer is not None else None,
            jobs_run=self.jobs_run,
            node=self.node,
        )

    def send(self, msg: Any) -> bool:
        if self.writer is None:
            return False
        try:
            self.writer.write(msg)
        except (ConnectionError, RuntimeError, OSError):
            return False
        return True

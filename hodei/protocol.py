"""The wire protocol shared by hodeid, hodeictl and the agent.

Every message is a msgspec Struct tagged with its class name, sent msgpack-encoded behind a 4-byte
big-endian length prefix (see ``hodei.framing``). The first message on every connection is ``Hello``;
the daemon answers ``Welcome`` or ``Error`` and closes.

Schema evolution: new fields get defaults; an existing field never changes type.
"""

from __future__ import annotations

import enum

import msgspec

PROTOCOL_VERSION = 1
MAX_FRAME = 8 * 1024 * 1024  # bytes in one frame body; larger frames are refused before reading
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer waits for the answer to its Hello (hodeid: --handshake-timeout)


class Role(enum.StrEnum):
    CTL = "ctl"
    AGENT = "agent"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"


FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST}
)


class WorkerState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    GONE = "gone"
    LOST = "lost"


class Stream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    VERSION = "version"
    AUTH = "auth"
    INVALID = "invalid"
    INTERNAL = "internal"


class Message(msgspec.Struct, tag=True, forbid_unknown_fields=False, omit_defaults=True):
    """Base of every message; the tag is the class name."""


# ---- shared data --------------------------------------------------------------------------------


class JobSpec(msgspec.Struct, omit_defaults=True):
    """What a user asks to run. ``shell`` True: ``command[0]`` is a /bin/sh command line."""

    command: list[str]
    shell: bool = False
    name: str = ""
    env: dict[str, str] = {}  # set on top of the base environment
    cwd: str = ""
    timeout: float | None = None
    grace: float = 10.0
    priority: int = 0
    labels: dict[str, str] = {}
    image: str = ""
    # The submitting shell's environment and directory. Used by the local provider, where the job
    # runs on the same host, so `hodeictl submit make` behaves as `make` would in that shell.
    client_env: dict[str, str] = {}
    client_cwd: str = ""
    # The submitting shell's umask, so files a job writes get the permissions they would in that shell.
    umask: int | None = None
    # And its soft limit on open files (`ulimit -n`), which the job gets as far as the hard limit allows.
    nofile: int | None = None
    retries: int = 0  # run again this many times at most when lost (and when failed, with retry_on_failure)
    retry_on_failure: bool = False
    constraints: list[str] = []  # swarm placement constraints (node.hostname==build2, ...)
    tty: bool = False  # run under a pseudo-terminal: stdout and stderr are one stream (stdout)
    # More directories for a Docker job, each ``HOST:CONTAINER:ro`` or ``HOST:CONTAINER:rw`` (absolute paths).
    volumes: list[str] = []


class JobInfo(msgspec.Struct, omit_defaults=False):
    id: int
    name: str
    state: JobState
    command: list[str]
    shell: bool
    exit_code: int | None
    signal: int | None
    reason: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker_id: str | None
    priority: int = 0
    labels: dict[str, str] = {}
    cwd: str = ""
    timeout: float | None = None
    grace: float = 10.0
    image: str = ""
    attempt: int = 1
    node: str = ""  # the machine its worker ran on, when not this host (filled in by `show`)
    log_bytes: int = 0
    retries: int = 0


class WorkerInfo(msgspec.Struct, omit_defaults=False):
    id: str
    provider: str
    state: WorkerState
    job_id: int | None
    image: str
    pid: int | None
    created_at: float
    last_heartbeat: float | None
    jobs_run: int = 0
    node: str = ""  # the machine it runs on, when not this host (a swarm node's hostname)


class Assignment(msgspec.Struct, omit_defaults=True):
    """A job as the agent needs it.

    ``env`` is the job's whole environment: the agent adds only the basics of the user the job runs as
    (HOME, USER, LOGNAME, SHELL, PATH) where ``env`` has none, never its own environment.
    """

    job_id: int
    command: list[str]
    shell: bool
    env: dict[str, str] = {}
    replace_env: bool = False  # unused since the agent never adds its own environment; kept for old agents
    cwd: str = ""
    timeout: float | None = None
    grace: float = 10.0
    uid: int | None = None  # run as this user (a root agent on the submitter's host, or in a Docker worker)
    gid: int | None = None  # with this group and these groups (None: the uid's own, from the passwd file)
    groups: list[int] = []
    umask: int | None = None  # None: 0o022
    nofile: int | None = None  # the job's soft open-file limit; None: the agent's own
    tty: bool = False  # stdout and stderr are a pseudo-terminal, the job's controlling terminal


# ---- handshake ------------------------------------------------------------------------------------


class Hello(Message):
    version: int
    role: Role
    worker_id: str = ""
    token: str = ""
    client: str = ""
    rotates_token: bool = False  # an agent that takes the new token a Welcome may carry


class Welcome(Message):
    version: int
    daemon: str = ""
    # For a worker hodeid started, the token to present next time: the one it registered with is
    # spent, so a copy of it (in the worker's environment, say) is worth nothing.
    token: str = ""


class Error(Message):
    code: ErrorCode
    message: str


# ---- control requests (hodeictl -> hodeid) -------------------------------------------------------


class Submit(Message):
    spec: JobSpec


class SubmitMany(Message):
    """Several jobs in one request, queued together or not at all; answered by a JobsReply in order."""

    specs: list[JobSpec]


class GetJob(Message):
    job_id: int
    history: bool = False  # also the job's state changes, attempt by attempt


class ListJobs(Message):
    states: list[JobState] = []
    limit: int = 0
    name: str = ""  # a glob (* ? [...]) the job's name matches; "": any
    labels: dict[str, str] = {}  # labels the job has, each with this value
    mine: bool = False  # only the caller's own jobs, also for root and admins (who see everyone's)


class CancelJobs(Message):
    job_ids: list[int]
    grace: float | None = None
    wait: bool = True


class WaitJobs(Message):
    job_ids: list[int]


class ReadLogs(Message):
    """Stream a job's log: LogData frames, then LogEnd. ``follow`` waits for the job to finish."""

    job_id: int
    follow: bool = False
    attempt: int = 0  # 0: the latest
    tail: int | None = None  # last N lines, per the whole log
    from_seq: int = 0  # resume after a reconnect: only chunks with seq > from_seq


class ListWorkers(Message):
    pass


class AddAgent(Message):
    """Register an agent that runs on another machine (root or --admin-group only)."""

    pool: str = ""  # jobs submitted with --image POOL go to it; "" takes jobs that name no image


class RemoveAgent(Message):
    worker_id: str


class Ping(Message):
    pass


# ---- control replies ------------------------------------------------------------------------------


class JobEvent(msgspec.Struct):
    at: float
    from_state: JobState | None
    to_state: JobState
    worker_id: str | None
    reason: str


class JobReply(Message):
    job: JobInfo
    history: list[JobEvent] = []


class JobsReply(Message):
    jobs: list[JobInfo]
    more: bool = False  # a long listing comes in several replies; the last has more=False


class WorkersReply(Message):
    workers: list[WorkerInfo]


class LogData(Message):
    seq: int
    stream: Stream
    ts: float
    data: bytes


class LogEnd(Message):
    job: JobInfo


class Pong(Message):
    pass


class AgentAdded(Message):
    worker_id: str
    token: str


# ---- agent <-> daemon -----------------------------------------------------------------------------


class Heartbeat(Message):
    job_id: int | None = None


class Accept(Message):
    """The agent took the assignment and started the process."""

    job_id: int
    pid: int
    started_at: float
    pid_start: str = ""  # the stamp of the process ``pid`` (hodei.procs): proof it is the job's, later


class Reject(Message):
    job_id: int
    reason: str


class Output(Message):
    job_id: int
    seq: int  # 1, 2, 3... per job
    stream: Stream
    ts: float
    data: bytes


class Exited(Message):
    job_id: int
    exit_code: int | None
    signal: int | None
    last_seq: int
    finished_at: float
    outcome: str = ""  # "", "cancelled", "timed_out", "spawn_failed"
    reason: str = ""
    # Set when the job ended before its Accept was sent (the agent sends none for jobs that end at once).
    started_at: float | None = None
    pid: int | None = None
    pid_start: str = ""


class Ready(Message):
    """Sent once after Welcome: the job the agent still holds (after a reconnect), if any.

    Until it arrives the daemon assigns the worker nothing.
    """

    job_id: int | None = None
    running: bool = False
    pid: int | None = None  # the job's process group, so hodeid can kill it even if the Accept was lost
    started_at: float = 0.0
    pid_start: str = ""


class Assign(Message):
    job: Assignment


class Cancel(Message):
    job_id: int
    grace: float
    reason: str = ""


class Ack(Message):
    """Durably written up to ``seq``; the agent may forget those chunks."""

    job_id: int
    seq: int
    done: bool = False  # the job's result is stored too: the agent may forget the job


class Shutdown(Message):
    reason: str = ""


CtlRequest = (
    Submit | SubmitMany | GetJob | ListJobs | CancelJobs | WaitJobs | ReadLogs | ListWorkers | AddAgent | RemoveAgent
    | Ping
)
CtlReply = JobReply | JobsReply | WorkersReply | LogData | LogEnd | AgentAdded | Pong | Error
AgentToDaemon = Ready | Heartbeat | Accept | Reject | Output | Exited
DaemonToAgent = Assign | Cancel | Ack | Shutdown | Error
HandshakeReply = Welcome | Error

"""What a job may be, and what its end means: spec checks, limits, and the outcome an agent's report
amounts to. Pure rules; ``hodeid.lifecycle`` applies them."""

from __future__ import annotations

from collections.abc import Container, Iterable

from hodei.errors import HodeiError
from hodei.protocol import ErrorCode, JobSpec, JobState

MAX_SPEC_BYTES = 1 << 20  # command, env and labels together: replies stay far under the frame limit
MAX_BATCH = 1000  # jobs in one SubmitMany: one INSERT (6 parameters a job, SQLite allows 32,766)
MAX_BATCH_BYTES = 4 << 20  # of spec_size in one SubmitMany: its reply, which repeats the commands, fits a frame


class JobNotFound(HodeiError):
    """No such job: `hodeictl list` shows the jobs there are."""

    code = ErrorCode.NOT_FOUND


def no_job(job_id: int) -> JobNotFound:
    return JobNotFound(f"no job {job_id}: `hodeictl list` shows the jobs there are")


def check_found(job_ids: Iterable[int], found: Container[int]) -> None:
    """Raise JobNotFound for the first of these ids not found (among them, or to this caller)."""
    missing = next((i for i in job_ids if i not in found), None)
    if missing is not None:
        raise no_job(missing)


class InvalidSpec(HodeiError):
    """The job is not valid."""

    code = ErrorCode.INVALID


def spec_size(spec: JobSpec) -> int:
    """The bytes of a job's command, environment and labels."""
    return sum(map(len, spec.command)) + sum(len(k) + len(v) for d in (spec.env, spec.labels, spec.client_env)
                                             for k, v in d.items())


def validate(spec: JobSpec) -> None:
    if not spec.command or (spec.shell and not spec.command[0].strip()):
        raise InvalidSpec("the command is empty: give a shell line, or an argv after --")
    if spec.shell and len(spec.command) != 1:
        raise InvalidSpec("a shell job takes exactly one command line")
    if any("\0" in part for part in spec.command):
        raise InvalidSpec("the command contains a NUL byte, which no process can receive")
    if spec.timeout is not None and not spec.timeout > 0:
        raise InvalidSpec("--timeout must be a positive number of seconds")
    if spec.retries < 0:
        raise InvalidSpec("--retries must be zero or more")
    if spec.umask is not None and not 0 <= spec.umask <= 0o777:
        raise InvalidSpec(f"umask {spec.umask:o} is not a file mode mask (0 to 777, octal)")
    if spec.nofile is not None and not 0 < spec.nofile < 2**63:
        raise InvalidSpec(f"an open-file limit of {spec.nofile} is not a positive number")
    if not spec.grace >= 0:
        raise InvalidSpec("--grace must be zero or a positive number of seconds")
    size = spec_size(spec)
    if size > MAX_SPEC_BYTES:
        raise InvalidSpec(f"the command and its environment take {size} bytes; at most {MAX_SPEC_BYTES} are accepted")
    for key in spec.env:
        if not key or "=" in key or "\0" in key:
            raise InvalidSpec(f"environment variable name {key!r} is not valid")


def outcome_state(exit_code: int | None, signal: int | None, outcome: str) -> tuple[JobState, str]:
    """The final state and reason of a job from what its agent reported."""
    if outcome == "cancelled":
        return JobState.CANCELLED, ""
    if outcome == "timed_out":
        return JobState.TIMED_OUT, ""
    if outcome == "spawn_failed":
        return JobState.FAILED, ""
    if signal is not None:
        return JobState.FAILED, f"killed by signal {signal}"
    if exit_code == 0:
        return JobState.SUCCEEDED, ""
    return JobState.FAILED, f"exited with code {exit_code}"

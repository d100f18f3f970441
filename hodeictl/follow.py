"""What hodeictl says while it follows or waits for jobs, so that nothing ends (or waits) in silence.

- A job that did not succeed ends with one line on stderr: its state and reason.
- A followed job that waits longer than a moment gets one line saying what it waits for, and another
  whenever that changes (a missing image, no worker yet, a retry's backoff ...).
- Ctrl-C detaches: the job keeps running, hodeictl says how to cancel it and exits with
  ``EXIT_DETACHED``, which no finished job's status is mistaken for (a cancelled one is 130).
"""

from __future__ import annotations

import threading

from hodei.errors import HodeiError
from hodei.protocol import JobInfo, JobState
from hodeictl.args import say
from hodeictl.client import Client

EXIT_DETACHED = 75  # sysexits' EX_TEMPFAIL: hodeictl stopped following; the job goes on
WAIT_QUIETLY = 1.0  # seconds a followed job may wait before hodeictl says what for
POLL = 1.0  # seconds between looks at a waiting job


def what_happened(job: JobInfo) -> str | None:
    """One line on how a job ended, unless it succeeded."""
    reason = f": {job.reason}" if job.reason else ""
    match job.state:
        case JobState.SUCCEEDED:
            return None
        case JobState.FAILED if job.started_at is None:
            return f"job {job.id} failed to start{reason}"
        case JobState.FAILED:
            return f"job {job.id} failed{reason}"
        case JobState.CANCELLED:
            return f"job {job.id} was cancelled{reason}"
        case JobState.TIMED_OUT:
            return f"job {job.id} timed out{reason}"
        case JobState.LOST:
            return f"job {job.id} was lost{reason}"
    return f"job {job.id} is {job.state}{reason}"


def detached(job_ids: list[int], doing: str) -> int:
    """After Ctrl-C: the jobs are not touched; say so, and how to stop them."""
    ids = " ".join(map(str, job_ids))
    noun = "job" if len(job_ids) == 1 else "jobs"
    say(f"stopped {doing}; {noun} {ids} {'keeps' if len(job_ids) == 1 else 'keep'} running"
        f" (`hodeictl cancel {ids}` stops {'it' if len(job_ids) == 1 else 'them'})")
    return EXIT_DETACHED


class WaitReporter:
    """Watches a followed job from a second connection while no output comes, and says what it waits for."""

    def __init__(self, socket: str | None, job_id: int, enabled: bool = True) -> None:
        self.socket = socket
        self.job_id = job_id
        self.enabled = enabled  # not following: nothing to watch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hodeictl-wait-reporter", daemon=True)

    def __enter__(self) -> WaitReporter:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Output arrived or the follow ended: the job's own lines speak from now on."""
        self._stop.set()

    def _watch(self) -> None:
        if self._stop.wait(WAIT_QUIETLY):
            return
        said = None
        try:
            with Client(self.socket, timeout=10) as client:
                while not self._stop.is_set():
                    job = client.get(self.job_id)
                    if job.state not in (JobState.QUEUED, JobState.ASSIGNED):
                        return
                    now = (job.state, job.reason)
                    if now != said and not self._stop.is_set():
                        said = now
                        why = job.reason or ("waiting for a worker" if job.state is JobState.QUEUED
                                             else "starting on its worker")
                        say(f"job {self.job_id} is {job.state}: {why}")
                    self._stop.wait(POLL)
        except (HodeiError, OSError):
            return  # the follow itself reports trouble with hodeid

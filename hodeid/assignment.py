"""What an agent is told about a job: its command, environment, directory, limits and user."""

from __future__ import annotations

import os

from hodei.protocol import Assignment
from hodeid.store import StoredJob


def assignment(job: StoredJob, local: bool) -> Assignment:
    spec = job.spec
    env = dict(spec.client_env) if local and spec.client_env else {}
    env.update(spec.env)
    cwd = spec.cwd or (spec.client_cwd if local else "")
    return Assignment(
        job_id=job.info.id,
        command=spec.command,
        shell=spec.shell,
        env=env,
        replace_env=True,
        cwd=cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        # A root hodeid runs each local job as the user who submitted it.
        uid=job.owner_uid if local and job.owner_uid and os.geteuid() == 0 else None,
        umask=spec.umask,
        nofile=spec.nofile,
        tty=spec.tty,
    )

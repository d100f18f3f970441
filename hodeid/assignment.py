"""What an agent is told about a job: its command, environment, directory, limits and user."""

from __future__ import annotations

import os

from hodei.pools import split_user
from hodei.protocol import Assignment
from hodeid.mounts import account
from hodeid.store import StoredJob


def assignment(job: StoredJob, local: bool, pool: str = "") -> Assignment:
    """``pool``: the key of the worker's pool; one that names a user (a Docker worker mounting that user's
    directories, hodeid.mounts) runs the job as that user, in the directory it was submitted from."""
    spec = job.spec
    env = dict(spec.client_env) if local and spec.client_env else {}
    env.update(spec.env)
    user, _ = split_user(pool)
    cwd = spec.cwd or (spec.client_cwd if local or user else "")
    uid = gid = None
    groups: list[int] = []
    if user:
        uid, gid = user
        groups = [g for g in account(uid)[1] if g != gid] if uid else []
    elif local and job.owner_uid and os.geteuid() == 0:  # a root hodeid runs each local job as its submitter
        uid = job.owner_uid
    return Assignment(
        job_id=job.info.id,
        command=spec.command,
        shell=spec.shell,
        env=env,
        replace_env=True,
        cwd=cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        uid=uid,
        gid=gid,
        groups=groups,
        umask=spec.umask,
        nofile=spec.nofile,
        tty=spec.tty,
    )

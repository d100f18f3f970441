"""What a Docker job sees of its submitter's files, and the check that the submitter may see them.

On the docker provider a job runs in the directory it was submitted from (or its ``--cwd``), bind-mounted
at the same path, with its ``--volume`` directories, as the submitter's uid and gid, so what it writes
belongs to them. The engine mounts as root: before a job is queued, hodeid opens each directory as the
submitter, in a child process that runs as their uid, gid and groups, so that symlinks are resolved
and permissions checked as theirs, and a path they could not open is refused with one sentence.

The job's pool (``hodei.pools.user_pool``) names that user and those mounts: a worker mounts one user's
directories and runs only that user's jobs that ask for exactly those mounts. Pools, rather than a
container per job, keep a user's repeated jobs from one project on warm workers.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import sys

from hodei.pools import parse_volume, path_problem, pool_key, user_pool, volume_text
from hodei.protocol import JobSpec
from hodeid.jobs import InvalidSpec

CHECK_TIMEOUT = 10.0  # seconds the check of a job's mounts may take (a hung network file system)
# Run as the submitter: each argument resolved and opened as them; a line per path, "ok REAL" or "no WHY".
_CHECK = r"""
import os, sys
for path in sys.argv[1:]:
    try:
        real = os.path.realpath(path, strict=True)
        os.close(os.open(real, os.O_RDONLY))
        if os.path.isdir(real) and not os.access(real, os.X_OK):
            raise PermissionError(13, "Permission denied")
        print("ok", real)
    except OSError as e:
        print("no", e.strerror or e)
"""


def account(uid: int) -> tuple[int, list[int]]:
    """The primary group and the groups of ``uid`` on this host (its own number for both with no account)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return uid, [uid]
    return entry.pw_gid, os.getgrouplist(entry.pw_name, entry.pw_gid)


def job_mounts(spec: JobSpec) -> list[tuple[str, str, bool, str]]:
    """(host, container, read_only, what it is) for each directory a Docker job mounts: where it runs
    (unless that is /), then its volumes."""
    mounts = []
    cwd = spec.cwd or spec.client_cwd
    if cwd and cwd != "/":
        if problem := path_problem(cwd, "the working directory"):
            raise InvalidSpec(problem)
        mounts.append((cwd, cwd, False, "the working directory"))
    for text in spec.volumes:
        try:
            mounts.append((*parse_volume(text), "--volume"))
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
    return mounts


def _check_as(uid: int, gid: int, groups: list[int], paths: list[str]) -> list[str]:
    who = {} if uid == os.geteuid() else {"user": uid, "group": gid, "extra_groups": groups}
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _CHECK, *paths], capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT, cwd="/", env={}, **who)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise InvalidSpec(f"checking that uid {uid} may read {', '.join(paths)} took over {CHECK_TIMEOUT:g}s"
                          ) from None
    lines = str(done.stdout).splitlines()
    if done.returncode != 0 or len(lines) != len(paths):
        raise InvalidSpec(f"cannot check what uid {uid} may read: {str(done.stderr).strip() or done.returncode}")
    return lines


async def docker_pool(spec: JobSpec, owner_uid: int, default_image: str) -> str:
    """The pool of a Docker job of ``owner_uid``'s; InvalidSpec, one sentence, when a path it mounts is
    one the submitter could not open."""
    mounts = job_mounts(spec)
    gid, groups = account(owner_uid)
    wanted = list(dict.fromkeys(host for host, _, _, _ in mounts))
    found = await asyncio.to_thread(_check_as, owner_uid, gid, groups, wanted) if wanted else []
    answers = dict(zip(wanted, found, strict=True))
    binds = []
    for host, container, read_only, what in mounts:
        verdict, _, detail = answers[host].partition(" ")
        if verdict != "ok":
            raise InvalidSpec(f"{what} {host} cannot be mounted: uid {owner_uid} cannot open it ({detail})")
        if problem := path_problem(detail, "the real path of " + host):
            raise InvalidSpec(problem)
        binds.append(volume_text(detail, container, read_only))
    return user_pool(pool_key(spec.image or default_image, spec.constraints), owner_uid, gid, binds)


async def mount_refused(user: tuple[int, int], binds: list[str]) -> str | None:
    """Why a pool's binds may not be mounted now, or None. Asked again as the user just before the engine
    mounts them (the engine follows symlinks as root): each source must still open as theirs and still be
    its own real path, not a path replaced by a symlink since the job was queued."""
    uid, gid = user
    sources = list(dict.fromkeys(bind.split(":")[0] for bind in binds))
    try:
        lines = await asyncio.to_thread(_check_as, uid, gid, account(uid)[1], sources)
    except InvalidSpec as e:
        return str(e)
    for source, line in zip(sources, lines, strict=True):
        verdict, _, detail = line.partition(" ")
        if verdict != "ok":
            return f"{source} cannot be mounted: uid {uid} cannot open it any more ({detail})"
        if detail != source:
            return f"{source} cannot be mounted: it has become a link to {detail} since the job was queued"
    return None

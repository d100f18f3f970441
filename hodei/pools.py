"""A job's pool: its worker image, on the swarm provider its placement constraints, and on the docker
provider the user its jobs run as and the host directories its workers mount.

Workers are pooled per pool key, which is what the queue, the scale-up and the worker records call a
job's "image": the image alone when a job has no constraints (so nothing changes for them), else the
image followed by each constraint, sorted, as `` @constraint`` (``IMAGE @node.hostname==build2``), then
for a Docker job that sees its submitter's files `` #user=UID:GID`` and one `` #bind=HOST:CONTAINER:MODE``
per directory, in mount order. A worker mounts one user's directories, so it only ever runs that user's
jobs from those directories.
"""

from __future__ import annotations

import os

SEPARATOR = " @"
EXTRA = " #"  # what follows the image and constraints: the user and the binds of a docker pool
READ_ONLY, READ_WRITE = "ro", "rw"


def normal_constraint(text: str) -> str:
    """``node.labels.gpu == true`` -> ``node.labels.gpu==true``: one spelling per constraint."""
    return "".join(text.split())


def pool_key(image: str, constraints: list[str]) -> str:
    parts = sorted({normal_constraint(c) for c in constraints if c.strip()})
    return image + "".join(SEPARATOR + c for c in parts)


def split_pool(key: str) -> tuple[str, list[str]]:
    """The image and constraints a pool key names (``""``: the configured image)."""
    image, *constraints = shown_pool(key).split(SEPARATOR)
    return image, constraints


def shown_pool(key: str) -> str:
    """What `workers` shows of a pool: its image and constraints, never whose directories it mounts."""
    return key.split(EXTRA)[0]


def user_pool(key: str, uid: int, gid: int, binds: list[str]) -> str:
    """A pool key for jobs run as ``uid:gid`` in workers that mount ``binds`` (``HOST:CONTAINER:MODE``).
    Root's jobs that mount nothing need nothing of a worker: they share the plain pool (and its --min-idle
    workers)."""
    if (uid, gid) == (0, 0) and not binds:
        return key
    return key + f"{EXTRA}user={uid}:{gid}" + "".join(f"{EXTRA}bind={b}" for b in binds)


def split_user(key: str) -> tuple[tuple[int, int] | None, list[str]]:
    """The user (uid, gid) and the binds a pool key names: (None, []) for a pool of no user's."""
    user, binds = None, []
    for part in key.split(EXTRA)[1:]:
        name, _, value = part.partition("=")
        if name == "user":
            uid, _, gid = value.partition(":")
            user = (int(uid), int(gid))
        elif name == "bind":
            binds.append(value)
    return user, binds


def path_problem(path: str, what: str) -> str | None:
    """Why ``path`` cannot be mounted into a Docker worker, or None."""
    if not path.startswith("/"):
        return f"{what} {path!r} is not an absolute path"
    if ":" in path or "\n" in path or "\0" in path or EXTRA in path or SEPARATOR in path:
        return f"{what} {path!r} cannot be mounted: its name holds ':', ' #', ' @' or a newline"
    return None


def parse_volume(text: str, base: str = "/") -> tuple[str, str, bool]:
    """``HOST[:CONTAINER][:ro]`` -> (host, container, read_only), a relative HOST taken from ``base``;
    ValueError with one sentence when it is not that."""
    parts = text.split(":")
    read_only = False
    if len(parts) > 1 and parts[-1] in (READ_ONLY, READ_WRITE):
        read_only = parts.pop() == READ_ONLY
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
        raise ValueError(f"--volume {text!r} is not HOST[:CONTAINER][:ro]")
    host = os.path.normpath(os.path.join(base, parts[0]))
    container = os.path.normpath(parts[1]) if len(parts) == 2 else host
    for path, what in ((host, "--volume host path"), (container, "--volume container path")):
        if problem := path_problem(path, what):
            raise ValueError(problem)
    if container == "/":
        raise ValueError(f"--volume {text!r} would hide the worker's whole file system: mount it under a directory")
    return host, container, read_only


def volume_text(host: str, container: str, read_only: bool) -> str:
    return f"{host}:{container}:{READ_ONLY if read_only else READ_WRITE}"


def constraint_problem(text: str) -> str | None:
    """Why a --constraint is not swarm's placement syntax, or None when it is."""
    c = normal_constraint(text)
    op = "==" if "==" in c else "!=" if "!=" in c else ""
    if not op:
        return f"--constraint {text!r} is not KEY==VALUE or KEY!=VALUE (e.g. node.hostname==build2)"
    key, _, value = c.partition(op)
    if not key or not value or "=" in value or "@" in c:
        return f"--constraint {text!r} is not KEY==VALUE or KEY!=VALUE (e.g. node.hostname==build2)"
    return None

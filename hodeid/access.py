"""Who may do what on hodeid's control socket, in one place: see a job, submit, administer agents.

A caller sees their own jobs; root, hodeid's own user and members of ``--admin-group`` see every user's.
Another user's job is invisible rather than forbidden: asking for it is answered "no job N" (NOT_FOUND),
as for a job that does not exist. Requests refused for who the caller is are answered with AUTH.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hodei.errors import HodeiError
from hodei.protocol import ErrorCode
from hodeid.jobs import check_found
from hodeid.store import StoredJob

if TYPE_CHECKING:
    from hodeid.lifecycle import Lifecycle


NOBODYS = -1  # the owner uid of no job: what an unknown caller's listings are limited to


class Refused(HodeiError):
    """You may not do this on this hodeid."""

    code = ErrorCode.AUTH


def sees_all(admin_group: str | None, uid: int | None) -> bool:
    """Whether this caller sees every user's jobs. A caller whose uid is unknown sees none: fail closed."""
    if uid is None:
        return False
    if uid == 0 or uid == os.geteuid():
        return True
    if not admin_group:
        return False
    try:
        gid = grp.getgrnam(admin_group).gr_gid
        name = pwd.getpwuid(uid).pw_name
        return gid in os.getgrouplist(name, pwd.getpwuid(uid).pw_gid)
    except KeyError:
        return False


@dataclass(frozen=True)
class Caller:
    """The user on the other end of a control connection (``uid`` None: unknown) and what they may do."""

    uid: int | None
    admin: bool  # sees and manages every user's jobs, and the agents

    @classmethod
    def of(cls, admin_group: str | None, uid: int | None) -> Caller:
        return cls(uid, sees_all(admin_group, uid))

    @property
    def owner(self) -> int | None:
        """Whose jobs this caller lists: their own, or everyone's (None). An unknown caller owns no job:
        NOBODYS matches none (None here would mean everyone's)."""
        if self.admin:
            return None
        return self.uid if self.uid is not None else NOBODYS

    @property
    def own(self) -> int:
        """Whose jobs are this caller's own (``list --mine``, ``logs`` with no id): NOBODYS when unknown."""
        return self.uid if self.uid is not None else NOBODYS

    def check_submit(self) -> None:
        """Raise unless hodeid can run a job on this caller's behalf."""
        if self.uid is None:  # who is asking is unknown: nothing may run on their behalf
            raise Refused("hodeid cannot tell which user is asking (no peer credentials on the socket)")
        if os.geteuid() not in (0, self.uid):
            raise Refused(f"hodeid runs as uid {os.geteuid()} and cannot run jobs as uid {self.uid};"
                          " start your own hodeid, or ask for a hodeid that runs as root")

    def check_admin(self, what: str) -> None:
        if not self.admin:
            raise Refused(f"only root or members of hodeid's --admin-group may {what}: run it as root,"
                          " or ask whoever runs hodeid to add you to that group")

    def check_sees(self, job_ids: Sequence[int], jobs: Mapping[int, StoredJob]) -> None:
        """Raise "no job N" for the first of ``job_ids`` that is not among ``jobs`` or not this caller's."""
        check_found(job_ids, jobs if self.admin else {i for i, job in jobs.items() if job.owner_uid == self.uid})

    async def jobs(self, lifecycle: Lifecycle, job_ids: list[int]) -> dict[int, StoredJob]:
        """These jobs, if this caller may see them all: "no job N" for the first one that is not."""
        jobs = await lifecycle.get_many(job_ids)
        self.check_sees(job_ids, jobs)
        return jobs

    async def job(self, lifecycle: Lifecycle, job_id: int) -> StoredJob:
        return (await self.jobs(lifecycle, [job_id]))[job_id]

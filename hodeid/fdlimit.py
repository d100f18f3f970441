"""hodeid's open-file limit: raised for itself at start, the original one handed back to its agents.

Each connection, log file and agent costs hodeid a descriptor, and the usual soft limit (1024) is
low for a daemon. The hard limit is what the system allows, so hodeid takes all of it. Its agents
get the soft limit hodeid was started with (at least 1024 when the hard limit allows), as a login
shell would: a larger one surprises programs that still use select(). A job then gets its
submitter's soft limit (hodei_agent/limits.py), or its agent's when the submitter sent none.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("hodeid")
ORIGINAL = resource.getrlimit(resource.RLIMIT_NOFILE)  # read at import, before hodeid raises it
SHELL_SOFT = 1024


def raise_soft() -> int:
    """Raise hodeid's soft limit to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _nr_open()
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            soft = hard
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, e)
    return soft


def for_children() -> tuple[int, int]:
    """The (soft, hard) limit an agent runs with (and a job whose submitter sent no limit)."""
    soft, hard = ORIGINAL
    floor = SHELL_SOFT if hard == resource.RLIM_INFINITY else min(SHELL_SOFT, hard)
    return max(soft, floor), hard


def restore_for_child(pid: int) -> None:
    """Give a process hodeid just started the limit of ``for_children`` (it runs nothing before it registers)."""
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, for_children())
    except ProcessLookupError:
        pass  # gone already: its exit is reported the usual way
    except (PermissionError, ValueError, OSError) as e:
        log.warning("cannot set the open-file limit of process %d: %s", pid, e)


def in_use() -> int | None:
    """Descriptors hodeid has open now (None where /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20

"""Telling a process from another that later got the same pid: its start time since boot, and the boot.

A pid alone names whatever process holds it now. hodeid keeps pids across its restarts (an agent's,
a job's), and after a crash or a reboot those pids may belong to strangers. So a pid is stored with
the *stamp* of its process, and signalled only while the process holding it has that same stamp.
"""

from __future__ import annotations

import functools
import logging
import os
import signal

log = logging.getLogger("hodei.procs")


@functools.cache
@functools.cache
def boot_id() -> str:
    """This boot's id: read once, since it cannot change under a running process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold anything: count from its end.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def stamp(pid: int) -> str:
    """The stamp of the process that holds ``pid`` now ("" when there is none): "STARTTIME@BOOTID"."""
    started = start_time(pid)
    return "" if started is None else f"{started}@{boot_id()}"


def is_same(pid: int, expected: str) -> bool:
    """Whether ``pid`` is held by the process stamped ``expected``; never for an empty stamp."""
    return bool(expected) and stamp(pid) == expected


def signal_process(pid: int, expected: str, sig: int = signal.SIGKILL, what: str = "process") -> bool:
    """Signal ``pid`` if, and only if, it is still the process stamped ``expected``. Race-free: the
    process is pinned by a pidfd before its stamp is read. Returns whether a signal was sent."""
    if not expected:
        log.warning("not signalling %s %d: it was stored without a start time, so it cannot be told from"
                    " another process that took its pid", what, pid)
        return False
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False  # gone
    try:
        if stamp(pid) != expected:
            log.warning("not signalling %s %d: that pid now belongs to another process", what, pid)
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(fd)


def signal_group(pgid: int, expected: str, sig: int = signal.SIGKILL, what: str = "process group") -> bool:
    """Signal the process group led by ``pgid`` if its leader is still the process stamped ``expected``.

    Without its leader a group cannot be proved to be the same one, so it is not signalled.
    (While the leader lives, its pid, and so the group's id, cannot be anyone else's.)"""
    if not expected:
        log.warning("not signalling %s %d: it was stored without a start time, so it cannot be told from"
                    " another process that took its pid", what, pgid)
        return False
    if stamp(pgid) != expected:
        if os.path.exists(f"/proc/{pgid}"):
            log.warning("not signalling %s %d: that pid now belongs to another process", what, pgid)
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False

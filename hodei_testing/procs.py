"""Processes by pid and by environment: how a harness finds what a hodeid started, and ends it."""

from __future__ import annotations

import os
import signal


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as dead, a process of another user as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids of live processes, this one excepted, whose environment has key=value (one daemon's agents, say)."""
    found = []
    needle = f"{key}={value}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and pid_alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL each pid; SIGCONT first, so that a stopped process (a frozen agent) goes too."""
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                break


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in KiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

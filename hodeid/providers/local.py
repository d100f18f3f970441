"""Workers as ``hodei-agent`` processes on this host.

Each agent gets its own session, so it outlives a daemon restart and keeps its job running. A
worker's handle is "PID:STAMP" (see ``hodei.procs``): after a restart, or a reboot, the pid may be
another process's, and only the stamp tells. Nothing is signalled that does not carry its stamp.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hodei import procs
from hodeid import fdlimit
from hodeid.config import Config
from hodeid.providers.scope import Scopes

# What of hodeid's environment an agent gets: how to run Python, speak and spool, nothing else.
AGENT_ENV = frozenset({"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH"})


def parse_handle(handle: str) -> tuple[int | None, str]:
    """"PID:STAMP" -> (pid, stamp); a handle stored before stamps existed has none: (pid, "")."""
    pid, _, stamp = handle.partition(":")
    return (int(pid) if pid.isdigit() else None), stamp


class LocalProvider:
    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._scopes = Scopes()  # under systemd, each agent in a scope of its own

    async def start(self, worker_id: str, token: str, image: str) -> str:
        # Not hodeid's environment: it may hold secrets, and nothing of it is the jobs' business.
        env = {k: v for k, v in os.environ.items() if k in AGENT_ENV}
        env.update(
            HODEI_AGENT_SOCKET=str(self.config.agent_socket_path),
            HODEI_WORKER_ID=worker_id,
            HODEI_WORKER_TOKEN_FILE="-",  # on its standard input: not in /proc/PID/environ
            HODEI_HEARTBEAT_INTERVAL=str(self.config.heartbeat_interval),
        )
        self.config.worker_log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.worker_log_dir / f"{worker_id}.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *await self._scopes.prefix(worker_id),
                sys.executable,
                "-m",
                "hodei_agent",
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=out,
                env=env,
                cwd="/",  # not hodeid's directory: a hodei_agent/ folder there would shadow the installed agent
                start_new_session=True,
            )
        assert proc.stdin is not None
        proc.stdin.write(token.encode() + b"\n")
        proc.stdin.close()
        fdlimit.restore_for_child(proc.pid)  # before this coroutine yields, so before the agent can register
        handle = f"{proc.pid}:{procs.stamp(proc.pid)}"  # our child, not reaped: the pid is still its own
        self._procs[handle] = proc
        return handle

    async def stop(self, handle: str, force: bool) -> None:
        pid, stamp = parse_handle(handle)
        if pid is not None:
            procs.signal_process(pid, stamp, signal.SIGKILL if force else signal.SIGTERM, "agent process")

    async def exited(self, handle: str) -> str | None:
        proc = self._procs.get(handle)
        if proc is not None:
            if proc.returncode is None:
                return None
            self._procs.pop(handle, None)
            rc = proc.returncode
            return f"the agent process died of signal {-rc}" if rc < 0 else f"the agent process exited with code {rc}"
        # Not our child (the daemon restarted): ask the kernel, and check the pid is still the agent's.
        pid, stamp = parse_handle(handle)
        if pid is None:
            return None
        if stamp:
            return None if procs.is_same(pid, stamp) else "the agent process is gone"
        # Stored without a stamp: a live pid may be a stranger's; the heartbeat timeout decides.
        return None if os.path.exists(f"/proc/{pid}") else "the agent process is gone"

    async def kill_job(self, handle: str, pid: int, pid_start: str = "") -> None:
        procs.signal_group(pid, pid_start, signal.SIGKILL, "job process group")

    async def managed(self) -> dict[str, str]:
        return {}

    async def waiting(self, handle: str) -> str | None:
        return None  # it starts at once or fails

    async def node(self, handle: str) -> str:
        return ""  # this host

    async def close(self) -> None:
        pass

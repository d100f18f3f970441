"""Workers as ``hodei-agent`` processes on this host.

Each agent gets its own session, so it outlives a daemon restart and keeps its job running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from hodeid.config import Config


class LocalProvider:
    name = "local"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, worker_id: str, token: str, image: str) -> str:
        env = dict(os.environ)
        env.update(
            HODEI_AGENT_SOCKET=str(self.config.agent_socket_path),
            HODEI_WORKER_ID=worker_id,
            HODEI_WORKER_TOKEN=token,
            HODEI_HEARTBEAT_INTERVAL=str(self.config.heartbeat_interval),
        )
        self.config.worker_log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.config.worker_log_dir / f"{worker_id}.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hodei_agent",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                cwd="/",  # not hodeid's directory: a hodei_agent/ folder there would shadow the installed agent
                start_new_session=True,
            )
        handle = str(proc.pid)
        self._procs[handle] = proc
        return handle

    async def stop(self, handle: str, force: bool) -> None:
        try:
            os.kill(int(handle), signal.SIGKILL if force else signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass

    async def exited(self, handle: str) -> str | None:
        proc = self._procs.get(handle)
        if proc is not None:
            if proc.returncode is None:
                return None
            self._procs.pop(handle, None)
            rc = proc.returncode
            return f"the agent process died of signal {-rc}" if rc < 0 else f"the agent process exited with code {rc}"
        # Not our child (the daemon restarted): ask the kernel.
        try:
            os.kill(int(handle), 0)
        except ProcessLookupError:
            return "the agent process is gone"
        except (PermissionError, ValueError):
            pass
        return None

    async def kill_job(self, handle: str, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    async def managed(self) -> dict[str, str]:
        return {}

    async def waiting(self, handle: str) -> str | None:
        return None  # it starts at once or fails

    async def node(self, handle: str) -> str:
        return ""  # this host

    async def close(self) -> None:
        pass

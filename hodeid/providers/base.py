"""The port every worker provider implements."""

from __future__ import annotations

from typing import Protocol


class Provider(Protocol):
    name: str

    async def start(self, worker_id: str, token: str, image: str) -> str:
        """Start a worker whose agent will register as ``worker_id`` with ``token``; return its handle."""
        ...

    async def stop(self, handle: str, force: bool) -> None:
        """Make the worker go away: politely, or at once with ``force``. Idempotent."""
        ...

    async def exited(self, handle: str) -> str | None:
        """Why the worker is gone ("exited with code 1", ...), or None while it runs."""
        ...

    async def kill_job(self, handle: str, pid: int, pid_start: str = "") -> None:
        """Last resort when an agent does not answer a cancel: kill the job's process group, if its
        leader still has the stamp ``pid_start`` (see ``hodei.procs``)."""
        ...

    async def waiting(self, handle: str) -> str | None:
        """Why a started worker does not run yet (no node can take it, ...), or None."""
        ...

    async def node(self, handle: str) -> str:
        """The machine the worker runs on, when it is not this host ("" for this host)."""
        ...

    async def managed(self) -> dict[str, str]:
        """Workers of this provider that exist now, even ones the daemon forgot: worker id -> handle."""
        ...

    async def close(self) -> None: ...

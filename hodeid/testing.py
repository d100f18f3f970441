"""Fakes for in-process tests of hodeid's logic (as procrastinate ships ``InMemoryConnector``).

``FakeProvider`` starts no process and records what it was asked; ``FakeLink`` stands for an agent's
connection and records what hodeid sent it. Every behaviour a user sees is also tested against the
real providers and real agents (tests/); these are for the rules in between.
"""

from __future__ import annotations

import asyncio
from typing import Any


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []  # (worker id, image)
        self.stopped: list[tuple[str, bool]] = []  # (handle, force)
        self.killed: list[tuple[str, int, str]] = []  # (handle, pid, stamp)
        self.gone: dict[str, str] = {}  # handle -> why it is gone, for ``exited``
        self.exited_gate: asyncio.Event | None = None  # when set, ``exited`` waits for it (a slow engine)
        self.stop_gate: asyncio.Event | None = None  # when set, ``stop`` waits for it (a slow removal)

    async def start(self, worker_id: str, token: str, image: str) -> str:
        self.started.append((worker_id, image))
        return f"fake-{worker_id}"

    async def stop(self, handle: str, force: bool) -> None:
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        self.stopped.append((handle, force))

    async def exited(self, handle: str) -> str | None:
        if self.exited_gate is not None:
            await self.exited_gate.wait()
        return self.gone.get(handle)

    async def kill_job(self, handle: str, pid: int, pid_start: str = "") -> None:
        self.killed.append((handle, pid, pid_start))

    async def waiting(self, handle: str) -> str | None:
        return None

    async def node(self, handle: str) -> str:
        return ""

    async def managed(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        pass


class FakeLink:
    """An agent's connection as hodeid's side sees it: what was written, in order."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def write(self, msg: Any) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        self.sent.append(msg)

    async def send(self, msg: Any) -> None:
        self.write(msg)

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]

"""hodeictl's blocking Client, awaitable: for the benchmarks whose event loop must keep running
(Docker event streams, probes on a timer) while a request waits. Each call runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

from hodeictl.client import Client as _Blocking

_END = object()


class Client:
    def __init__(self, socket: str | Path | None = None) -> None:
        self._c = _Blocking(socket)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._c, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def logs(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        it = self._c.logs(*args, **kwargs)
        while (msg := await asyncio.to_thread(next, it, _END)) is not _END:
            yield msg

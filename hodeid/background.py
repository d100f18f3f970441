"""Background tasks in anyio task groups: each owner's tasks live in a group entered for the owner's life.

``Background`` is entered (``async with``) by the code that owns the object whose life the tasks share,
so no task outlives its owner. Each task is named; one that fails is logged with its name and the
error, and its siblings go on: a background task never fails unseen, and never takes hodeid down.
(The loops hodeid cannot run without are not background tasks: the server runs them itself.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

log = logging.getLogger("hodeid.tasks")


class Background:
    def __init__(self, owner: str) -> None:
        self.owner = owner  # for the log: whose task failed, or could not start
        self._group: anyio.abc.TaskGroup | None = None  # while tasks may start in it
        self._leaving: anyio.abc.TaskGroup | None = None  # while the owner waits for its tasks to end
        self._end_by = math.inf  # when the tasks still running at the owner's leaving are cancelled

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group, self._end_by = group, math.inf
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        group, self._group = self._group, None  # nothing starts while the group winds down
        assert group is not None
        self._leaving = group
        group.cancel_scope.deadline = min(group.cancel_scope.deadline, self._end_by)
        try:
            return await group.__aexit__(kind, exc, tb)
        except BaseExceptionGroup as wrapped:
            # The tasks never raise (``_logged``), so the group can only carry the owner's own error (or a
            # KeyboardInterrupt): let that pass as it is, so that callers still see, say, a HodeiError.
            if exc is not None and wrapped.exceptions == (exc,):
                raise exc from exc.__cause__
            raise
        finally:
            self._leaving = None

    def spawn(self, name: str, func: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``func(*args)`` as a task of this group, named ``name``; False (and said in the log) when
        the group is not running, so that nothing is started that no one would wait for."""
        if self._group is None:  # the owner is stopping (or never started)
            log.warning("%s is not running: task %s not started", self.owner, name)
            return False
        self._group.start_soon(self._logged, name, func, args, name=name)
        return True

    def stop_within(self, seconds: float) -> None:
        """Cancel the tasks still running ``seconds`` from now (0: now) once the owner leaves the group,
        or at once if it is leaving already: leaving waits no longer than that. The owner's own code in
        the group is never cancelled by this (the group's cancel scope would: it is only set on leaving)."""
        self._end_by = min(self._end_by, anyio.current_time() + seconds)
        if self._leaving is not None:
            self._leaving.cancel_scope.deadline = min(self._leaving.cancel_scope.deadline, self._end_by)

    def cancel(self) -> None:
        self.stop_within(0)

    async def _logged(self, name: str, func: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await func(*args)
        except Exception:
            log.exception("%s: background task %s failed", self.owner, name)

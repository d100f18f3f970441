"""Wake-ups per job: a follower or waiter takes the event, checks, then waits; a change sets it."""

from __future__ import annotations

import asyncio


class Notifier:
    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}

    def event(self, key: int) -> asyncio.Event:
        """Take this before checking the condition, so a change in between is not missed."""
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def notify(self, key: int) -> None:
        ev = self._events.pop(key, None)
        if ev is not None:
            ev.set()


class Wakeup:
    """The scheduler's alarm: whoever may have made work to hand out sets it, the scheduler waits on it.

    One object, made once and handed to the parts that set it: nobody assigns a callback into another.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()

    def later(self, delay: float) -> asyncio.TimerHandle:
        """Set it after ``delay`` seconds (a retry's backoff ending, a provisioning backoff)."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), self.set)

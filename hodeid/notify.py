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

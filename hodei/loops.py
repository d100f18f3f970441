"""The event loop every hodei process runs on: uvloop when it is importable, asyncio's own otherwise.

hodeid and hodei-agent both start through ``run``, so the choice is made here only.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Coroutine


def run(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

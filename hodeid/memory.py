"""Give freed memory back to the system after a burst, such as a thousand log followers leaving.

glibc keeps the chunks Python frees in its heap and returns only the free space at the heap's top,
so hodeid's RSS would stay near the burst's peak. ``malloc_trim(0)`` also releases the free pages
in the middle. It is called once a follower leaves, at most once per TRIM_DELAY, and is a no-op
where the C library has no such function.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
from collections.abc import Callable

TRIM_DELAY = 1.0  # seconds: a thousand followers leaving cost one trim, not a thousand


def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's malloc_trim, from the symbols already loaded (find_library would run ldconfig)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


_trim = _malloc_trim()
_scheduled = False


def trim_soon() -> None:
    """Return free heap pages to the system TRIM_DELAY from now (once, however often it is asked)."""
    global _scheduled
    if _trim is None or _scheduled:
        return
    _scheduled = True
    asyncio.get_running_loop().call_later(TRIM_DELAY, _run)


def _run() -> None:
    global _scheduled
    _scheduled = False
    gc.collect()  # first what ended connections left in reference cycles (exceptions, tracebacks, frames)
    assert _trim is not None
    _trim(0)

"""A job's open-file limit: its submitter's soft limit (`ulimit -n` in the shell that submitted it), as
far as the agent's hard limit allows, whatever limit hodeid and the agent run with themselves."""

from __future__ import annotations

import resource
from collections.abc import Callable

NOFILE = resource.RLIMIT_NOFILE


def set_for_spawn(soft: int | None) -> Callable[[], None]:
    """Give this process the job's soft limit for the spawn (the child inherits it; a preexec_fn would
    cost the fast vfork spawn); returns what puts the agent's own back."""
    if soft is None:
        return _nothing
    old = resource.getrlimit(NOFILE)
    hard = old[1]
    want = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    if want == old[0]:
        return _nothing
    try:
        resource.setrlimit(NOFILE, (want, hard))
    except (ValueError, OSError):
        return _nothing
    return lambda: resource.setrlimit(NOFILE, old)


def _nothing() -> None:
    pass

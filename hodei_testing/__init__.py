"""Start a private hodeid in a temp dir and talk to it as a user would: the harness of hodei's tests and benchmarks.

    from hodei_testing import Harness, wait_for

    with Harness(prefix="mybench-") as h:            # cleanup on exit: daemons, agents, temp dir
        d = h.daemon("main", ["--max-workers", "2"], start=True)
        job = d.submit("echo hello")                 # the real hodeictl, over the real socket
        assert d.wait_final(job)["state"] == "succeeded"
        with d.client() as c:                        # or hodeictl's Client, blocking (d.aclient(): awaitable)
            c.list(limit=1)

It ships in the wheel, as procrastinate ships its testing helpers: a project that drives hodei can start
a throw-away hodeid in its own tests the same way. It needs nothing beyond hodei itself (no pytest).
"""

from .aclient import Client as AsyncClient
from .daemon import BIN, FINAL, Daemon
from .harness import Harness
from .procs import fd_count, kill_all, pid_alive, processes_with_env, rss_kb
from .wait import wait_for, wait_for_async

__all__ = ["BIN", "FINAL", "AsyncClient", "Daemon", "Harness", "fd_count", "kill_all", "pid_alive",
           "processes_with_env", "rss_kb", "wait_for", "wait_for_async"]

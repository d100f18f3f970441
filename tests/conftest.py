"""A real hodeid in a temp dir, talked to over its real socket, running real processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator

import pytest

from hodei_testing import BIN, FINAL, Daemon, Harness, pid_alive, processes_with_env, wait_for

# The test files import these from here; they live in hodei_testing, shared with bench/.
__all__ = ["BIN", "FINAL", "Daemon", "need_root", "pid_alive", "processes_with_env", "wait_for"]


@pytest.fixture
def make_daemon(request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    """Start hodeid with extra flags; every daemon and agent is gone after the test."""
    harness = Harness(prefix="hodei-t")

    def make(*args: str, start: bool = True) -> Daemon:
        # each in a temp dir of its own, which a test may open to other users
        d = harness.daemon(None, ["--max-workers", "4", "--heartbeat-interval", "0.5", "--heartbeat-timeout", "5",
                                  *args], log_level="debug")
        return d.start() if start else d

    yield make
    harness.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        for d in harness.daemons:
            sys.stderr.write(f"\n--- hodeid log ({d.root}) ---\n{d.log()[-20000:]}\n")
    harness.cleanup()


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()


@pytest.fixture
def shared(make_daemon: Callable[..., Daemon]) -> Daemon:
    """A root hodeid whose control socket is open to the `nogroup` group, so other users can reach it."""
    need_root("needs root to act as two users")
    d: Daemon = make_daemon("--socket-group", "nogroup", start=False)
    d.root.chmod(0o755)
    return d.start()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def need_root(why: str) -> None:
    """Skip a test that needs root when run by hand; under CI=true, fail instead: nothing skips silently."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires this test to run, but it {why} and this is not root")
    pytest.skip(why)

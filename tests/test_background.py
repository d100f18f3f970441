"""hodeid's background tasks live in task groups: none fails unseen, none outlives its owner, the loops
hodeid cannot work without stop it loudly when they fail, and a stop lets pending worker removals finish."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from test_lifecycle_unit import parts

from hodei.errors import HodeiError
from hodeid.background import Background
from hodeid.config import Config
from hodeid.scheduler import Scheduler
from hodeid.server import Server


def test_a_failing_background_task_is_logged_with_its_name_and_its_siblings_go_on(caplog) -> None:
    finished: list[str] = []

    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("the engine said no")

    async def works() -> None:
        await anyio.sleep(0.05)
        finished.append("works")

    async def main() -> None:
        async with Background("the worker pool") as tasks:
            tasks.spawn("provision-local", fails)
            tasks.spawn("locate-w1", works)

    with caplog.at_level(logging.ERROR, logger="hodeid.tasks"):
        asyncio.run(main())
    assert finished == ["works"]
    [record] = [r for r in caplog.records if "provision-local" in r.getMessage()]
    assert record.getMessage() == "the worker pool: background task provision-local failed"
    assert record.exc_info is not None and "the engine said no" in str(record.exc_info[1])


def test_nothing_starts_in_a_group_that_is_not_running(caplog) -> None:
    ran: list[str] = []

    async def task() -> None:
        ran.append("ran")

    async def main() -> bool:
        tasks = Background("the job lifecycle")
        async with tasks:
            pass
        return tasks.spawn("cancel-watchdog-7", task)

    with caplog.at_level(logging.WARNING, logger="hodeid.tasks"):
        assert asyncio.run(main()) is False
    assert ran == []
    assert "the job lifecycle is not running: task cancel-watchdog-7 not started" in caplog.text


def test_the_owners_own_error_passes_through_as_it_is() -> None:
    async def main() -> None:
        async with Background("hodeid") as tasks:
            tasks.spawn("forever", anyio.sleep_forever)
            raise HodeiError("cannot listen on 127.0.0.1:1: permission denied")

    with pytest.raises(HodeiError, match="cannot listen"):
        asyncio.run(main())


def test_cancelling_the_tasks_leaves_the_owners_own_code_running() -> None:
    """What ``cancel`` asks for happens as the owner leaves the group: a server that stops accepting in
    the middle of its stop still finishes the rest of the stop (retiring idle workers, and so on)."""
    steps: list[str] = []

    async def main() -> None:
        async with Background("hodeid's agent listeners") as tasks:
            tasks.spawn("accept-tcp", anyio.sleep_forever)
            tasks.cancel()
            await anyio.sleep(0.01)
            steps.append("the rest of the stop")
        steps.append("left")

    asyncio.run(asyncio.wait_for(main(), 30))
    assert steps == ["the rest of the stop", "left"]


def test_a_stop_lets_a_pending_worker_removal_finish(tmp_path: Path) -> None:
    """Leaving the pool's life waits for a removal that is under way (the engine is slow to do it), so
    the worker is removed, not left behind."""
    async def main() -> tuple[str, list[tuple[str, bool]]]:
        async with parts(tmp_path) as p:
            p.provider.stop_gate = gate = asyncio.Event()
            worker, _ = await p.worker()
            await p.pool.stop_idle()  # the idle worker is asked to go ...
            await p.pool.remove_stopping()  # ... and removed, as at every stop
            assert p.provider.stopped == []  # under way
            asyncio.get_running_loop().call_later(0.1, gate.set)
        return worker.handle, p.provider.stopped

    handle, stopped = asyncio.run(asyncio.wait_for(main(), 30))
    assert stopped == [(handle, False)]


def test_removals_that_never_finish_hold_a_stop_no_longer_than_their_bound(tmp_path: Path) -> None:
    async def main() -> list[tuple[str, bool]]:
        async with parts(tmp_path, removals_bound=0.1) as p:
            p.provider.stop_gate = asyncio.Event()  # never set: the engine hangs
            await p.worker()
            await p.pool.stop_idle()
            await p.pool.remove_stopping()
        return p.provider.stopped

    assert asyncio.run(asyncio.wait_for(main(), 30)) == []  # returned, with the removal given up


def test_a_failing_scheduler_loop_stops_hodeid_loudly(tmp_path: Path, monkeypatch, caplog) -> None:
    """hodeid does not run on without its scheduler: the failure is logged with what failed, hodeid
    stops as at a signal (sockets removed), and says why with an error, for a non-zero exit."""
    async def broken(self: Scheduler) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("a bug in a scheduling pass")

    monkeypatch.setattr(Scheduler, "run", broken)
    config = Config(state_dir=tmp_path / "state", socket=tmp_path / "hodei.sock")
    with caplog.at_level(logging.INFO), pytest.raises(HodeiError, match="its scheduler loop failed"):
        asyncio.run(asyncio.wait_for(Server(config).run(), 30))
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == "hodeid's scheduler loop failed; stopping hodeid"
    assert record.exc_info is not None and "a bug in a scheduling pass" in str(record.exc_info[1])
    assert "stopped" in [r.getMessage() for r in caplog.records]
    assert not config.socket.exists() and not config.agent_socket_path.exists()

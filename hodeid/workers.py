"""The workers hodeid knows: provisioning, registration, heartbeats, retirement and loss.

A worker counts as available only once its agent has registered with its token and said Ready, and
only while its heartbeats keep arriving: a container or process that never registers is removed
after the provision timeout, and one that goes silent is marked lost with its job.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hodei.framing import FrameWriter
from hodei.protocol import Shutdown, WorkerInfo, WorkerState
from hodeid.background import Background
from hodeid.config import Config
from hodeid.notify import Wakeup
from hodeid.providers.base import Provider
from hodeid.store import DatabaseDamaged, Store, StoredJob
from hodeid.worker import REMOTE, AuthError, Worker, hash_token

log = logging.getLogger("hodeid.workers")
S = WorkerState
STRAY_SWEEP = 30.0  # seconds between looks for workers of ours that the daemon does not know
REMOVALS_BOUND = 20.0  # seconds a stop waits for pending worker removals, so none is left behind

# Each state a worker may enter, and the states it may enter it from. Every change is checked here
# (``Pool.move``); a change that is not allowed is refused and logged, never made.
ALLOWED_FROM: dict[WorkerState, frozenset[WorkerState]] = {
    S.STARTING: frozenset(),
    S.IDLE: frozenset({S.STARTING, S.BUSY}),
    S.BUSY: frozenset({S.STARTING, S.IDLE}),
    S.STOPPING: frozenset({S.STARTING, S.IDLE, S.BUSY}),
    S.GONE: frozenset({S.STARTING, S.IDLE, S.BUSY, S.STOPPING}),
    S.LOST: frozenset({S.STARTING, S.IDLE, S.BUSY, S.STOPPING}),
}
# What the workers table keeps: recovery needs to know a worker started, registered, was stopping or is
# over. Which job a registered worker runs is the jobs table's to say, so idle <-> busy is not written.
REGISTERED = (S.IDLE, S.BUSY)


def stored_from(states: frozenset[WorkerState]) -> list[str]:
    """The states a worker's row may hold when it is in one of ``states`` (a registered worker's row says
    idle or busy, whichever it registered as)."""
    rows = set(states) | (set(REGISTERED) if states & set(REGISTERED) else set())
    return sorted(str(s) for s in rows)


class Pool:
    def __init__(self, config: Config, store: Store, provider: Provider, wakeup: Wakeup) -> None:
        self.config = config
        self.tasks = Background("the worker pool")  # provisioning, retirements, locating, stray sweeps
        self.removals = Background("worker removal")  # waited for at a stop, within REMOVALS_BOUND
        self.store = store
        self.provider = provider
        self.workers: dict[str, Worker] = {}
        self.wakeup = wakeup  # the scheduler's: set when a worker may take work, or room for one was made
        self._backoff = 0.0
        self._backoff_until = 0.0
        self._swept = time.monotonic()
        self.remote_pools: set[str] = set()  # --image names served by remote agents, never provisioned here

    # ---- views ----------------------------------------------------------------------------------

    def live(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.state not in (S.GONE, S.LOST)]

    def provisioned(self) -> list[Worker]:
        """Live workers this hodeid started (remote agents do not count against --max-workers)."""
        return [w for w in self.live() if w.provider != REMOTE]

    def can_scale(self) -> bool:
        """Whether ``scale`` could do anything: start a worker, or retire an idle one to make room."""
        return time.monotonic() >= self._backoff_until and (
            len(self.provisioned()) < self.config.max_workers or bool(self.idle()))

    def idle(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.available]

    @property
    def default_image(self) -> str:
        """The image of jobs that name none: the configured one for docker and swarm, none for local processes."""
        return self.config.image if self.provider.name in ("docker", "swarm") else ""

    def infos(self, viewer: int | None = None) -> list[WorkerInfo]:
        """What ``workers`` shows; to a ``viewer`` (a uid) who may not see every job, only their own jobs' ids."""
        return [w.info(viewer) for w in self.live()]

    def _back_off(self) -> None:
        """No new worker for a while: one could not be started, or died before its agent registered."""
        self._backoff = min(max(self._backoff * 2, 1.0), 30.0)
        self._backoff_until = time.monotonic() + self._backoff
        self.tasks.spawn("provision-backoff", self._wake_after_backoff)

    def registered(self, worker: Worker) -> None:
        """A new worker's agent registered: learn, in the background, which machine it runs on, for
        `workers` and `show`."""
        if worker.provider == self.provider.name and worker.handle:
            self.tasks.spawn(f"locate-{worker.id}", self._locate, worker)

    async def _locate(self, worker: Worker) -> None:
        try:
            worker.node = await self.provider.node(worker.handle)
            if worker.node:
                await self.store.update_worker(worker.id, node=worker.node)
        except Exception as e:
            log.info("cannot tell where worker %s runs: %s", worker.id, e)

    async def _note_waiting(self, image: str, why: str) -> None:
        """Say on the queued jobs of a pool why no worker of it runs yet."""
        await self.store.note_queued("" if image == self.default_image else image, f"waiting for a worker: {why}")

    async def move(self, worker: Worker, to: WorkerState, **fields: Any) -> bool:
        """The one way a worker changes state: checked against ``ALLOWED_FROM``, saved when the workers
        table keeps the difference (with a guarded update whose row count is checked), and the scheduler
        woken when the worker may take work. False, and nothing changed, when the move is not allowed."""
        old = worker.state
        if old is to:
            return True
        if old not in ALLOWED_FROM[to]:
            log.warning("worker %s is %s and cannot become %s; left as it is", worker.id, old, to)
            return False
        worker.state = to
        worker.since = time.monotonic()
        if not (old in REGISTERED and to in REGISTERED):
            try:
                saved = await self.store.move_worker(worker.id, stored_from(ALLOWED_FROM[to]), str(to),
                                                     jobs_run=worker.jobs_run, **fields)
            except DatabaseDamaged:  # logged once by the store; the worker still goes (a stop must finish)
                saved = True
            if not saved:
                log.error("worker %s: its stored state was not one %s may follow; stored nothing", worker.id, to)
        if to is S.IDLE or to in (S.GONE, S.LOST):  # work for it, or room for another worker
            self.wakeup.set()
        return True

    # ---- provisioning ---------------------------------------------------------------------------

    def scale(self, demand: dict[str, int]) -> None:
        """Start workers for queued jobs that no idle worker can take, within --max-workers."""
        if time.monotonic() < self._backoff_until:
            return
        want = {image: n for image, n in demand.items() if image not in self.remote_pools or not image}
        default = self.default_image
        if self.config.min_idle:
            idle_default = sum(1 for w in self.provisioned() if w.image == default and w.state in (S.STARTING, S.IDLE))
            want[default] = want.get(default, 0) + max(0, self.config.min_idle - idle_default)
        room = self.config.max_workers - len(self.provisioned())
        for image, queued in sorted(want.items(), key=lambda kv: -kv[1]):
            image = image or default
            starting = sum(1 for w in self.provisioned() if w.image == image and w.state is S.STARTING)
            log.debug("scale %r: %d queued, %d starting, room for %d", image, queued, starting, room)
            for _ in range(min(queued - starting, room)):
                self.tasks.spawn(f"provision-{image or 'local'}", self.provision, image)
                room -= 1
            if room <= 0 and queued > starting:
                self._make_room(image)

    def _make_room(self, image: str) -> None:
        """At --max-workers with jobs waiting for another image: retire one idle worker of an unneeded image."""
        for worker in self.idle():
            if worker.image != image and worker.provider != REMOTE:
                worker.retiring = True  # taken out of the idle ones now; stopped by the task
                self.tasks.spawn(f"retire-{worker.id}", self.retire, worker,
                                 "making room for a worker of another image")
                return

    async def provision(self, image: str) -> Worker | None:
        worker_id = "w" + secrets.token_hex(4)
        token = secrets.token_urlsafe(24)
        worker = Worker(worker_id, self.provider.name, image, hash_token(token))
        self.workers[worker_id] = worker
        await self.store.insert_worker(worker_id, self.provider.name, worker.token_hash, image)
        try:
            worker.handle = await self.provider.start(worker_id, token, image)
        except Exception as e:  # a provider error must not take the daemon down
            message = str(e) or type(e).__name__
            self._back_off()
            log.error("cannot start a %s worker: %s (next try in %.0fs)", self.provider.name, message, self._backoff)
            await self._note_waiting(image, message)
            await self._forget(worker, S.GONE)
            return None
        self._backoff = 0.0
        await self.store.update_worker(worker_id, handle=worker.handle)
        log.info("started worker %s (%s)", worker_id, worker.handle)
        return worker

    async def _wake_after_backoff(self) -> None:
        """Wake the scheduler once the backoff is over: not a moment before, or ``can_scale`` would still
        say no and nothing else might wake it (a timer may fire a hair early)."""
        while (left := self._backoff_until - time.monotonic()) > 0:
            await asyncio.sleep(left + 0.001)
        self.wakeup.set()

    # ---- registration ---------------------------------------------------------------------------

    async def authenticate(self, worker_id: str, token: str, rotates: bool) -> tuple[Worker, str]:
        """The worker this agent is, and the token it presents next time ("" when it keeps its own).

        A worker hodeid started gets a new token at every connection, so the one it was started with
        (or any copy of an earlier one) is spent once used. A remote agent keeps the token it was
        registered with: its operator configured it. While a worker's agent is connected and heard
        from, another connection with its token is refused: only one process is that worker.
        """
        worker = self.workers.get(worker_id)
        expected = worker.token_hash if worker else await self.store.worker_token_hash(worker_id)
        if expected is None or not hmac.compare_digest(expected, hash_token(token)):
            raise AuthError(f"agent {worker_id or '(no id)'} presented no valid token")
        if worker is None:  # a remote agent, or a worker from before a daemon restart
            rows = await self.store.worker_handles()
            provider, _, handle, image = rows[worker_id]
            worker = Worker(worker_id, provider, image, expected)
            worker.handle = handle
            self.workers[worker_id] = worker
        if worker.state in (S.GONE, S.LOST):
            raise AuthError(f"worker {worker_id} was already removed; the agent should exit")
        if worker.writer is not None and time.monotonic() - worker.last_seen < 2 * self.config.heartbeat_interval:
            raise AuthError(f"refused a second connection for worker {worker_id}, whose agent is connected"
                            " and heartbeating: someone else holds its token")
        new_token = ""
        if rotates and worker.provider != REMOTE:
            new_token = secrets.token_urlsafe(24)
            worker.token_hash = hash_token(new_token)
            await self.store.update_worker(worker_id, token_hash=worker.token_hash)
        return worker, new_token

    def attach(self, worker: Worker, writer: FrameWriter) -> None:
        if worker.writer is not None and worker.writer is not writer:
            worker.writer.close()  # a reconnect replaces the old connection
        worker.writer = writer
        worker.ready = False
        worker.last_seen = time.monotonic()

    async def detach(self, worker: Worker, writer: FrameWriter) -> None:
        if worker.writer is not writer:
            return
        worker.writer = None
        worker.ready = False
        if worker.provider == REMOTE and worker.job_id is None:
            self._drop(worker)  # registered still; it may come back
        elif worker.state is S.STOPPING or (worker.retiring and worker.job_id is None):
            await self._forget(worker, S.GONE)

    def _drop(self, worker: Worker) -> None:
        """Forget a remote agent's connection, not its registration."""
        if worker.writer is not None:
            worker.writer.close()
            worker.writer = None
        self.workers.pop(worker.id, None)
        self.wakeup.set()

    async def add_remote(self, pool: str) -> tuple[str, str]:
        """Register an agent that will connect from another machine; returns its id and token."""
        worker_id = "r" + secrets.token_hex(4)
        token = secrets.token_urlsafe(24)
        await self.store.insert_worker(worker_id, REMOTE, hash_token(token), pool, state=str(S.IDLE))
        self.remote_pools.add(pool)
        log.info("registered remote agent %s (pool %r)", worker_id, pool)
        return worker_id, token

    async def unregister_remote(self, worker_id: str) -> tuple[bool, Worker | None]:
        """Revoke a remote agent's registration: (whether there was one, its connected worker if that
        holds a job, whose end is the lifecycle's to decide). An idle one is told to exit and forgotten."""
        rows = await self.store.worker_handles()
        if rows.get(worker_id, ("",))[0] != REMOTE:
            return False, None
        await self.store.move_worker(worker_id, stored_from(ALLOWED_FROM[S.GONE]), str(S.GONE))
        worker = self.workers.get(worker_id)
        if worker is not None and worker.job_id is None:
            worker.send(Shutdown(reason="its registration was removed"))
            self._drop(worker)
            return True, None
        return True, worker

    def seen(self, worker: Worker) -> None:
        worker.last_seen = time.monotonic()

    # ---- leaving --------------------------------------------------------------------------------

    async def retire(self, worker: Worker, reason: str) -> None:
        """Ask an idle worker to exit; a busy one exits after its job."""
        worker.retiring = True
        if worker.job_id is None and await self.move(worker, S.STOPPING):
            log.info("retiring worker %s: %s", worker.id, reason)
            if not worker.send(Shutdown(reason=reason)):
                await self._forget(worker, S.GONE)

    async def lose(self, worker: Worker) -> None:
        """The worker is gone without saying so: what is left of it is removed, its job's processes
        first (when they can be proved to be the job's). The job's end is the lifecycle's to decide."""
        if worker.provider == REMOTE:
            worker.release()
            self._drop(worker)  # nothing of it to remove here; it may reconnect later
            return
        if worker.job_id is not None and worker.job_pid is not None and worker.provider == self.provider.name:
            await self.provider.kill_job(worker.handle, worker.job_pid, worker.job_pid_start)
        await self._forget(worker, S.LOST)

    async def _forget(self, worker: Worker, state: WorkerState) -> None:
        """Drop the worker and have its process or container removed, in the background."""
        force = state is S.LOST or worker.state is S.STARTING
        if not await self.move(worker, state, job_id=worker.job_id):
            return  # already gone or lost: removed once
        if worker.writer is not None:
            worker.writer.close()
            worker.writer = None
        self.workers.pop(worker.id, None)
        if worker.handle:
            self.removals.spawn(f"remove-{worker.id}", self._remove, worker, force)

    async def _remove(self, worker: Worker, force: bool) -> None:
        try:
            await self.provider.stop(worker.handle, force=force)
        except Exception as e:
            log.error("could not remove worker %s: %s", worker.id, e)

    @asynccontextmanager
    async def running(self, removals_bound: float = REMOVALS_BOUND) -> AsyncIterator[Pool]:
        """The pool's life: its background tasks run inside; leaving cancels what is still provisioning,
        locating or sweeping, and lets pending removals of workers finish (within ``removals_bound``
        seconds), so none is left behind."""
        async with self.removals:
            try:
                async with self.tasks:
                    yield self
                    self.tasks.cancel()
            finally:
                self.removals.stop_within(removals_bound)

    # ---- supervision ----------------------------------------------------------------------------

    def current(self, worker: Worker) -> bool:
        """Still this pool's live worker (not replaced, forgotten, gone or lost since it was looked at)."""
        return self.workers.get(worker.id) is worker and worker.state not in (S.GONE, S.LOST)

    async def remove_strays(self) -> None:
        """Remove the provider's workers this daemon does not know (left by a crash, or made by hand)."""
        for worker_id, handle in (await self.provider.managed()).items():
            if worker_id not in self.workers:
                log.info("removing stray worker %s (%s)", worker_id, handle)
                await self.provider.stop(handle, force=True)

    async def check(self) -> list[tuple[Worker, str]]:
        """One pass of supervision. Unregistered, stopped and idle-too-long workers are dealt with here;
        the workers that died or went silent are returned with why, for the lifecycle to lose (their
        jobs' ends are its to decide). Each worker is looked at again after every wait: one removed
        meanwhile is left alone."""
        now = time.monotonic()
        if now - self._swept > STRAY_SWEEP:
            self._swept = now
            self.tasks.spawn("remove-strays", self.remove_strays)
        cfg = self.config
        idle_count = len(self.idle())
        lost: list[tuple[Worker, str]] = []
        for worker in list(self.workers.values()):
            if not self.current(worker):
                continue
            age = now - worker.since
            if worker.provider == REMOTE:  # not ours to start, retire or remove: only its silence counts
                if now - worker.last_seen > cfg.heartbeat_timeout:
                    lost.append((worker, f"no heartbeat for {now - worker.last_seen:.0f}s"))
                continue
            gone = await self.provider.exited(worker.handle) if worker.handle else None
            if not self.current(worker):
                continue
            if worker.state is S.STARTING:
                if gone or age > cfg.provision_timeout:
                    why = gone or f"its agent did not register within {cfg.provision_timeout:g}s"
                    log.warning("removing worker %s: %s", worker.id, why)
                    await self._forget(worker, S.GONE)
                    await self._note_waiting(worker.image, why)
                    if gone:  # it died (an image no node has, ...): a second before the next, not a churn
                        self._back_off()
                elif worker.handle and (waiting := await self.provider.waiting(worker.handle)):
                    await self._note_waiting(worker.image, waiting)
                continue
            silent = now - worker.last_seen
            if gone and worker.state is not S.STOPPING:
                lost.append((worker, gone))
            elif silent > cfg.heartbeat_timeout and worker.state is not S.STOPPING:
                lost.append((worker, f"no heartbeat for {silent:.0f}s"))
            elif worker.state is S.STOPPING and (gone or age > cfg.heartbeat_timeout):
                await self._forget(worker, S.GONE)
            elif worker.state is S.IDLE and age > cfg.idle_timeout and idle_count > cfg.min_idle:
                await self.retire(worker, f"idle for {age:.0f}s")
                idle_count -= 1
        return lost

    async def stop_idle(self) -> None:
        """At shutdown: idle workers are asked to exit (remote agents stay), workers still starting are removed."""
        for worker in self.idle():
            if worker.provider != REMOTE:
                await self.retire(worker, "hodeid is stopping")
        for worker in [w for w in self.workers.values() if w.state is S.STARTING]:
            await self._forget(worker, S.GONE)

    async def remove_stopping(self) -> None:
        """At shutdown: make sure retired workers are gone, not merely asked to go."""
        for worker in [w for w in self.workers.values() if w.state is S.STOPPING]:
            worker.writer = None
            await self._forget(worker, S.GONE)

    def adopt(self, worker: Worker, job: StoredJob | None) -> None:
        """At start: a worker of the last run, registered then, to be waited for (busy with ``job``)."""
        worker.state = S.BUSY if job is not None else S.IDLE
        if job is not None:
            worker.hold(job)
        self.workers[worker.id] = worker

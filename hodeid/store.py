"""The job queue and worker table in SQLite. Every SQL statement of hodeid lives in this module.

Each statement runs in autocommit mode, so a call that returns has committed: a job id handed to a
client survives a crash of the daemon right after. State changes are guarded updates
(``WHERE id = ? AND state IN (...)``); a trigger appends each one to ``job_events``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from hodei.errors import InvalidTransition, StateDirError
from hodei.pools import pool_key
from hodei.protocol import JobEvent, JobInfo, JobSpec, JobState, WorkerInfo, WorkerState

_spec_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)

_JOB_COLUMNS = (
    "id, name, state, spec, priority, exit_code, signal, reason, created_at, started_at, finished_at,"
    " worker_id, attempt, log_bytes, owner_uid, pid"
)
_WORKER_COLUMNS = "id, provider, state, job_id, image, handle, created_at, last_heartbeat, jobs_run, node"


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("hodeid.sql").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text()))
    return sorted(found)


class StoredJob(msgspec.Struct):
    info: JobInfo
    spec: JobSpec
    owner_uid: int | None
    pid: int | None = None


def _job_from_row(row: Any) -> StoredJob:
    spec = _spec_decoder.decode(row[3])
    info = JobInfo(
        id=row[0],
        name=row[1],
        state=JobState(row[2]),
        command=spec.command,
        shell=spec.shell,
        exit_code=row[5],
        signal=row[6],
        reason=row[7],
        created_at=row[8],
        started_at=row[9],
        finished_at=row[10],
        worker_id=row[11],
        priority=row[4],
        labels=spec.labels,
        cwd=spec.cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        image=spec.image,
        attempt=row[12],
        log_bytes=row[13],
        retries=spec.retries,
    )
    return StoredJob(info=info, spec=spec, owner_uid=row[14], pid=row[15])


def _worker_from_row(row: Any) -> WorkerInfo:
    handle = row[5]
    return WorkerInfo(
        id=row[0],
        provider=row[1],
        state=WorkerState(row[2]),
        job_id=row[3],
        image=row[4],
        pid=int(handle) if handle.isdigit() else None,
        created_at=row[6],
        last_heartbeat=row[7],
        jobs_run=row[8],
        node=row[9],
    )


class Store:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._db = conn

    @classmethod
    async def open(cls, path: Path) -> Store:
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise StateDirError(f"cannot open the database {path}: {e}; check the state directory") from e
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        store = cls(conn)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        (version,) = await self._one("PRAGMA user_version")
        for number, script in _migrations():
            if number > version:
                await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        # One trip to aiosqlite's thread (execute, fetch and close there), not three.
        rows = await self._db.execute_fetchall(sql, tuple(params))
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return list(await self._db.execute_fetchall(sql, tuple(params)))

    # ---- jobs -----------------------------------------------------------------------------------

    async def insert_job(self, spec: JobSpec, owner_uid: int | None) -> StoredJob:
        row = await self._one(
            "INSERT INTO jobs (name, state, spec, priority, image, owner_uid, created_at)"
            f" VALUES (?, 'queued', ?, ?, ?, ?, ?) RETURNING {_JOB_COLUMNS}",
            (spec.name, _spec_encoder.encode(spec), spec.priority, pool_key(spec.image, spec.constraints), owner_uid, time.time()),
        )
        return _job_from_row(row)

    async def insert_jobs(self, specs: list[JobSpec], owner_uid: int | None) -> list[StoredJob]:
        """Queue several jobs with one statement: all of them or none. (One statement, not a
        transaction around several: other tasks' statements share this connection meanwhile.)"""
        now = time.time()
        params = [v for spec in specs for v in
                  (spec.name, _spec_encoder.encode(spec), spec.priority, pool_key(spec.image, spec.constraints), owner_uid, now)]
        rows = await self._all(
            "INSERT INTO jobs (name, state, spec, priority, image, owner_uid, created_at) VALUES "
            + ", ".join(["(?, 'queued', ?, ?, ?, ?, ?)"] * len(specs)) + f" RETURNING {_JOB_COLUMNS}",
            params,
        )
        return [_job_from_row(r) for r in sorted(rows)]  # RETURNING promises no order; the ids do

    async def get_job(self, job_id: int) -> StoredJob | None:
        row = await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(row) if row else None

    async def _by_ids(self, columns: str, job_ids: Iterable[int], chunk: int = 500) -> list[Any]:
        """Rows of the jobs among these ids that exist (id first): one statement per ``chunk`` ids."""
        ids = list(dict.fromkeys(job_ids))
        rows: list[Any] = []
        for i in range(0, len(ids), chunk):
            part = ids[i:i + chunk]
            rows += await self._all(f"SELECT {columns} FROM jobs WHERE id IN ({','.join('?' * len(part))})", part)
        return rows

    async def get_jobs(self, job_ids: Iterable[int]) -> dict[int, StoredJob]:
        return {row[0]: _job_from_row(row) for row in await self._by_ids(_JOB_COLUMNS, job_ids)}

    async def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The state of each of these jobs that exists: for waiters, without decoding whole jobs."""
        return {row[0]: JobState(row[1]) for row in await self._by_ids("id, state", job_ids)}

    async def list_jobs(
        self, states: list[JobState], limit: int, owner_uid: int | None, page: int = 500
    ) -> AsyncIterator[list[StoredJob]]:
        """The newest ``limit`` jobs (0: all), oldest first, a page at a time: memory stays flat."""
        where: list[str] = []
        params: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(str(s) for s in states)
        if owner_uid is not None:
            where.append("owner_uid = ?")
            params.append(owner_uid)
        clause = " AND ".join(where) or "1"
        after = 0
        if limit > 0:
            row = await self._one(f"SELECT id FROM jobs WHERE {clause} ORDER BY id DESC LIMIT 1 OFFSET ?",
                                  (*params, limit - 1))
            after = row[0] - 1 if row else 0
        left = limit if limit > 0 else -1
        while left != 0:
            size = page if left < 0 else min(page, left)
            rows = await self._all(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {clause} AND id > ? ORDER BY id LIMIT ?", (*params, after, size)
            )
            if not rows:
                return
            yield [_job_from_row(r) for r in rows]
            after = rows[-1][0]
            left = left - len(rows) if left > 0 else left
            if len(rows) < size:
                return

    async def take_next(self, worker_id: str, images: tuple[str, ...]) -> StoredJob | None:
        """Assign the next queued job this worker can run to it, in dispatch order (higher priority
        first, then FIFO): one guarded statement picks and moves it, so no other pass can take it too.
        Each image is one ordered lookup in its own index (INDEXED BY: without statistics SQLite would
        rather sort the whole queue on every call)."""
        images = tuple(dict.fromkeys(images))
        best_of_each = " UNION ALL ".join(
            "SELECT * FROM (SELECT id, priority FROM jobs INDEXED BY jobs_queue_by_image WHERE state = 'queued'"
            " AND image = ? AND (run_after IS NULL OR run_after <= ?) ORDER BY priority DESC, id LIMIT 1)"
            for _ in images)
        now = time.time()
        row = await self._one(
            f"UPDATE jobs SET state = 'assigned', worker_id = ? WHERE id = (SELECT id FROM ({best_of_each})"
            f" ORDER BY priority DESC, id LIMIT 1) AND state = 'queued' RETURNING {_JOB_COLUMNS}",
            (worker_id, *(v for image in images for v in (image, now))),
        )
        return _job_from_row(row) if row else None

    async def count_queued_by_image(self, at_most: int) -> dict[str, int]:
        """Queued jobs ready to run, per image, counting no further than ``at_most`` in all.

        The scheduler only needs to know whether to start up to --max-workers workers, so a queue of
        10,000 jobs costs it no more than one of a few dozen.
        """
        rows = await self._all(
            "SELECT image, count(*) FROM (SELECT image FROM jobs INDEXED BY jobs_queue WHERE state = 'queued'"
            " AND (run_after IS NULL OR run_after <= ?) ORDER BY priority DESC, id LIMIT ?) GROUP BY image",
            (time.time(), at_most),
        )
        return {image: count for image, count in rows}

    async def next_run_after(self) -> float | None:
        """When the earliest job waiting out a retry backoff may run."""
        row = await self._one("SELECT min(run_after) FROM jobs INDEXED BY jobs_retry_wait"
                              " WHERE state = 'queued' AND run_after > ?", (time.time(),))
        return row[0] if row else None

    async def note_queued(self, image: str, reason: str) -> None:
        """Say why queued jobs of this image wait (a provisioning error), without changing their state."""
        await self._db.execute("UPDATE jobs SET reason = ? WHERE state = 'queued' AND image = ?", (reason, image))

    async def note_job(self, job_id: int, reason: str) -> None:
        """Say why a running job is held up, without changing its state."""
        await self._db.execute("UPDATE jobs SET reason = ? WHERE id = ?", (reason, job_id))

    async def jobs_in(self, states: Iterable[JobState]) -> list[StoredJob]:
        states = list(states)
        rows = await self._all(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({','.join('?' * len(states))}) ORDER BY id",
            [str(s) for s in states],
        )
        return [_job_from_row(r) for r in rows]

    async def transition(
        self, job_id: int, allowed: Iterable[JobState], to: JobState, **fields: Any
    ) -> StoredJob:
        """Move a job to ``to`` if it is in one of ``allowed``; raise InvalidTransition otherwise."""
        allowed = list(allowed)
        sets = ["state = ?"] + [f"{name} = ?" for name in fields]
        params: list[Any] = [str(to), *fields.values(), job_id, *(str(s) for s in allowed)]
        row = await self._one(
            f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND state IN ({','.join('?' * len(allowed))})"
            f" RETURNING {_JOB_COLUMNS}",
            params,
        )
        if row is None:
            current = await self.get_job(job_id)
            where = current.info.state if current else "unknown"
            raise InvalidTransition(f"job {job_id} is {where}, not {'/'.join(allowed)}; cannot become {to}")
        return _job_from_row(row)

    async def job_events(self, job_id: int) -> list[JobEvent]:
        rows = await self._all(
            "SELECT at, from_state, to_state, worker_id, reason FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [JobEvent(at=r[0], from_state=JobState(r[1]) if r[1] else None, to_state=JobState(r[2]),
                         worker_id=r[3], reason=r[4]) for r in rows]

    # ---- workers --------------------------------------------------------------------------------

    async def insert_worker(
        self, worker_id: str, provider: str, token_hash: str, image: str, state: str = "starting"
    ) -> None:
        await self._db.execute(
            "INSERT INTO workers (id, provider, state, token_hash, image, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (worker_id, provider, state, token_hash, image, time.time()),
        )

    async def update_worker(self, worker_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in fields)
        await self._db.execute(f"UPDATE workers SET {sets} WHERE id = ?", (*fields.values(), worker_id))

    async def worker_node(self, worker_id: str | None) -> str:
        row = await self._one("SELECT node FROM workers WHERE id = ?", (worker_id,)) if worker_id else None
        return row[0] if row else ""

    async def worker_token_hash(self, worker_id: str) -> str | None:
        row = await self._one(
            "SELECT token_hash FROM workers WHERE id = ? AND state NOT IN ('gone', 'lost')", (worker_id,)
        )
        return row[0] if row else None

    async def list_workers(self, live_only: bool = True) -> list[WorkerInfo]:
        clause = "WHERE state NOT IN ('gone', 'lost')" if live_only else ""
        rows = await self._all(f"SELECT {_WORKER_COLUMNS} FROM workers {clause} ORDER BY created_at")
        return [_worker_from_row(r) for r in rows]

    async def worker_handles(self) -> dict[str, tuple[str, str, str, str]]:
        """Live workers: id -> (provider, state, handle, image)."""
        rows = await self._all(
            "SELECT id, provider, state, handle, image FROM workers WHERE state NOT IN ('gone', 'lost')"
        )
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

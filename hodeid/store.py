"""The job queue and worker table in SQLite. Every SQL statement of hodeid lives in this module.

Each statement runs in autocommit mode, so a call that returns has committed: a job id handed to a
client survives a crash of the daemon right after. State changes are guarded updates
(``WHERE id = ? AND state IN (...)``); a trigger appends each one to ``job_events``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import msgspec

from hodei.errors import HodeiError, InvalidTransition, StateDirError
from hodei.protocol import ErrorCode, JobEvent, JobInfo, JobSpec, JobState, WorkerInfo, WorkerState
from hodeid.worker import handle_pid

log = logging.getLogger("hodeid.store")
_spec_encoder = msgspec.msgpack.Encoder()
_spec_decoder = msgspec.msgpack.Decoder(JobSpec)

_JOB_COLUMNS = (
    "id, name, state, spec, priority, exit_code, signal, reason, created_at, started_at, finished_at,"
    " worker_id, attempt, log_bytes, owner_uid, pid, pid_start, cancel_reason, cancel_grace"
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
    pid_start: str = ""  # the stamp of ``pid`` (hodei.procs); "" for rows from before stamps
    cancel_reason: str | None = None  # a cancel was asked for, with this reason (None: none was)
    cancel_grace: float | None = None  # the grace it asked for (None: the job's own)


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
        cwd=spec.cwd or spec.client_cwd,
        timeout=spec.timeout,
        grace=spec.grace,
        image=spec.image,
        attempt=row[12],
        log_bytes=row[13],
        retries=spec.retries,
    )
    return StoredJob(info=info, spec=spec, owner_uid=row[14], pid=row[15], pid_start=row[16], cancel_reason=row[17],
                     cancel_grace=row[18])


def _worker_from_row(row: Any) -> WorkerInfo:
    return WorkerInfo(
        id=row[0],
        provider=row[1],
        state=WorkerState(row[2]),
        job_id=row[3],
        image=row[4],
        pid=handle_pid(row[5]),
        created_at=row[6],
        last_heartbeat=row[7],
        jobs_run=row[8],
        node=row[9],
    )


class DatabaseDamaged(HodeiError):
    """hodeid's database is damaged: stop hodeid, then restore it from a backup or move it aside."""

    code = ErrorCode.INTERNAL


_DAMAGE_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes; extended ones add high bits)


def _is_damage(e: sqlite3.Error) -> bool:
    return (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES


def _refusal(path: Path, what: str) -> DatabaseDamaged:
    """Why hodeid will not start on this database, and what to do, in one sentence."""
    return DatabaseDamaged(f"the database {path} {what}: restore it from a backup, or move {path}* aside"
                           " to start with a new one (job logs are kept, and new jobs get new ids)")


async def _check_at_start(conn: aiosqlite.Connection, path: Path, size: int | None, logs_up_to: int) -> None:
    """Refuse a damaged database, and an empty one beside the logs of jobs it should know."""
    rows = await conn.execute_fetchall("PRAGMA quick_check")
    problems = [r[0] for r in rows if r[0] != "ok"]
    if problems:
        more = f" and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise _refusal(path, f"is damaged (PRAGMA quick_check: {problems[0]}{more})")
    tables = await conn.execute_fetchall("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")
    (version,) = next(iter(await conn.execute_fetchall("PRAGMA user_version")))  # always one row
    if tables:
        return
    if version:
        raise _refusal(path, "is damaged (its jobs table is gone)")
    if logs_up_to and size is not None:
        empty = "is empty (0 bytes)" if size == 0 else "has no jobs table"
        raise _refusal(path, f"{empty} although {path.parent / 'logs'} holds the logs of jobs up to id {logs_up_to}"
                             " (it was truncated or replaced)")


class _Watched:
    """hodeid's connection, watched for damage: SQLite reporting CORRUPT or NOTADB, or the file
    deleted, replaced or truncated under the running hodeid. The first sign is logged once (error
    level); from then on every call raises DatabaseDamaged, one sentence for the user, without
    touching the database again. The one place where store errors become that sentence."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self.damage: DatabaseDamaged | None = None
        self._logged = False
        st = os.stat(path)
        self._file = (st.st_dev, st.st_ino)
        self._had_bytes = st.st_size > 0  # a new database may be 0 bytes for a while, its pages in the WAL

    def damaged(self, what: str, remedy: str = "") -> DatabaseDamaged:
        if self.damage is None or not self._logged:
            remedy = remedy or f"restore it from a backup or move {self.path}* aside"
            self.damage = DatabaseDamaged(f"hodeid's database {self.path} {what}: stop hodeid, then {remedy},"
                                          " and start hodeid again")
            self._logged = True
            log.error("%s", self.damage)
        return self.damage

    async def check_file(self) -> None:
        """A stat of the file: deleted, replaced or truncated to nothing is damage."""
        if self.damage is not None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            await self._rescue("was deleted while hodeid ran")
            return
        if (st.st_dev, st.st_ino) != self._file:
            await self._rescue("was replaced while hodeid ran")
        elif st.st_size == 0 and self._had_bytes:
            self.damaged("was truncated to 0 bytes while hodeid ran")
        self._had_bytes = st.st_size > 0

    async def _rescue(self, what: str) -> None:
        """The file left its path, but hodeid's connection still holds it whole: save a copy of it."""
        self.damage = DatabaseDamaged(f"hodeid's database {self.path} {what}")  # no more writes meanwhile
        rescued = self.path.with_name(f"{self.path.name}.rescued-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            target = sqlite3.connect(rescued, check_same_thread=False)  # written from aiosqlite's thread
            try:
                await self._conn.backup(target)
            finally:
                target.close()
        except (sqlite3.Error, OSError) as e:
            self.damaged(f"{what}, and saving what hodeid held failed ({e})")
            return
        self.damaged(f"{what}; what hodeid held is saved in {rescued}",
                     f"move {rescued} to {self.path} (or restore a backup)")

    async def _mapped(self, e: sqlite3.Error) -> BaseException:
        if not _is_damage(e):
            return e
        await self.check_file()  # a file truncated or replaced under hodeid: say that rather than SQLite's words
        return self.damage or self.damaged(f"is damaged (SQLite: {e})")

    async def _call(self, method: Any, *args: Any) -> Any:
        if self.damage is not None:
            raise self.damage
        try:
            return await method(*args)
        except sqlite3.Error as e:
            raise await self._mapped(e) from e

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return await self._call(self._conn.execute, sql, params)

    async def execute_fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return await self._call(self._conn.execute_fetchall, sql, params)

    async def executescript(self, script: str) -> Any:
        return await self._call(self._conn.executescript, script)

    async def close(self) -> None:
        await self._conn.close()


class Store:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._db = _Watched(conn, path)

    @classmethod
    async def open(cls, path: Path, logs_up_to: int = 0) -> Store:
        """Open (or create) the database; refuse one that is damaged, or empty while ``logs_up_to``
        (the highest job id among the log files) says it should know jobs."""
        try:
            size: int | None = path.stat().st_size
        except FileNotFoundError:
            size = None  # a new database: the first start, or the old one moved aside as hodeid advised
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise StateDirError(f"cannot open the database {path}: {e}; check the state directory") from e
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await _check_at_start(conn, path, size, logs_up_to)
            store = cls(conn, path)
            await store._migrate()
        except sqlite3.Error as e:
            await conn.close()
            if _is_damage(e):
                raise _refusal(path, f"is damaged (SQLite: {e})") from e
            raise
        except BaseException:
            await conn.close()
            raise
        return store

    async def check_file(self) -> None:
        """Cheap (one stat): notice the database file deleted, replaced or truncated under hodeid;
        when it was deleted or replaced, save what hodeid still holds beside it."""
        await self._db.check_file()

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

    async def insert_job(self, spec: JobSpec, owner_uid: int | None, pool: str) -> StoredJob:
        row = await self._one(
            "INSERT INTO jobs (name, state, spec, priority, image, owner_uid, created_at)"
            f" VALUES (?, 'queued', ?, ?, ?, ?, ?) RETURNING {_JOB_COLUMNS}",
            (spec.name, _spec_encoder.encode(spec), spec.priority, pool, owner_uid, time.time()),
        )
        return _job_from_row(row)

    async def insert_jobs(self, specs: list[JobSpec], owner_uid: int | None, pools: list[str]) -> list[StoredJob]:
        """Queue several jobs with one statement: all of them or none. (One statement, not a
        transaction around several: other tasks' statements share this connection meanwhile.)"""
        now = time.time()
        params = [v for spec, pool in zip(specs, pools, strict=True) for v in
                  (spec.name, _spec_encoder.encode(spec), spec.priority, pool, owner_uid, now)]
        rows = await self._all(
            "INSERT INTO jobs (name, state, spec, priority, image, owner_uid, created_at) VALUES "
            + ", ".join(["(?, 'queued', ?, ?, ?, ?, ?)"] * len(specs)) + f" RETURNING {_JOB_COLUMNS}",
            params,
        )
        return [_job_from_row(r) for r in sorted(rows)]  # RETURNING promises no order; the ids do

    async def keep_job_ids_above(self, job_id: int) -> int | None:
        """New jobs get ids above ``job_id`` (the highest among the log files on disk): a database that
        was lost and started anew must not hand out an id whose old output is still there. The jobs
        table is AUTOINCREMENT, so its counter lives in sqlite_sequence and never goes back. Returns
        the highest id the database knew of when it had to be raised, None when it did not."""
        row = await self._one("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
        known = row[0] if row else 0
        if known >= job_id:
            return None
        if row is None:
            await self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?)", (job_id,))
        else:
            await self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'jobs'", (job_id,))
        return known

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
        self, states: list[JobState], limit: int, owner_uid: int | None, page: int = 500, name: str = "",
        labels: dict[str, str] | None = None,
    ) -> AsyncIterator[list[StoredJob]]:
        """The newest ``limit`` jobs (0: all), oldest first, a page at a time: memory stays flat.
        ``name``: a GLOB the job's name matches; ``labels``: each label the job must have, with that value."""
        where: list[str] = []
        params: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(str(s) for s in states)
        if owner_uid is not None:
            where.append("owner_uid = ?")
            params.append(owner_uid)
        if name:
            where.append("name GLOB ?")
            params.append(name)
        clause = " AND ".join(where) or "1"
        if labels:  # labels live in the encoded spec: matched here, not in SQL
            async for found in self._labelled(clause, params, labels, limit, page):
                yield found
            return
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

    async def _labelled(
        self, clause: str, params: list[Any], labels: dict[str, str], limit: int, page: int
    ) -> AsyncIterator[list[StoredJob]]:
        """list_jobs of the jobs with these labels: all of them in pages (limit 0), or the newest
        ``limit``, found newest first and held (so memory grows with ``limit``, never with the table)."""
        items = labels.items()
        newest_first = limit > 0
        edge = 2**63 - 1 if newest_first else 0
        found: list[StoredJob] = []
        while True:
            rows = await self._all(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE {clause} AND id {'<' if newest_first else '>'} ?"
                f" ORDER BY id {'DESC' if newest_first else ''} LIMIT ?", (*params, edge, page))
            matching = [j for j in map(_job_from_row, rows) if items <= j.spec.labels.items()]
            if not newest_first:
                if matching:
                    yield matching
            else:
                found.extend(matching[: limit - len(found)])
            if len(rows) < page or len(found) >= limit > 0:
                break
            edge = rows[-1][0]
        found.reverse()
        for start in range(0, len(found), page):
            yield found[start:start + page]

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
        self, job_id: int, allowed: Iterable[JobState], to: JobState, *, unless_cancel_requested: bool = False,
        cancel_requested: bool = False, reason_from_cancel: bool = False, reason_suffix: str = "", **fields: Any
    ) -> StoredJob:
        """Move a job to ``to`` if it is in one of ``allowed``; raise InvalidTransition otherwise.

        ``unless_cancel_requested`` / ``cancel_requested`` guard on the stored cancel request too (a job
        whose cancel was asked for is never requeued); ``reason_from_cancel`` makes the reason the one
        the cancel was asked with (``fields['reason']`` when none was), plus ``reason_suffix``.
        """
        allowed = list(allowed)
        reason = fields.pop("reason", None) if reason_from_cancel else None
        sets = ["state = ?"] + [f"{name} = ?" for name in fields]
        params: list[Any] = [str(to), *fields.values()]
        if reason_from_cancel:
            sets.append("reason = coalesce(cancel_reason, ?) || ?")
            params += [reason or "cancelled", reason_suffix]
        where = f"id = ? AND state IN ({','.join('?' * len(allowed))})"
        if unless_cancel_requested:
            where += " AND cancel_reason IS NULL"
        if cancel_requested:
            where += " AND cancel_reason IS NOT NULL"
        row = await self._one(f"UPDATE jobs SET {', '.join(sets)} WHERE {where} RETURNING {_JOB_COLUMNS}",
                              [*params, job_id, *(str(s) for s in allowed)])
        if row is None:
            current = await self.get_job(job_id)
            where_now = current.info.state if current else "unknown"
            raise InvalidTransition(f"job {job_id} is {where_now}, not {'/'.join(allowed)}"
                                    f"{' without a cancel request' if unless_cancel_requested else ''};"
                                    f" cannot become {to}")
        return _job_from_row(row)

    async def request_cancel(self, job_id: int, reason: str, grace: float | None) -> StoredJob | None:
        """Store a cancel request with a job that is assigned or running (the first reason stays; a
        new grace replaces the old); None when the job is in no such state."""
        row = await self._one(
            "UPDATE jobs SET cancel_reason = coalesce(cancel_reason, ?), cancel_grace = coalesce(?, cancel_grace)"
            f" WHERE id = ? AND state IN ('assigned', 'running') RETURNING {_JOB_COLUMNS}",
            (reason, grace, job_id),
        )
        return _job_from_row(row) if row else None

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
        """Set a worker's fields other than its state (``move_worker`` changes that)."""
        assert "state" not in fields
        sets = ", ".join(f"{name} = ?" for name in fields)
        await self._db.execute(f"UPDATE workers SET {sets} WHERE id = ?", (*fields.values(), worker_id))

    async def move_worker(self, worker_id: str, allowed: Iterable[str], to: str, **fields: Any) -> bool:
        """Move a worker's row to ``to`` if it is in one of ``allowed``; False (nothing written) if not."""
        allowed = list(allowed)
        sets = ", ".join(["state = ?"] + [f"{name} = ?" for name in fields])
        rows = await self._all(
            f"UPDATE workers SET {sets} WHERE id = ? AND state IN ({','.join('?' * len(allowed))}) RETURNING id",
            (to, *fields.values(), worker_id, *allowed),
        )
        return bool(rows)

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

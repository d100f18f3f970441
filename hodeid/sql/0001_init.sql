-- Jobs, their state history, and the workers that run them.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL,
    spec        BLOB    NOT NULL,              -- msgpack of hodei.protocol.JobSpec
    priority    INTEGER NOT NULL DEFAULT 0,
    image       TEXT    NOT NULL DEFAULT '',   -- worker image; '' is the provider's default
    owner_uid   INTEGER,
    exit_code   INTEGER,
    signal      INTEGER,
    reason      TEXT    NOT NULL DEFAULT '',
    created_at  REAL    NOT NULL,
    started_at  REAL,
    finished_at REAL,
    worker_id   TEXT,
    pid         INTEGER,                      -- the job's process group, as its worker sees it
    attempt     INTEGER NOT NULL DEFAULT 1,
    log_bytes   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_state ON jobs (state, priority DESC, id);
CREATE INDEX jobs_by_owner ON jobs (owner_uid, id);

CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL,
    at         REAL    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    worker_id  TEXT,
    reason     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- Every state change lands in job_events, whoever makes it.
CREATE TRIGGER jobs_insert_event AFTER INSERT ON jobs BEGIN
    INSERT INTO job_events (job_id, at, from_state, to_state, worker_id, reason)
    VALUES (NEW.id, NEW.created_at, NULL, NEW.state, NEW.worker_id, NEW.reason);
END;
CREATE TRIGGER jobs_state_event AFTER UPDATE OF state ON jobs WHEN OLD.state IS NOT NEW.state BEGIN
    INSERT INTO job_events (job_id, at, from_state, to_state, worker_id, reason)
    VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400.0, OLD.state, NEW.state, NEW.worker_id, NEW.reason);
END;

CREATE TABLE workers (
    id             TEXT    PRIMARY KEY,
    provider       TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    token_hash     TEXT    NOT NULL,
    image          TEXT    NOT NULL DEFAULT '',
    handle         TEXT    NOT NULL DEFAULT '',  -- pid or container id, as the provider knows it
    job_id         INTEGER,
    created_at     REAL    NOT NULL,
    last_heartbeat REAL,
    jobs_run       INTEGER NOT NULL DEFAULT 0
);

-- Infinity Matrix store, SQLite schema v1: event log, read models, work queue.
-- JSON columns hold text; event payloads hold their RFC 8785 canonical form,
-- the exact bytes the hash chain covers. Times are RFC 3339 UTC text with
-- exactly six fractional digits (fixed width, so text order is time order).

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,          -- gap-free from 1, commit order
    run_id         TEXT    NOT NULL,
    seq            INTEGER NOT NULL CHECK (seq >= 1),
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    log_hash       TEXT    NOT NULL,
    append_id      TEXT    NOT NULL,             -- not hashed: makes retried appends idempotent
    UNIQUE (run_id, seq)
) STRICT;

-- The log is append-only, whatever the code does.
CREATE TRIGGER events_reject_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: UPDATE of events is rejected');
END;

CREATE TRIGGER events_reject_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'IMX0315: the event log is append-only: DELETE from events is rejected');
END;

CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    workflow        TEXT NOT NULL,
    version         TEXT NOT NULL,
    status          TEXT NOT NULL,
    input           TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    parent_run_id   TEXT,
    idempotency_key TEXT UNIQUE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE INDEX runs_by_created  ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_by_status   ON runs (status, created_at DESC, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC, run_id DESC);

CREATE TABLE steps (
    run_id     TEXT    NOT NULL,
    step_id    TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    output     TEXT,
    error      TEXT,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (run_id, step_id)
) STRICT;

-- Ready work. While leased, available_at equals the lease expiry, so one
-- index finds both never-claimed tasks and tasks whose lease ran out.
CREATE TABLE tasks (
    task_id          TEXT PRIMARY KEY,
    run_id           TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    available_at     TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    claims           INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_expires_at TEXT
) STRICT;

CREATE INDEX tasks_ready ON tasks (queue, available_at, task_id);

CREATE TABLE timers (
    timer_id   TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    queue      TEXT NOT NULL,
    payload    TEXT NOT NULL,
    fire_at    TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE INDEX timers_due ON timers (fire_at, timer_id);

-- Infinity Matrix store, PostgreSQL schema v1: event log, read models, work queue.
-- JSON columns are `json`, kept verbatim (`jsonb` rejects \u0000 in strings,
-- which step outputs may hold). Event payloads hold their RFC 8785 canonical
-- form, the exact bytes the hash chain covers.

CREATE TABLE events (
    position       BIGINT      PRIMARY KEY,      -- gap-free from 1, commit order (see docs/event-log.md)
    run_id         UUID        NOT NULL,
    seq            BIGINT      NOT NULL CHECK (seq >= 1),
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    payload        JSON        NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL,
    prev_hash      TEXT        NOT NULL,
    hash           TEXT        NOT NULL,
    log_hash       TEXT        NOT NULL,
    append_id      UUID        NOT NULL,         -- not hashed: makes retried appends idempotent
    CONSTRAINT events_run_seq_unique UNIQUE (run_id, seq)
);

-- The log is append-only, whatever the code does.
CREATE FUNCTION imx_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'IMX0315: the event log is append-only: % of events is rejected', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_reject_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION imx_events_append_only();

CREATE TRIGGER events_reject_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION imx_events_append_only();

CREATE TABLE runs (
    run_id          UUID        PRIMARY KEY,
    workflow        TEXT        NOT NULL,
    version         TEXT        NOT NULL,
    status          TEXT        NOT NULL,
    input           JSON        NOT NULL,
    output          JSON,
    error           TEXT,
    parent_run_id   UUID,
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT runs_idempotency_key_unique UNIQUE (idempotency_key)
);

CREATE INDEX runs_by_created  ON runs (created_at DESC, run_id DESC);
CREATE INDEX runs_by_status   ON runs (status, created_at DESC, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC, run_id DESC);

CREATE TABLE steps (
    run_id     UUID        NOT NULL,
    step_id    TEXT        NOT NULL,
    status     TEXT        NOT NULL,
    attempts   INTEGER     NOT NULL,
    output     JSON,
    error      TEXT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, step_id)
);

-- Ready work. While leased, available_at equals the lease expiry, so one
-- index finds both never-claimed tasks and tasks whose lease ran out.
CREATE TABLE tasks (
    task_id          UUID        PRIMARY KEY,
    run_id           UUID        NOT NULL,
    queue            TEXT        NOT NULL,
    payload          JSON        NOT NULL,
    available_at     TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    claims           INTEGER     NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_token      UUID,
    lease_expires_at TIMESTAMPTZ
);

CREATE INDEX tasks_ready ON tasks (queue, available_at, task_id);

CREATE TABLE timers (
    timer_id   UUID        PRIMARY KEY,
    run_id     UUID        NOT NULL,
    queue      TEXT        NOT NULL,
    payload    JSON        NOT NULL,
    fire_at    TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX timers_due ON timers (fire_at, timer_id);

-- Cron schedules (docs/triggers-cron.md): one row per (workflow, trigger)
-- that a scheduler has seen, and a ledger of every fire decided. The
-- ledger's key is the fire's identity, so nodes that decide the same tick
-- keep the decision of whoever recorded it first. Times are RFC 3339 text
-- with microseconds in UTC (fixed width), so they compare as text.
CREATE TABLE schedules (
    workflow   TEXT NOT NULL,
    trigger_id TEXT NOT NULL,
    -- The newest scheduled instant considered (started, skipped or passed
    -- over by catch-up): fires after it are due.
    cursor_at  TEXT NOT NULL,
    paused_at  TEXT,                    -- NULL: active
    paused_by  TEXT,                    -- who paused it (API caller, CLI user)
    PRIMARY KEY (workflow, trigger_id)
) STRICT;

CREATE TABLE schedule_fires (
    workflow        TEXT NOT NULL,
    trigger_id      TEXT NOT NULL,
    scheduled_at    TEXT NOT NULL,
    outcome         TEXT NOT NULL,       -- started | skipped | failed
    reason          TEXT,                -- why skipped or failed
    idempotency_key TEXT NOT NULL,       -- the run's key: cron:<workflow>:<trigger>:<instant>
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (workflow, trigger_id, scheduled_at)
) STRICT;

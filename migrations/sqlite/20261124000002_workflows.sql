-- Infinity Matrix store, SQLite schema v2: the workflow registry. One row per
-- (name, version); `registration` grows on every (re-)registration so that
-- "latest" is the version registered last, whatever the clocks say.

CREATE TABLE workflows (
    name          TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    registered_at TEXT    NOT NULL,
    registration  INTEGER NOT NULL,
    UNIQUE (name, version)
) STRICT;

CREATE INDEX workflows_latest ON workflows (name, registration DESC);

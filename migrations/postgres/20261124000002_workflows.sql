-- Infinity Matrix store, PostgreSQL schema v2: the workflow registry. One row
-- per (name, version); `registration` grows on every (re-)registration so
-- that "latest" is the version registered last, whatever the clocks say.

CREATE SEQUENCE workflows_registration;

CREATE TABLE workflows (
    name          TEXT        NOT NULL,
    version       TEXT        NOT NULL,
    source        TEXT        NOT NULL,
    model         JSON        NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL,
    registration  BIGINT      NOT NULL,
    CONSTRAINT workflows_name_version_unique UNIQUE (name, version)
);

CREATE INDEX workflows_latest ON workflows (name, registration DESC);
